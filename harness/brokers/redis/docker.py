"""The ``docker`` Redis provider: a ``redis-server`` in a container, through testcontainers-python.

One container per test session, always on the host's network (the server is told its free loopback port; machines
of this project's kind let containers use the host's loopback only; ``--harness-docker-network`` is the RabbitMQ
provider's), labelled as the RabbitMQ containers are
(``harness.brokers.containers``), so that one left by a killed run is removed by the next. The image is
``harness-redis:7-local`` (``scripts/build-redis-image``: Redis 7 from Debian 12's packages) or
``--harness-redis-image``.

Faults act on the container: a crash is ``docker kill`` (SIGKILL to the server, PID 1), a shutdown is Redis's own
``SHUTDOWN``; either way the same container is started again, and its ``/data`` (the container's own files, or an
image's volume) is still there. A freeze is ``docker pause``.

Ryuk, testcontainers' reaper, is off unless ``--harness-docker-ryuk`` is given: the harness removes its container
itself, also after Ctrl-C.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field

import redis

from harness.brokers.containers import (
    LABEL,
    LABEL_HOST,
    LABEL_PID,
    docker_client,
    docker_problem,
    ensure_image,
    log_tail,
    remove_leftovers,
)
from harness.brokers.redis.base import RedisBroker, RedisEndpoint
from harness.brokers.redis.local import DATABASES
from harness.errors import HarnessError
from harness.ports import free_ports
from harness.waiting import WaitTimeout, eventually

DEFAULT_IMAGE = "harness-redis:7-local"
DATA = "/data"
CONFIG = f"{DATA}/redis.conf"
# The container's command: a config file in /data, written at the first boot only, then the server on it. The
# file holds the persistence settings (nothing kept on disk at first); CONFIG REWRITE (``_keep_config``) writes the
# runtime ones into it, and a restart of the same container reads them back. They are not on the command line: a
# command-line ``--appendonly no`` would override the rewritten file at each restart. ``exec``: the server is PID 1,
# which ``docker kill`` signals.
BOOT = f"""mkdir -p {DATA}
[ -f {CONFIG} ] || printf '%s\\n' 'save ""' 'appendonly no' >{CONFIG}
exec redis-server {CONFIG} "$@"
"""


@dataclass(frozen=True)
class ContainerSettings:
    """What the container is created with: pure data, so it is unit-tested without an engine."""

    image: str
    name: str
    port: int
    command: list[str]
    labels: dict[str, str] = field(default_factory=dict)
    kwargs: dict[str, object] = field(default_factory=dict)


def container_settings(image: str, port: int, name: str | None = None) -> ContainerSettings:
    """The container's settings: host networking, the server on ``port`` of loopback, thousands of databases."""
    command = [
        "sh", "-c", BOOT, "redis-server",
        "--port", str(port), "--bind", "127.0.0.1", "--protected-mode", "yes", "--daemonize", "no",
        "--databases", str(DATABASES), "--dir", DATA,
    ]  # fmt: skip
    labels = {LABEL: "true", LABEL_PID: str(os.getpid()), LABEL_HOST: socket.gethostname()}
    # docker-py refuses port bindings with host networking; "network" (not network_mode) also stops
    # testcontainers from attaching the container to another network.
    return ContainerSettings(
        image, name or f"harness-redis-{uuid.uuid4().hex[:8]}", port, command, labels, {"network": "host"}
    )


