"""harness.brokers.redis.docker: the container's settings (pure data), the one-sentence errors (no engine, no image),
and a real container: it answers, ``close`` leaves nothing, and a crash (``docker kill``) keeps what an ``aof-always``
append-only file holds and nothing without persistence.

The cases with a container need a Docker engine and the image scripts/build-redis-image builds (or
``HARNESS_REDIS_IMAGE``): they are skipped, saying why, without them, and fail instead under
``HARNESS_REQUIRE_DOCKER=1`` (as the RabbitMQ docker cases do: tests/conftest.py).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import docker.errors
import pytest
import redis
from docker import DockerClient

from harness.brokers.containers import LABEL, LABEL_HOST, LABEL_PID
from harness.brokers.redis.docker import DEFAULT_IMAGE, DockerRedis, container_settings
from harness.brokers.select import BrokerOptions
from harness.errors import HarnessError

MISSING_IMAGE = "harness-no-such-redis-image:1"


# -- container_settings ------------------------------------------------------------------------


def test_the_container_shares_the_host_network_and_listens_on_its_loopback_port() -> None:
    s = container_settings(DEFAULT_IMAGE, 41001, "harness-redis-test")
    assert (s.image, s.name, s.port) == (DEFAULT_IMAGE, "harness-redis-test", 41001)
    assert s.kwargs == {"network": "host"}, "host networking, never Docker's bridge"
    sh, dash_c, boot, argv0, *args = s.command
    assert (sh, dash_c, argv0) == ("sh", "-c", "redis-server")
    flags = dict(zip(args[::2], args[1::2], strict=True))
    assert flags == {
        "--port": "41001", "--bind": "127.0.0.1", "--protected-mode": "yes", "--daemonize": "no",
        "--databases": "4096", "--dir": "/data",
    }  # fmt: skip
    # Persistence lives in the config file CONFIG REWRITE keeps, not on the command line (which a restart would
    # read again, over the rewritten file).
    assert "exec redis-server /data/redis.conf" in boot and "[ -f /data/redis.conf ] ||" in boot


def test_labels_name_the_harness_the_run_and_the_host() -> None:
    s = container_settings(DEFAULT_IMAGE, 41001)
    assert s.labels == {LABEL: "true", LABEL_PID: str(os.getpid()), LABEL_HOST: socket.gethostname()}
    assert s.name.startswith("harness-redis-") and s.name != container_settings(DEFAULT_IMAGE, 41001).name


# -- errors without an engine ---------------------------------------------------------------------


def test_no_engine_is_one_sentence_naming_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    assert not DockerRedis.available(BrokerOptions(transport="redis"))
    broker = DockerRedis()
    with pytest.raises(HarnessError) as info:
        broker.start()
    message = str(info.value)
    assert message.startswith(f"no Docker engine answers at unix://{tmp_path}/no-docker.sock")
    assert "scripts/docker-engine" in message and "--harness-broker local" in message
    broker.close()  # nothing was made: a no-op


@dataclass
class NoImages:
    """The part of docker-py's DockerClient that ``_ensure_image`` uses, holding no image."""

    pulled: list[str]

    @property
    def images(self) -> NoImages:
        return self

    def get(self, name: str) -> None:
        raise docker.errors.ImageNotFound(f"No such image: {name}")

    def pull(self, name: str) -> None:
        self.pulled.append(name)
        raise docker.errors.APIError("pull access denied")


def test_the_default_image_missing_says_to_build_it_and_is_never_pulled() -> None:
    client = NoImages([])
    with pytest.raises(HarnessError) as info:
        DockerRedis()._ensure_image(client)
    assert str(info.value) == (
        "image harness-redis:7-local cannot be used (it is not on the Docker engine); build it with "
        "scripts/build-redis-image (Redis 7 from Debian's packages) or name another Redis image with "
        "--harness-redis-image"
    )
    assert client.pulled == [], "harness-redis:7-local is built here, in no registry"


