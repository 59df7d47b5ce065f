"""harness.brokers.rabbitmq.local: finding rabbitmq-server, and the private node's config (never started here)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import ports
from harness.brokers.rabbitmq import local
from harness.brokers.rabbitmq.local import LocalBroker, find_server
from harness.errors import HarnessError

REAL_SERVER = local.DEBIAN_REAL_SBIN / "rabbitmq-server"


def script(path: Path, body: str = "exit 0\n", executable: bool = True) -> Path:
    path.write_text(f"#!/bin/sh\n{body}")
    path.chmod(0o755 if executable else 0o644)
    return path


# -- find_server -----------------------------------------------------------------------------


def test_a_named_server_that_is_not_executable(tmp_path: Path) -> None:
    server = script(tmp_path / "rabbitmq-server", executable=False)
    with pytest.raises(HarnessError) as info:
        find_server(str(server))
    message = str(info.value)
    assert f"--harness-rabbitmq-server {server} is not an executable file" in message
    assert "apt-get install -y rabbitmq-server" in message
    assert "--harness-broker url --harness-broker-url amqp://" in message


def test_a_named_server_that_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="is not an executable file"):
        find_server(str(tmp_path / "nowhere" / "rabbitmq-server"))


def test_a_named_directory_is_not_a_server(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="is not an executable file"):
        find_server(str(tmp_path))


def test_a_named_executable_server_is_used_as_is(tmp_path: Path) -> None:
    server = script(tmp_path / "rabbitmq-server")
    assert find_server(str(server)) == server


def test_nothing_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local.shutil, "which", lambda *args, **kwargs: None)
    with pytest.raises(HarnessError, match="rabbitmq-server was not found on PATH; install it"):
        find_server(None)


@pytest.mark.skipif(not REAL_SERVER.exists(), reason=f"{REAL_SERVER} is not installed")
def test_the_debian_wrapper_resolves_to_the_real_script(tmp_path: Path) -> None:
    wrapper = script(tmp_path / "rabbitmq-server", 'su rabbitmq -s /bin/sh -c "$SCRIPT $*"\n')
    assert find_server(str(wrapper)) == REAL_SERVER


def test_the_debian_wrapper_resolves_to_the_real_script_in_a_fake_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "lib").mkdir()
    real = script(tmp_path / "lib" / "rabbitmq-server")
    monkeypatch.setattr(local, "DEBIAN_REAL_SBIN", real.parent)
    wrapper = script(tmp_path / "rabbitmq-server", 'su rabbitmq -s /bin/sh -c "$SCRIPT $*"\n')
    other = script(tmp_path / "my-rabbitmq-server", "exec /opt/rabbitmq/sbin/rabbitmq-server\n")
    assert find_server(str(wrapper)) == real
    assert find_server(str(other)) == other


# -- the node's config -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def port_sets() -> tuple[set[int], set[int]]:
    return ports.port_for.available_good_ports(), ports.port_for.available_ports()


@pytest.fixture(autouse=True)
def quick_ports(monkeypatch: pytest.MonkeyPatch, port_sets: tuple[set[int], set[int]]) -> None:
    """port_for works out its set of good ports anew on every pick (about 70 ms): work it out once."""
    good, candidates = port_sets
    monkeypatch.setattr(ports.port_for.api, "available_good_ports", lambda *args, **kwargs: set(good))
    monkeypatch.setattr(ports.port_for.api, "available_ports", lambda *args, **kwargs: set(candidates))


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalBroker]:
    node = LocalBroker(str(script(tmp_path / "rabbitmq-server")), work_root=str(tmp_path))
    yield node
    node.close()


def test_the_node_lives_in_its_own_directory(broker: LocalBroker, tmp_path: Path) -> None:
    assert broker.dir.parent == tmp_path
    assert broker.dir.name.startswith("harness-rabbitmq-")
    assert (broker.dir / "mnesia").is_dir()
    assert (broker.dir / "log").is_dir()
    assert (broker.dir / "enabled_plugins").read_text() == "[rabbitmq_management].\n"
    assert broker.ctl == tmp_path / "rabbitmqctl"


def test_rabbitmq_conf_listens_on_its_own_ports(broker: LocalBroker) -> None:
    lines = (broker.dir / "rabbitmq.conf").read_text().splitlines()
    assert f"listeners.tcp.default = 127.0.0.1:{broker.port}" in lines
    assert "management.tcp.ip = 127.0.0.1" in lines
    assert f"management.tcp.port = {broker.management_port}" in lines
    assert len({broker.port, broker.management_port, broker.dist_port}) == 3
    assert broker.endpoint.port == broker.port
    assert broker.endpoint.management_url == f"http://127.0.0.1:{broker.management_port}"


def test_the_environment_keeps_the_system_config_out(broker: LocalBroker) -> None:
    env = broker._environment()
    assert env["RABBITMQ_CONFIG_FILE"] == str(broker.dir / "rabbitmq.conf")
    assert env["RABBITMQ_CONF_ENV_FILE"] == str(broker.dir / "rabbitmq-env.conf")
    assert (broker.dir / "rabbitmq-env.conf").read_text() == ""  # empty: the system's env file is not read
    assert env["HOME"] == str(broker.dir)  # its own Erlang cookie
    assert env["RABBITMQ_MNESIA_BASE"] == str(broker.dir / "mnesia")
    assert env["RABBITMQ_LOG_BASE"] == str(broker.dir / "log")
    assert env["RABBITMQ_ENABLED_PLUGINS_FILE"] == str(broker.dir / "enabled_plugins")
    assert env["RABBITMQ_DIST_PORT"] == str(broker.dist_port)
    assert env["RABBITMQ_NODENAME"] == broker.nodename
    assert broker.nodename.startswith("harness-") and broker.nodename.endswith("@localhost")
    assert not [value for value in env.values() if "/etc/rabbitmq" in value]


def test_two_nodes_do_not_share_names_or_directories(broker: LocalBroker, tmp_path: Path) -> None:
    other = LocalBroker(str(broker.server), work_root=str(tmp_path))
    try:
        assert other.dir != broker.dir
        assert other.nodename != broker.nodename
    finally:
        other.close()


def test_a_requested_port_is_used(tmp_path: Path) -> None:
    wanted = local.free_ports(1)[0]
    node = LocalBroker(str(script(tmp_path / "rabbitmq-server")), port=wanted, work_root=str(tmp_path))
    try:
        assert node.port == wanted
        assert f"listeners.tcp.default = 127.0.0.1:{wanted}" in (node.dir / "rabbitmq.conf").read_text()
    finally:
        node.close()


def test_the_other_ports_never_reuse_a_requested_port(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wanted, *others = local.free_ports(4)

    def select_random(ports: object = None, exclude_ports: list[int] | None = None) -> int:
        # port_for picks at random among free ports: here the requested one comes up second.
        return next(p for p in (others[0], wanted, *others[1:]) if p not in (exclude_ports or ()))

    monkeypatch.setattr(ports.port_for, "select_random", select_random)
    node = LocalBroker(str(script(tmp_path / "rabbitmq-server")), port=wanted, work_root=str(tmp_path))
    try:
        assert wanted not in (node.management_port, node.dist_port)
    finally:
        node.close()


def test_close_removes_the_directory_and_can_be_repeated(broker: LocalBroker) -> None:
    broker.close()
    assert not broker.dir.exists()
    broker.close()
