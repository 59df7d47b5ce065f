"""--harness-rabbitmq-version: the root, the image and the version check, without starting a broker."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.brokers.rabbitmq import local
from harness.brokers.rabbitmq.base import Endpoint, RabbitMQBroker
from harness.brokers.rabbitmq.docker import DockerBroker
from harness.brokers.rabbitmq.warm import WarmBroker
from harness.brokers.select import BrokerOptions
from harness.errors import HarnessError


def test_a_missing_root_says_how_to_build_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_RABBITMQ_4_ROOT", str(tmp_path / "nothing"))
    with pytest.raises(HarnessError, match="run scripts/build-rabbitmq-root"):
        local.LocalBroker(version="4")


def test_an_unknown_version_is_refused_in_one_sentence() -> None:
    with pytest.raises(HarnessError, match="--harness-rabbitmq-version '5' is not one of 3, 4"):
        local.find_root("5")


def test_the_node_runs_in_the_root_in_a_mount_namespace_of_its_own() -> None:
    argv = local.chrooted(Path("/r"), ["/usr/lib/rabbitmq/bin/rabbitmq-server"])
    assert argv[:4] == ["unshare", "--mount", "--propagation", "private"]
    assert 'mount -t proc proc "$0/proc"' in argv[6] and 'exec chroot "$0" "$@"' in argv[6]
    assert argv[7:] == ["/r", "/usr/lib/rabbitmq/bin/rabbitmq-server"]


def test_the_docker_image_follows_the_version_unless_one_is_named() -> None:
    assert DockerBroker.from_options(BrokerOptions(rabbitmq_version="4")).image == "harness-rabbitmq:4-management-local"
    assert DockerBroker.from_options(BrokerOptions(rabbitmq_version="3")).image == "rabbitmq:3.13.7-management"
    named = BrokerOptions(rabbitmq_version="4", image="mine:4")
    assert DockerBroker.from_options(named).image == "mine:4"


def test_the_warm_broker_refuses_version_4() -> None:
    with pytest.raises(HarnessError, match="the warm broker runs RabbitMQ 3 only"):
        WarmBroker.from_options(BrokerOptions(kind="warm", rabbitmq_version="4"))


class Running(RabbitMQBroker):
    kind = "docker"

    def __init__(self, version: str) -> None:
        self.__dict__["_server_version"] = version

    def start(self) -> None: ...

    def close(self) -> None: ...

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint("127.0.0.1", 1, "guest", "guest")


def test_a_broker_running_another_major_version_than_asked_is_refused() -> None:
    Running("4.0.5").check_version("4")
    with pytest.raises(HarnessError, match=r"runs RabbitMQ 3\.10\.8, but --harness-rabbitmq-version 4 was asked"):
        Running("3.10.8").check_version("4")