# -- a real container -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_image(docker_engine: DockerClient) -> str:
    """The image on the engine; skipped, saying why, without it (failed under ``HARNESS_REQUIRE_DOCKER=1``)."""
    image = os.environ.get("HARNESS_REDIS_IMAGE") or DEFAULT_IMAGE
    try:
        docker_engine.images.get(image)
    except docker.errors.ImageNotFound:
        reason = f"the docker Redis cases need the image {image}: build it with scripts/build-redis-image"
        if os.environ.get("HARNESS_REQUIRE_DOCKER") == "1":
            pytest.fail(f"{reason} (HARNESS_REQUIRE_DOCKER=1: this run was meant to have it)", pytrace=False)
        pytest.skip(reason)
    return image


@pytest.fixture
def broker(redis_image: str, docker_engine: DockerClient) -> Iterator[DockerRedis]:
    instance = DockerRedis(redis_image, boot_timeout=30)
    try:
        instance.start()
        yield instance
    finally:
        instance.close()
    assert not containers_named(docker_engine, instance.settings.name)


def containers_named(client: DockerClient, name: str) -> list:
    return [c for c in client.containers.list(all=True, filters={"name": name}) if c.name == name]


def test_a_missing_image_is_one_sentence_and_leaves_no_container(docker_engine: DockerClient) -> None:
    assert not DockerRedis.available(BrokerOptions(transport="redis", redis_image=MISSING_IMAGE))
    broker = DockerRedis(MISSING_IMAGE)
    with pytest.raises(HarnessError) as info:
        broker.start()
    message = str(info.value)
    assert message.startswith(f"image {MISSING_IMAGE} cannot be used (it is not here and the pull failed: ")
    assert f"build it with scripts/build-redis-image {MISSING_IMAGE} " in message
    assert message.endswith("or name another Redis image with --harness-redis-image")
    broker.close()
    assert not containers_named(docker_engine, broker.settings.name)


def test_it_answers_as_a_labelled_host_network_container_and_close_leaves_none(
    broker: DockerRedis, redis_image: str, docker_engine: DockerClient
) -> None:
    assert DockerRedis.available(BrokerOptions(transport="redis", redis_image=redis_image))
    with broker.client(db=4095) as client:  # the last of the thousands of databases
        assert client.ping()
    if redis_image == DEFAULT_IMAGE:
        assert broker.server_version().split(".")[0] == "7"
    [container] = containers_named(docker_engine, broker.settings.name)
    assert container.labels[LABEL_PID] == str(os.getpid())
    assert container.attrs["HostConfig"]["NetworkMode"] == "host"
    broker.close()
    assert not containers_named(docker_engine, broker.settings.name)
    broker.close()  # idempotent


def test_close_finds_a_container_whose_start_was_interrupted(broker: DockerRedis, docker_engine: DockerClient) -> None:
    broker._container = None  # as after a Ctrl-C inside testcontainers' create: only the name is known
    broker.close()
    assert not containers_named(docker_engine, broker.settings.name)


def container_id(broker: DockerRedis) -> str:
    return broker._container.get_wrapped_container().id


def test_a_crash_keeps_what_an_aof_always_file_holds(broker: DockerRedis) -> None:
    broker.persistence("aof-always")
    with broker.client(db=3) as client:
        client.set("kept", "yes")
    before = container_id(broker)
    broker.restart_broker("crash")
    assert container_id(broker) == before, "the same container, started again"
    with broker.client(db=3) as client:
        assert client.get("kept") == b"yes"
        # The setting itself came back from the rewritten config file.
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("appendfsync") == {"appendfsync": "always"}


def test_a_crash_without_persistence_loses_everything(broker: DockerRedis) -> None:
    broker.persistence("off")
    with broker.client(db=3) as client:
        client.set("lost", "yes")
    broker.restart_broker("crash")
    with broker.client(db=3) as client:
        assert client.get("lost") is None


def test_a_shutdown_and_a_freeze(broker: DockerRedis) -> None:
    broker.persistence("aof-everysec")
    with broker.client(db=3) as client:
        client.set("kept", "yes")
    broker.restart_broker("shutdown")  # SHUTDOWN syncs the append-only file before the server exits
    with broker.client(db=3) as client:
        assert client.get("kept") == b"yes"
    with broker.unreachable(), pytest.raises(redis.TimeoutError), broker.endpoint.client(timeout=0.5) as client:
        client.ping()
    with broker.endpoint.client(timeout=2) as client:
        assert client.ping()
