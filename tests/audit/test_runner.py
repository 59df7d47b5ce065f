"""harness.audit.runner: when a task that has not ended is still held by a live process."""

from __future__ import annotations

import pytest

from harness.audit import runner
from harness.audit.plan import make_plan
from harness.audit.runner import SETTLE_S, SHUTDOWN_S, Audit, is_held, prefetched_behind
from harness.spec import StackSpec
from harness.verdict import TaskEvent, TaskHistory

W = "worker@harness"


def history(*steps: tuple[str, float]) -> TaskHistory:
    return TaskHistory("t", [TaskEvent(kind, "t", W, at, at) for kind, at in steps])


def test_a_prefetched_task_is_held_while_its_worker_runs_even_if_its_sent_event_came_last() -> None:
    # The producer stamps its task-sent event after publishing; the worker had received it already.
    prefetched = history(("task-received", 0.0003), ("task-sent", 0.0005))
    assert is_held(prefetched, worker_up=True, pool_process_alive=False)
    assert not is_held(prefetched, worker_up=False, pool_process_alive=False), "its worker is gone"


def test_a_started_task_is_held_only_while_its_pool_process_lives() -> None:
    running = history(("task-sent", 0.0), ("task-received", 0.1), ("task-started", 0.2))
    assert is_held(running, worker_up=True, pool_process_alive=True)
    assert not is_held(running, worker_up=True, pool_process_alive=False), "killed mid-task: nobody holds it"


def test_an_ended_or_never_received_task_is_not_held() -> None:
    assert not is_held(history(("task-received", 0.1), ("task-started", 0.2), ("task-succeeded", 1.2)), True, True)
    assert not is_held(history(("task-sent", 0.0)), True, True)
    assert not is_held(history(), True, True)


def test_a_task_received_while_the_long_one_ran_and_started_after_it_was_prefetched() -> None:
    long = history(("task-received", 0.0), ("task-started", 0.1), ("task-started", 2.5), ("task-succeeded", 3.6))
    behind = history(("task-received", 0.2), ("task-received", 2.4), ("task-started", 3.7), ("task-succeeded", 3.8))
    assert prefetched_behind(long, behind), "received at 0.2 s, during the long task's first run (to 2.5 s)"


def test_a_task_first_received_after_the_long_ones_first_run_was_not_prefetched() -> None:
    # worker_prefetch_multiplier=1 with acks_late: the long task's delivery fills the worker's window.
    long = history(("task-received", 0.0), ("task-started", 0.1), ("task-started", 2.5))
    waited = history(("task-sent", 0.05))
    assert not prefetched_behind(long, waited), "never received at all"
    late = history(("task-received", 2.6), ("task-started", 9.0))
    assert not prefetched_behind(long, late), "received only after the long task ran again"


def test_a_task_a_second_pool_process_started_at_once_was_not_prefetched() -> None:
    long = history(("task-received", 0.0), ("task-started", 0.1), ("task-succeeded", 3.0))
    alongside = history(("task-received", 0.2), ("task-started", 0.21), ("task-succeeded", 0.3))
    assert not prefetched_behind(long, alongside)


class Recorded:
    """A stand-in for the stack and ledger: records the bounds the audit's waits are given."""

    def __init__(self) -> None:
        self.spec = StackSpec(worker_concurrency=None)
        self.timeouts: dict[str, float] = {}
        self.journal = None

    def signal(self, name: str, signal: str) -> None: ...

    def wait_exited(self, name: str, timeout: float) -> None:
        self.timeouts["exit"] = timeout

    def program_config(self, name: str) -> dict:
        return {}

    def settled(self, ids: list[str]) -> int:
        return len(ids)

    def event_count(self, ids: list[str]) -> int:
        return 0


@pytest.mark.parametrize("work", [1.0, 30.0])
def test_the_waits_that_must_outlast_the_work_grow_with_it(work: float, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--audit-work 30`` failed: the warm shutdown waits for the running probe, and the 30 s wait for its exit
    ran out first. The shutdown's and the settling's bounds are their own plus the work."""
    plan = make_plan(StackSpec(celery_app="proj:app"), {"default_queue": "celery", "tasks": {}}, work_s=work)
    fake = Recorded()
    audit = Audit(plan, fake, fake, vhost=None, recorder=None)  # type: ignore[arg-type]
    audit.shut_down("TERM")
    assert fake.timeouts["exit"] == SHUTDOWN_S + work
    monkeypatch.setattr(audit, "in_hand", lambda ids: [])
    monkeypatch.setattr(audit, "ready", lambda: 0)
    bounds: list[float] = []
    real = runner.eventually
    monkeypatch.setattr(
        runner, "eventually", lambda *a, timeout, **kw: bounds.append(timeout) or real(*a, timeout=timeout, **kw)
    )
    audit.settle(["a"])
    assert bounds == [SETTLE_S + work]
