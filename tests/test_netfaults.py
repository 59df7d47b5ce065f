"""The network fault proxy and its kernel rules, on real sockets and real iptables (loopback only)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator

import pytest

from harness import netfaults
from harness.errors import HarnessError
from harness.faults import Fault, NetworkFault, NetworkHealed
from harness.netfaults import RULE_TAG, NetFaults, drop_rules, harness_rules, iptables, remove_stale_rules


def _iptables_usable() -> bool:
    try:
        return subprocess.run(["iptables", "-S", "INPUT"], capture_output=True).returncode == 0
    except FileNotFoundError:
        return False


needs_iptables = pytest.mark.skipif(not _iptables_usable(), reason="needs iptables and the right to use it")


@pytest.fixture
def echo() -> Iterator[int]:
    """An echo server on a free loopback port (the broker's stand-in)."""
    server = socket.create_server(("127.0.0.1", 0))
    served: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            served.append(conn)
            threading.Thread(target=pump, args=(conn,), daemon=True).start()

    def pump(conn: socket.socket) -> None:
        try:
            while data := conn.recv(1024):
                conn.sendall(data)
        except OSError:  # the reset test cuts it; the fixture closes it
            pass

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1]
    server.close()
    for conn in served:
        conn.close()


@pytest.fixture
def net(echo: int) -> Iterator[tuple[NetFaults, list[Fault]]]:
    marks: list[Fault] = []
    faults = NetFaults(("127.0.0.1", echo), marks.append)
    faults.add("worker")
    yield faults, marks
    while OPEN:
        OPEN.pop().close()
    faults.close()
    assert not [line for pid, line in harness_rules() if pid == os.getpid()], "a rule outlived the proxy"


OPEN: list[socket.socket] = []  # the tests' client sockets, closed after each test


def connect(faults: NetFaults, timeout: float = 2.0, program: str = "worker") -> socket.socket:
    client = socket.create_connection(("127.0.0.1", faults.port(program)), timeout=timeout)
    OPEN.append(client)
    client.sendall(b"ping")
    assert client.recv(16) == b"ping"
    return client


def test_the_proxy_relays_and_counts_connections(net):
    faults, _ = net
    client = connect(faults)
    assert faults.opened("worker") == 1
    assert faults.connections("worker") == 1
    client.close()


def test_latency_delays_each_direction_and_is_marked(net):
    faults, marks = net
    client = connect(faults)
    with faults.latency("worker", ms=150):
        started = time.monotonic()
        client.sendall(b"slow")
        assert client.recv(16) == b"slow"
        assert time.monotonic() - started >= 0.3  # 150 ms each way
    assert [type(m) for m in marks] == [NetworkFault, NetworkHealed]
    assert marks[0].label == "network latency 150 ms: worker"


def test_reset_cuts_the_connection_with_a_rst_and_new_ones_work(net):
    faults, marks = net
    client = connect(faults)
    assert faults.reset("worker") == 1
    with pytest.raises(ConnectionResetError):
        client.sendall(b"x")
        client.recv(16)
    connect(faults).close()
    assert marks[0].label == "network reset: worker"


def test_an_unknown_program_is_one_sentence(net):
    faults, _ = net
    with pytest.raises(HarnessError, match="no program 'web' to fault the network of; its programs: \\['worker'\\]"):
        faults.reset("web")


@needs_iptables
def test_blackhole_drops_packets_without_a_reset_and_heals(net):
    faults, marks = net
    client = connect(faults, timeout=0.5)
    with faults.blackhole("worker"):
        assert len([pid for pid, _ in harness_rules() if pid == os.getpid()]) == 2
        client.sendall(b"held")  # no error: the kernel keeps it for retransmission (a half-open connection)
        with pytest.raises(socket.timeout):
            client.recv(16)
    client.settimeout(10)
    assert client.recv(16) == b"held"  # retransmitted once healed
    assert not [pid for pid, _ in harness_rules() if pid == os.getpid()]
    assert [m.label for m in marks] == ["network blackhole: worker", "network healed (blackhole): worker"]


@needs_iptables
def test_partition_cuts_off_the_programs_named_and_no_other(net):
    faults, marks = net
    faults.add("web")
    faults.add("beat")
    worker, web, beat = (connect(faults, timeout=0.5, program=name) for name in ("worker", "web", "beat"))
    with faults.partition("worker", "web"):
        for client in (worker, web):
            client.sendall(b"held")
            with pytest.raises(socket.timeout):
                client.recv(16)
        beat.sendall(b"free")
        assert beat.recv(16) == b"free", "a program outside the partition still reaches the broker"
    for client in (worker, web):
        client.settimeout(10)
        assert client.recv(16) == b"held"  # retransmitted once healed
    assert not [pid for pid, _ in harness_rules() if pid == os.getpid()]
    assert [m.label for m in marks] == ["network partition: worker, web", "network healed (partition): worker, web"]


@needs_iptables
def test_rules_go_when_the_block_raises(net):
    faults, _ = net
    with pytest.raises(RuntimeError), faults.partition("worker"):
        raise RuntimeError("the scenario failed inside the fault")
    assert not [pid for pid, _ in harness_rules() if pid == os.getpid()]


@needs_iptables
def test_rules_go_on_ctrl_c(echo):
    script = textwrap.dedent(f"""
        import signal, sys, time
        from harness.netfaults import NetFaults
        net = NetFaults(("127.0.0.1", {echo}), lambda fault: None)
        net.add("worker")
        try:
            with net.blackhole("worker"):
                print("in", flush=True)
                time.sleep(60)
        finally:
            net.close()
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "in"
    assert [pid for pid, _ in harness_rules() if pid == child.pid]
    child.send_signal(signal.SIGINT)
    child.wait(timeout=20)
    child.stdout.close()
    assert not [pid for pid, _ in harness_rules() if pid == child.pid]


@needs_iptables
def test_rules_of_a_dead_run_are_removed_and_no_others():
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    spec = drop_rules(1, pid=dead.pid)[0]  # port 1: nothing listens there
    iptables("-I", *spec)
    try:
        assert any(pid == dead.pid for pid, _ in harness_rules())
        removed = remove_stale_rules()
        assert any(f"pid={dead.pid}" in line for line in removed)
        assert not any(pid == dead.pid for pid, _ in harness_rules())
    finally:
        iptables("-D", *spec, check=False)


def test_every_rule_is_commented_and_matches_only_the_relay_port():
    for spec in drop_rules(4242, pid=7):
        assert f"{RULE_TAG} pid=7" in spec
        assert ("--dport" in spec or "--sport" in spec) and "4242" in spec and "5672" not in spec
        assert spec[spec.index("-i") + 1] == "lo"


def test_missing_iptables_is_one_sentence(monkeypatch, net):
    faults, _ = net
    monkeypatch.setattr(netfaults, "_checked", [])
    monkeypatch.setattr(netfaults.shutil, "which", lambda name: None)
    with pytest.raises(HarnessError, match="needs iptables, which is not installed"), faults.blackhole("worker"):
        pass


def test_strand_leaves_the_connection_open_and_silent_and_new_ones_work(net):
    faults, marks = net
    client = connect(faults, timeout=0.5)
    assert faults.strand("worker") == 1
    client.sendall(b"lost")  # no error: the relay still takes it, and the other end never sees it
    with pytest.raises(socket.timeout):
        client.recv(16)
    fresh = connect(faults)
    fresh.sendall(b"ping")
    assert fresh.recv(16) == b"ping"
    assert faults.cut_connections and marks[0].label == "network stranded: worker"
