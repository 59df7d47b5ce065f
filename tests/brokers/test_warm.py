"""The warm provider: a node that outlives the run, found again by the next one, still the harness's own."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from harness.brokers.rabbitmq import warm
from harness.brokers.rabbitmq.warm import WarmBroker, main
from harness.brokers.select import BrokerOptions
from harness.errors import HarnessError
from harness.waiting import eventually

pytestmark = pytest.mark.skipif(
    shutil.which("rabbitmq-server", path="/usr/sbin:/usr/bin") is None, reason="no rabbitmq-server"
)


@pytest.fixture
def warm_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("HARNESS_WARM_HOME", str(tmp_path / "warm"))
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)  # these tests are one run each, in any run
    yield tmp_path / "warm"
    found = WarmBroker.found()
    if found is not None:  # whatever the test did, no node outlives it
        found.shut_down()


def test_a_second_run_finds_the_node_the_first_left_up_and_stop_removes_it(warm_home: Path) -> None:
    first = WarmBroker.from_options(BrokerOptions(kind="warm"))
    first.start()
    first.close()  # the end of a run: the node stays up
    again = WarmBroker.found()
    assert again is not None and again.endpoint == first.endpoint and again._pid == first._pid
    assert main(["status"]) == 0
    assert main(["stop"]) == 0
    assert WarmBroker.found() is None and not (warm_home / "state.json").exists()
    assert not psutil.pid_exists(first._pid) or psutil.Process(first._pid).status() == psutil.STATUS_ZOMBIE


def test_fault_calls_work_on_the_warm_node(warm_home: Path) -> None:
    node = WarmBroker.from_options(BrokerOptions(kind="warm"))
    node.start()
    port = node.port
    node.restart_broker()
    assert node.answering() and node.port == port
    found = WarmBroker.found()
    assert found is not None and found._pid == node._pid, "the restarted node's pid is saved for the next run"
    node.restart_broker(how="app")
    assert node.answering()


def test_a_ctrl_c_while_the_node_boots_leaves_no_node(warm_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Interrupted before the node answers, no state file names it yet: it must go with the run, or it would
    outlive it with nothing to stop it (found left by a run killed mid-test)."""
    node = WarmBroker.from_options(BrokerOptions(kind="warm"))

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(warm, "eventually", interrupted)
    with pytest.raises(KeyboardInterrupt):
        node.start()
    assert node._pid and WarmBroker.found() is None

    def gone() -> bool:
        try:
            return psutil.Process(node._pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    eventually(gone, timeout=10, what="the booting node to be gone")


def test_a_parallel_run_is_refused_in_one_sentence(warm_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "3")
    with pytest.raises(HarnessError, match=r"^the warm broker is one node, shared: run without -n"):
        WarmBroker.from_options(BrokerOptions(kind="warm"))
    assert not (warm_home / "nodes").exists(), "nothing booted, nothing made"