class DockerRedis(RedisBroker):
    kind = "docker"

    @classmethod
    def from_options(cls, options) -> DockerRedis:
        return cls(options.redis_image, options.boot_timeout, options.docker_ryuk)

    @classmethod
    def available(cls, options) -> bool:
        """A Docker engine answers within 2 s and already has the image (so auto never waits on a pull)."""
        try:
            client = docker_client(timeout=2.0)
        except HarnessError:
            return False
        try:
            client.images.get(options.redis_image or DEFAULT_IMAGE)
        except Exception:  # ImageNotFound, or an engine that stopped answering
            return False
        finally:
            client.close()
        return True

    def __init__(self, image: str | None = None, boot_timeout: float = 90.0, ryuk: bool = False) -> None:
        self.image = image or DEFAULT_IMAGE
        self.settings = container_settings(self.image, free_ports(1)[0])
        self.boot_timeout = boot_timeout
        self.ryuk = ryuk
        self._container = None  # testcontainers' DockerContainer, once asked to start
        self._created = False  # the engine may hold a container of this name (close removes it)

    @property
    def endpoint(self) -> RedisEndpoint:
        return RedisEndpoint("127.0.0.1", self.settings.port)

    def describe(self) -> str:
        return f"docker Redis {self.image} (host network) at 127.0.0.1:{self.settings.port}"

    def start(self) -> None:
        import docker.errors
        from testcontainers.core.config import testcontainers_config
        from testcontainers.core.container import DockerContainer

        client = docker_client()
        try:
            remove_leftovers(client)
            self._ensure_image(client)
        finally:
            client.close()
        testcontainers_config.ryuk_disabled = not self.ryuk
        s = self.settings
        # DockerContainer, not testcontainers' RedisContainer: that one publishes port 6379 (refused with host
        # networking) and its readiness probe asks for the published port.
        container = DockerContainer(s.image, docker_client_kw={"timeout": 30})
        container.with_command(s.command)
        container.with_name(s.name)
        container.with_kwargs(labels=s.labels, **s.kwargs)
        self._container = container
        self._created = True  # from here on, even a Ctrl-C inside the create leaves close something to find
        try:
            container.start()
        except docker.errors.ImageNotFound:
            self.close()
            raise HarnessError(self._image_problem("it is not on the Docker engine")) from None
        except docker.errors.APIError as exc:
            self.close()
            raise HarnessError(f"Docker could not start the Redis container: {exc.explanation or exc}") from None
        except Exception as exc:
            self.close()
            raise HarnessError(docker_problem(exc)) from None
        self._wait_ready()

    def _ensure_image(self, client) -> None:
        ensure_image(client, self.image, self._image_problem, pull=self.image != DEFAULT_IMAGE)

    def _image_problem(self, reason: str) -> str:
        return (
            f"image {self.image} cannot be used ({reason}); build it with scripts/build-redis-image "
            f"{'' if self.image == DEFAULT_IMAGE else self.image + ' '}(Redis 7 from Debian's packages) or name "
            "another Redis image with --harness-redis-image"
        )

    def _wait_ready(self) -> None:
        """Wait until the server answers PING (after it has loaded its data: Redis answers LOADING before)."""
        try:
            eventually(
                self._ready, until=lambda seen: seen == "ready", timeout=self.boot_timeout, interval=0.05,
                what="the Redis container to answer", progress=str,
            )  # fmt: skip
        except WaitTimeout as timeout:
            tail = self._log_tail()
            self.close()
            raise HarnessError(
                f"the Redis container did not answer PING on port {self.settings.port} within "
                f"{self.boot_timeout:.0f}s ({timeout}); its log ends: {tail or '(empty)'}"
            ) from None

    def _ready(self) -> str:
        """``"ready"``, or what is missing yet (shown by a timeout as what it last saw)."""
        wrapped = self._container.get_wrapped_container()
        wrapped.reload()
        if wrapped.status in ("exited", "dead"):
            tail = self._log_tail()
            self.close()
            raise HarnessError(f"the Redis container exited as it started; its log ends: {tail or '(empty)'}")
        try:
            with self.endpoint.client(timeout=0.5) as client:
                client.ping()
        except redis.RedisError as exc:  # refused, or still loading its data (BusyLoadingError)
            return f"container {wrapped.status}, port {self.settings.port}: {type(exc).__name__}"
        return "ready"

    def _log_tail(self, lines: int = 3) -> str:
        return log_tail(self._container, lines)

    # -- faults ------------------------------------------------------------------------------------
    def _stop_server(self, graceful: bool) -> None:
        wrapped = self._container.get_wrapped_container()
        if graceful:
            try:
                with self.endpoint.client(timeout=10) as client:
                    client.shutdown()  # redis-py returns once SHUTDOWN closed the connection (its answer)
            except redis.ConnectionError:
                pass
        else:
            wrapped.kill()  # SIGKILL (docker kill's default): nothing written beyond what persistence had written
        wrapped.wait(timeout=30)  # the container has exited; its files (/data) stay for _start_again

    def _start_again(self) -> None:
        self._container.get_wrapped_container().start()
        self._wait_ready()

    def _pause(self) -> None:
        self._container.get_wrapped_container().pause()

    def _resume(self) -> None:
        self._container.get_wrapped_container().unpause()

    def _forget_saved_data(self) -> None:
        if self._container is not None:
            self._container.get_wrapped_container().exec_run(["rm", "-rf", "/data/dump.rdb", "/data/appendonlydir"])

    def _keep_config(self, client: redis.Redis) -> None:
        client.config_rewrite()  # into /data/redis.conf, which a restart of the container reads (BOOT)

    def close(self) -> None:
        """Remove the container (and an anonymous volume an image may give /data); idempotent. Found by its name,
        so that a container whose create a Ctrl-C interrupted is removed too."""
        created, container = self._created, self._container
        self._created, self._container = False, None
        if container is not None:
            try:
                container.get_docker_client().client.close()  # testcontainers' own client of the engine
            except Exception:
                pass
        if not created:
            return
        try:
            client = docker_client()
        except HarnessError:
            return  # the engine is gone, and the container with it; a leftover is removed by the next run
        try:
            import docker.errors

            try:
                client.containers.get(self.settings.name).remove(force=True, v=True)
            except docker.errors.NotFound:
                pass
        finally:
            client.close()
