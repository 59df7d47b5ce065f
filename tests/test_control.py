"""harness.control: ``ctl broker ...`` asks ``harness up``, which runs the broker's fault calls; each family gets
its own actions, the other family's and a broker the harness did not start are refused in one sentence."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path

import pytest

from harness.brokers.base import BrokerNotOwned
from harness.control import BrokerControls, ControlServer, ask
from harness.errors import HarnessError


class FakeBroker:
    """What the controls call on a broker, recorded."""

    def __init__(self, transport: str = "redis", owned: bool = True) -> None:
        self.transport, self.owned, self.kind = transport, owned, "local"
        self.product = {"redis": "Redis", "rabbitmq": "RabbitMQ"}[transport]
        self.STOP_KINDS = ("crash", "shutdown") if transport == "redis" else ("node", "app")
        if transport == "redis":
            self.DEFAULT_STOP = "crash"
        self._stopped_how: str | None = None
        self.calls: list[tuple] = []
        self.alarm_open = False

    def stop_broker(self, how: str) -> None:
        self.calls.append(("stop", how))
        self._stopped_how = how

    def start_broker(self) -> None:
        self.calls.append(("start",))
        self._stopped_how = None

    def pause_broker(self) -> None:
        self.calls.append(("pause",))

    def resume_broker(self) -> None:
        self.calls.append(("resume",))

    def persistence(self, mode: str) -> None:
        self.calls.append(("persistence", mode))

    def kill_connections(self, db: int | None = None) -> int:
        self.calls.append(("kill", db))
        return 3

    def rabbitmqctl(self, *args: str) -> str:
        raise BrokerNotOwned("the url broker is not the harness's to reconfigure")

    @contextmanager
    def memory_alarm(self):
        self.alarm_open = True
        yield
        self.alarm_open = False


class Space:
    db = 7


def test_redis_gets_stop_start_freeze_and_its_own_persistence_and_connection_kills() -> None:
    broker = FakeBroker("redis")
    controls = BrokerControls(broker, Space())
    assert controls.run("stop", []).startswith("broker: stopped (crash)")
    with pytest.raises(HarnessError, match="already stopped"):
        controls.run("stop", [])
    controls.run("start", [])
    controls.run("restart", ["shutdown"])
    controls.run("freeze", [])
    with pytest.raises(HarnessError, match="frozen: ctl broker thaw first"):
        controls.run("restart", [])
    controls.run("thaw", [])
    controls.run("persistence", ["aof-always"])
    assert "3 connection(s)" in controls.run("kill-connections", [])
    assert broker.calls == [
        ("stop", "crash"), ("start",), ("stop", "shutdown"), ("start",), ("pause",), ("resume",),
        ("persistence", "aof-always"), ("kill", 7),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("transport", "action", "args", "said"),
    [
        ("redis", "rabbitmqctl", ["status"], "ctl broker rabbitmqctl acts on RabbitMQ; this stack runs on Redis"),
        ("redis", "alarm", ["memory", "on"], "ctl broker alarm acts on RabbitMQ; this stack runs on Redis"),
        ("rabbitmq", "persistence", ["rdb"], "ctl broker persistence acts on Redis; this stack runs on RabbitMQ"),
        ("rabbitmq", "kill-connections", [], "ctl broker kill-connections acts on Redis; this stack runs on RabbitMQ"),
        ("redis", "stop", ["node"], "a Redis stop is one of crash, shutdown, not 'node'"),
        ("redis", "start", [], "the broker is not stopped: ctl broker stop first (or restart)"),
        ("redis", "thaw", [], "the broker is not frozen"),
        ("redis", "persistence", [], "ctl broker persistence takes MODE"),
        ("redis", "reboot", [], "ctl broker 'reboot' is not one of stop, start"),
        ("rabbitmq", "alarm", ["cpu", "on"], "ctl broker alarm takes memory or disk, then on or off"),
    ],
)
def test_a_wrong_action_is_one_sentence(transport: str, action: str, args: list[str], said: str) -> None:
    with pytest.raises(HarnessError) as refused:
        BrokerControls(FakeBroker(transport), Space()).run(action, args)
    assert str(refused.value).startswith(said) and "\n" not in str(refused.value)


def test_a_broker_the_harness_did_not_start_is_not_touched() -> None:
    broker = FakeBroker("redis", owned=False)
    with pytest.raises(HarnessError, match=r"^the local broker is not the harness's to stop \(it did not start it\)"):
        BrokerControls(broker, Space()).run("stop", [])
    assert broker.calls == []


def test_an_alarm_left_on_and_a_frozen_broker_are_undone_when_up_ends() -> None:
    broker = FakeBroker("rabbitmq")
    controls = BrokerControls(broker, Space())
    controls.run("alarm", ["memory", "on"])
    controls.run("freeze", [])
    assert broker.alarm_open
    controls.close()
    assert not broker.alarm_open and broker.calls[-1] == ("resume",)


def test_ctl_asks_up_over_its_socket_and_gets_the_answer_or_the_refusal(tmp_path: Path) -> None:
    broker = FakeBroker("redis")
    server = ControlServer(tmp_path / "ctl.sock", BrokerControls(broker, Space()))
    done: list[str | None] = []

    def serve(times: int) -> None:
        for _ in range(times):
            done.append(server.serve(10.0))

    thread = threading.Thread(target=serve, args=(2,))
    thread.start()
    try:
        assert ask(str(server.path), "stop", ["shutdown"]).startswith("broker: stopped (shutdown)")
        with pytest.raises(HarnessError, match="acts on RabbitMQ"):
            ask(str(server.path), "rabbitmqctl", ["status"])
    finally:
        thread.join(10)
        server.close()
    assert done == ["stop", None] and broker.calls == [("stop", "shutdown")]
    assert not server.path.exists()
    with pytest.raises(HarnessError, match="harness up does not answer on"):
        ask(str(server.path), "start", [])


def test_a_stack_kept_by_pytest_offers_no_broker_controls() -> None:
    with pytest.raises(HarnessError, match=r"broker controls are python -m harness up's"):
        ask(None, "stop", [])


def test_no_request_within_the_refresh_returns_nothing(tmp_path: Path) -> None:
    server = ControlServer(tmp_path / "ctl.sock", BrokerControls(FakeBroker(), Space()))
    try:
        assert server.serve(0.05) is None
    finally:
        server.close()
