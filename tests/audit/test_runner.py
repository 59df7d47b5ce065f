"""harness.audit.runner: when a task that has not ended is still held by a live process."""

from __future__ import annotations

from harness.audit.runner import is_held
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
