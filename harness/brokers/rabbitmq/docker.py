"""The ``docker`` provider: RabbitMQ in a container, through testcontainers-python.

One container per test session, labelled so that a container left by a run that was killed can be
recognised and removed by the next run. Two networking modes:

- ``bridge`` (default, what laptops and hosted CI have): the container's AMQP and management ports
  are published on free host ports chosen by the harness, so a restarted container keeps them;
- ``host``: the container shares the host's network and the node is told which free ports to use
  (for machines where containers may only use the host's loopback).

Ryuk, testcontainers' reaper, is off unless ``--harness-docker-ryuk`` is given: it needs its own image from a
registry, and the harness removes its containers itself.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field

import requests

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
from harness.brokers.rabbitmq.base import Endpoint, RabbitMQBroker
from harness.errors import HarnessError
from harness.ports import free_ports
from harness.waiting import WaitTimeout, eventually

DEFAULT_IMAGE = "rabbitmq:3.13.7-management"
# --harness-rabbitmq-version -> the image used when none is named (4: built from Debian 13's packages by
# scripts/build-rabbitmq-image 4, the same root the local provider runs).
DEFAULT_IMAGES = {"3": DEFAULT_IMAGE, "4": "harness-rabbitmq:4-management-local"}
NETWORKS = ("bridge", "host")


@dataclass(frozen=True)
class ContainerSettings:
    """What the container is created with: pure data, so both networking modes are unit-tested."""

    image: str
    network: str
    amqp_port: int  # where clients connect: a published host port (bridge) or the node's port (host)
    management_port: int
    env: dict[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)  # container port -> host port
    kwargs: dict[str, object] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)


def container_settings(image: str, network: str, ports: list[int], nodename: str) -> ContainerSettings:
    """The container's settings for ``network``, given three free host ports."""
    if network not in NETWORKS:
        raise HarnessError(f"--harness-docker-network {network!r} is not one of {', '.join(NETWORKS)}")
    amqp_port, management_port, dist_port = ports
    labels = {LABEL: "true", LABEL_PID: str(os.getpid()), LABEL_HOST: socket.gethostname()}
    # Sample queue counters every 0.5 s (RabbitMQ's default is 5 s): the run report plots them.
    stats = "-rabbit collect_statistics_interval 500"
    env = {"RABBITMQ_NODENAME": nodename, "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": stats}
    if network == "bridge":
        return ContainerSettings(
            image, network, amqp_port, management_port, env,
            ports={"5672/tcp": amqp_port, "15672/tcp": management_port}, labels=labels,
        )  # fmt: skip
    env |= {
        "RABBITMQ_NODE_PORT": str(amqp_port),
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_DIST_PORT": str(dist_port),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": (
            f'-rabbitmq_management listener [{{port,{management_port}}},{{ip,"127.0.0.1"}}] '
            f"-rabbit loopback_users [] {stats}"
        ),
    }
    # docker-py refuses port bindings with host networking; "network" (not network_mode) also stops
    # testcontainers from attaching the container to another network.
    return ContainerSettings(image, network, amqp_port, management_port, env, {}, {"network": "host"}, labels)


def published_host(network: str, environ: dict[str, str] | None = None) -> str:
    """Where the container's published ports are reached from here: the host's loopback, unless the engine
    is elsewhere (``DOCKER_HOST=tcp://docker:2375``, as with GitLab's Docker-in-Docker service) or
    ``TC_HOST`` (testcontainers' own override) names the host. Host networking is always loopback."""
    environ = os.environ if environ is None else environ
    if network == "host":
        return "127.0.0.1"
    if environ.get("TC_HOST"):
        return environ["TC_HOST"]
    docker_host = environ.get("DOCKER_HOST", "")
    if docker_host.startswith(("tcp://", "http://", "https://")):
        from urllib.parse import urlsplit

        return urlsplit(docker_host).hostname or "127.0.0.1"
    return "127.0.0.1"


