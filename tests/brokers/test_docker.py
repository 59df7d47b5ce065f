"""harness.brokers.rabbitmq.docker: the container's settings in both networking modes, and the removal of
containers left by dead runs (no Docker engine needed: pure data and a fake client)."""

from __future__ import annotations

import os
import socket
import subprocess
from dataclasses import dataclass, field

import pytest

from harness.brokers.rabbitmq.docker import (
    LABEL,
    LABEL_HOST,
    LABEL_PID,
    ContainerSettings,
    container_settings,
    published_host,
    remove_leftovers,
)
from harness.errors import HarnessError

IMAGE = "rabbitmq:3.13.7-management"
AMQP_PORT, MANAGEMENT_PORT, DIST_PORT = 41001, 41002, 41003
NODENAME = "harness-0123abcd@localhost"


def settings(network: str) -> ContainerSettings:
    return container_settings(IMAGE, network, [AMQP_PORT, MANAGEMENT_PORT, DIST_PORT], NODENAME)


# -- container_settings ----------------------------------------------------------------------


def test_bridge_publishes_amqp_and_management_on_the_given_host_ports() -> None:
    bridge = settings("bridge")
    assert bridge.ports == {"5672/tcp": AMQP_PORT, "15672/tcp": MANAGEMENT_PORT}
    assert (bridge.amqp_port, bridge.management_port) == (AMQP_PORT, MANAGEMENT_PORT)
    assert bridge.kwargs == {}, "bridge mode must leave the network to Docker's default"
    # Inside its own network namespace the node keeps its default ports.
    assert bridge.env == {
        "RABBITMQ_NODENAME": NODENAME,
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-rabbit collect_statistics_interval 500",
    }


def test_host_network_tells_the_node_its_ports_and_publishes_none() -> None:
    host = settings("host")
    assert host.ports == {}, "docker-py refuses port bindings with host networking"
    assert host.kwargs == {"network": "host"}
    assert (host.amqp_port, host.management_port) == (AMQP_PORT, MANAGEMENT_PORT)
    env = host.env
    assert env["RABBITMQ_NODENAME"] == NODENAME
    assert env["RABBITMQ_NODE_PORT"] == str(AMQP_PORT)
    assert env["RABBITMQ_DIST_PORT"] == str(DIST_PORT)
    erl_args = env["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"]
    assert f"-rabbitmq_management listener [{{port,{MANAGEMENT_PORT}}}" in erl_args
    assert "-rabbit loopback_users []" in erl_args
    assert "-rabbit collect_statistics_interval 500" in erl_args


def test_host_network_listens_on_loopback_only() -> None:
    env = settings("host").env
    assert env["RABBITMQ_NODE_IP_ADDRESS"] == "127.0.0.1"
    assert env["ERL_EPMD_ADDRESS"] == "127.0.0.1"
    assert '{ip,"127.0.0.1"}' in env["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"]


@pytest.mark.parametrize("network", ["bridge", "host"])
def test_labels_name_the_harness_the_run_and_the_host(network: str) -> None:
    s = settings(network)
    assert s.image == IMAGE
    assert s.network == network
    assert s.labels == {LABEL: "true", LABEL_PID: str(os.getpid()), LABEL_HOST: socket.gethostname()}


def test_an_unknown_network_errors() -> None:
    with pytest.raises(HarnessError, match="--harness-docker-network 'overlay' is not one of bridge, host"):
        settings("overlay")


# -- remove_leftovers ------------------------------------------------------------------------


@dataclass
class FakeContainer:
    short_id: str
    labels: dict[str, str]
    removed: bool = False
    gone: bool = False  # removed by another run between the listing and this one's removal

    @property
    def attrs(self) -> dict:
        """What a sparse listing gives (docker's list API): the labels, no per-container inspection."""
        return {"Labels": self.labels}

    def remove(self, force: bool = False) -> None:
        assert force, "a leftover may still be running: it must be removed by force"
        if self.gone:
            import docker.errors

            raise docker.errors.NotFound("No such container")
        self.removed = True


@dataclass
class FakeContainers:
    items: list[FakeContainer]
    queries: list[tuple[bool, dict[str, str]]] = field(default_factory=list)

    def list(
        self, all: bool = False, filters: dict[str, str] | None = None, sparse: bool = False
    ) -> list[FakeContainer]:
        # Sparse, or docker-py inspects each container listed: one another run removes meanwhile fails the listing.
        assert sparse, "the sweep must not inspect each container (a parallel run may remove one meanwhile)"
        self.queries.append((all, filters or {}))
        return self.items


@dataclass
class FakeClient:
    """The part of docker-py's DockerClient that remove_leftovers uses."""

    containers: FakeContainers


def harness_container(short_id: str, pid: int | str, host: str) -> FakeContainer:
    return FakeContainer(short_id, {LABEL: "true", LABEL_PID: str(pid), LABEL_HOST: host})


@pytest.fixture(scope="module")
def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_remove_leftovers_removes_only_containers_of_dead_runs_on_this_host(dead_pid: int) -> None:
    here = socket.gethostname()
    containers = [
        harness_container("dead-run", dead_pid, here),
        harness_container("live-run", os.getpid(), here),  # another session running in parallel
        harness_container("other-host", dead_pid, "another-machine"),  # its pid means nothing here
        harness_container("bad-pid", "not-a-pid", here),  # not made by this harness: not ours to judge
    ]
    client = FakeClient(FakeContainers(containers))

    assert remove_leftovers(client) == ["dead-run"]
    assert [c.short_id for c in containers if c.removed] == ["dead-run"]
    # Stopped containers count too, and only harness-labelled ones are looked at.
    assert client.containers.queries == [(True, {"label": f"{LABEL}=true"})]


def test_remove_leftovers_with_nothing_to_remove() -> None:
    client = FakeClient(FakeContainers([harness_container("live-run", os.getpid(), socket.gethostname())]))
    assert remove_leftovers(client) == []
    assert not client.containers.items[0].removed


@pytest.mark.parametrize(
    ("network", "environ", "host"),
    [
        ("bridge", {}, "127.0.0.1"),
        ("bridge", {"DOCKER_HOST": "unix:///var/run/docker.sock"}, "127.0.0.1"),
        ("bridge", {"DOCKER_HOST": "tcp://docker:2375"}, "docker"),  # GitLab's Docker-in-Docker service
        ("bridge", {"DOCKER_HOST": "tcp://docker:2375", "TC_HOST": "10.0.0.5"}, "10.0.0.5"),
        ("host", {"DOCKER_HOST": "tcp://docker:2375"}, "127.0.0.1"),
    ],
)
def test_published_ports_are_reached_where_the_engine_publishes_them(
    network: str, environ: dict[str, str], host: str
) -> None:
    assert published_host(network, environ) == host


def test_remove_leftovers_skips_a_container_another_run_removed_meanwhile(dead_pid: int) -> None:
    here = socket.gethostname()
    gone = harness_container("gone", dead_pid, here)
    gone.gone = True
    client = FakeClient(FakeContainers([gone, harness_container("dead-run", dead_pid, here)]))
    assert remove_leftovers(client) == ["dead-run"]