class DockerBroker(RabbitMQBroker):
    kind = "docker"

    @classmethod
    def from_options(cls, options) -> DockerBroker:
        image = options.image or DEFAULT_IMAGES.get(options.rabbitmq_version, DEFAULT_IMAGE)
        return cls(image, options.docker_network, options.boot_timeout, options.docker_ryuk)

    @classmethod
    def available(cls, options) -> bool:
        """A Docker engine answers within 2 s and already has the image (so auto never waits on a pull)."""
        try:
            client = docker_client(timeout=2.0)
        except HarnessError:
            return False
        try:
            client.images.get(options.image or DEFAULT_IMAGES.get(options.rabbitmq_version, DEFAULT_IMAGE))
        except Exception:  # ImageNotFound, or an engine that stopped answering
            return False
        finally:
            client.close()
        return True

    def __init__(
        self,
        image: str | None = None,
        network: str = "bridge",
        boot_timeout: float = 90.0,
        ryuk: bool = False,
    ) -> None:
        self.image = image or DEFAULT_IMAGE
        self.nodename = f"harness-{uuid.uuid4().hex[:8]}@localhost"
        self.settings = container_settings(self.image, network, free_ports(3), self.nodename)
        self.boot_timeout = boot_timeout
        self.ryuk = ryuk
        self._container = None

    @property
    def endpoint(self) -> Endpoint:
        s = self.settings
        host = published_host(s.network)
        return Endpoint(host, s.amqp_port, "guest", "guest", "/", f"http://{host}:{s.management_port}")

    def describe(self) -> str:
        where = f"{self.endpoint.host}:{self.settings.amqp_port}"
        return f"docker broker {self.image} ({self.settings.network} network) at {where}"

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
        # DockerContainer, not testcontainers' RabbitMqContainer: its readiness probe is deprecated,
        # polls once a second for up to 120 s and knows nothing of the management API.
        container = DockerContainer(s.image, docker_client_kw={"timeout": 30})
        for key, value in s.env.items():
            container.with_env(key, value)
        for inner, outer in s.ports.items():
            container.with_bind_ports(inner, outer)
        container.with_kwargs(labels=s.labels, **s.kwargs)
        self._container = container
        try:
            container.start()
        except docker.errors.ImageNotFound:
            self.close()
            raise HarnessError(self._image_problem("it is not present locally and could not be pulled")) from None
        except docker.errors.APIError as exc:
            self.close()
            raise HarnessError(f"Docker could not start the RabbitMQ container: {exc.explanation or exc}") from None
        except Exception as exc:
            self.close()
            raise HarnessError(docker_problem(exc)) from None
        self._wait_ready()

    def _ensure_image(self, client) -> None:
        ensure_image(client, self.image, self._image_problem, pull=True)

    def _image_problem(self, reason: str) -> str:
        return (
            f"image {self.image} cannot be used ({reason}); pull or build it (scripts/build-rabbitmq-image on a "
            "machine without a registry) or choose another with --harness-rabbitmq-image"
        )

    def _wait_ready(self) -> None:
        try:
            eventually(
                self._ready, until=lambda seen: seen == "ready", timeout=self.boot_timeout, interval=0.1,
                what="the RabbitMQ container to answer", progress=str,
            )  # fmt: skip
        except WaitTimeout as timeout:
            tail = self._log_tail()
            self.close()
            raise HarnessError(
                f"the RabbitMQ container did not answer on AMQP port {self.settings.amqp_port} and the management API "
                f"within {self.boot_timeout:.0f}s ({timeout}); its log ends: {tail or '(empty)'}"
            ) from None

    def _ready(self) -> str:
        """``"ready"``, or what is missing yet (shown by a timeout as what it last saw)."""
        wrapped = self._container.get_wrapped_container()
        wrapped.reload()
        if wrapped.status in ("exited", "dead"):
            tail = self._log_tail()
            self.close()
            raise HarnessError(f"the RabbitMQ container exited during boot; its log ends: {tail or '(empty)'}")
        port = self.settings.amqp_port
        try:
            socket.create_connection((self.endpoint.host, port), timeout=0.5).close()
        except OSError as exc:
            return f"container {wrapped.status}, AMQP port {port}: {exc.strerror or type(exc).__name__}"
        url = f"{self.endpoint.management_url}/api/overview"
        try:
            status = requests.get(url, auth=("guest", "guest"), timeout=1).status_code
        except requests.RequestException as exc:
            return f"AMQP port {port} open, management API: {type(exc).__name__}"
        return "ready" if status == 200 else f"AMQP port {port} open, management API: HTTP {status}"

    def _log_tail(self, lines: int = 3) -> str:
        return log_tail(self._container, lines)

    # -- faults ------------------------------------------------------------------------------
    def _stop(self) -> None:
        """Stop the container gracefully; it keeps its data and published ports for start_broker."""
        self._quick_stop_prepare()
        self._container.get_wrapped_container().stop(timeout=15)

    def _start_again(self) -> None:
        self._container.get_wrapped_container().start()
        self._wait_ready()

    def rabbitmqctl(self, *args: str) -> str:
        # Debian's packaged rabbitmqctl su's to the rabbitmq user; call the real one as the node's user.
        script = 'ctl=/usr/lib/rabbitmq/bin/rabbitmqctl; [ -x "$ctl" ] || ctl=rabbitmqctl; exec "$ctl" "$@"'
        code, output = self._container.get_wrapped_container().exec_run(
            ["sh", "-c", script, "sh", *args], environment={"HOME": "/var/lib/rabbitmq"}
        )
        text = output.decode(errors="replace")
        if code != 0:
            raise HarnessError(f"rabbitmqctl {' '.join(args)} failed in the container: {text.strip()}")
        return text

    def _pause(self) -> None:
        self._container.get_wrapped_container().pause()

    def _resume(self) -> None:
        self._container.get_wrapped_container().unpause()

    def close(self) -> None:
        container, self._container = self._container, None
        if container is not None:
            try:
                container.stop()  # testcontainers' stop is a forced remove
            except Exception:  # never created, or already removed
                pass
