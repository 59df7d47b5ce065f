"""harness.status: the status line counts each task's fate as the verdict does, and names unconsumed queues."""

from __future__ import annotations

import os
import subprocess
import sys

from harness.status import SETTLE_S, Status, failures, task_counts, unconsumed
from harness.verdict import TaskEvent, TaskHistory

W = "worker@harness"
NOW = 1000.0


def history(task_id: str, *steps: tuple[str, float]) -> TaskHistory:
    return TaskHistory(task_id, [TaskEvent(kind, task_id, W, at, at) for kind, at in steps])


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_a_task_run_twice_is_duplicated_not_succeeded() -> None:
    """The user's case: after a worker kill under late acknowledgement one order ran twice."""
    once = [history(f"t{n}", ("task-sent", 1.0), ("task-started", 2.0), ("task-succeeded", 3.0)) for n in range(9)]
    twice = history("tx", ("task-sent", 1.0), ("task-started", 2.0), ("task-started", 9.0), ("task-succeeded", 10.0))
    histories = {h.task_id: h for h in [*once, twice]}
    counts = task_counts(histories, {}, messages=0, now=NOW)
    assert (counts["sent"], counts["succeeded"], counts["duplicated"]) == (10, 9, 1)


def test_a_run_whose_process_is_gone_is_not_running() -> None:
    started = {"alive": os.getpid(), "killed": dead_pid()}
    histories = {
        "alive": history("alive", ("task-sent", NOW - 10), ("task-started", NOW - 9)),
        "killed": history("killed", ("task-sent", NOW - 10), ("task-started", NOW - 9)),
    }
    requeued = task_counts(histories, started, messages=1, now=NOW)
    assert (requeued["running"], requeued["queued"], requeued["lost"]) == (1, 1, 0), "its message went back"
    gone = task_counts(histories, started, messages=0, now=NOW)
    assert (gone["running"], gone["queued"], gone["lost"]) == (1, 0, 1), "acknowledged before it ran: lost"
    unknown = task_counts(histories, started, messages=None, now=NOW)
    assert (unknown["lost"], unknown["unsettled"]) == (0, 1), "the broker cannot say what it holds"


def test_a_task_just_sent_is_not_called_lost_before_its_queue_shows_it() -> None:
    fresh = {"new": history("new", ("task-sent", NOW - SETTLE_S / 4))}
    counts = task_counts(fresh, {}, messages=0, now=NOW)
    assert (counts["queued"], counts["lost"]) == (1, 0)
    assert task_counts(fresh, {}, messages=0, now=NOW + SETTLE_S)["lost"] == 1


def test_the_line_shows_the_other_fates_only_when_not_zero() -> None:
    status = Status(tasks={"sent": 10, "running": 0, "succeeded": 9, "failed": 0, "duplicated": 1})
    assert "tasks: 10 sent, 0 running, 9 succeeded, 0 failed, 1 duplicated" in status.line()
    assert "lost" not in status.line() and "queued" not in status.line()


def test_a_routed_queue_without_a_consumer_or_not_yet_declared_is_a_problem() -> None:
    depths = {"orders": {"ready": 0, "unacked": 0, "consumers": 1}, "notifications": {"ready": 3, "consumers": 0}}
    assert unconsumed(["orders", "notifications", "exports"], depths) == [
        "queue exports has no consumer",
        "queue notifications has no consumer",
    ]
    assert unconsumed([], depths) == []


def test_a_failure_is_counted_by_its_real_type_and_the_line_says_its_message() -> None:
    """The journal's failure line of a v2 producer's click on a v1 worker, and one whose only record is Celery's
    event, which carries billiard's wrapper (``ExceptionWithTraceback()``) and the traceback of the cause."""
    mismatch = "say_hello() takes 2 positional arguments but 3 were given"
    written = TaskEvent("task-failed", "a", W, 2.0, 2.0, {"error_type": "TypeError", "error_message": mismatch})
    wrapped = TaskEvent(
        "task-failed", "b", W, 3.0, 3.0,
        {"exception": "ExceptionWithTraceback()", "traceback": "Traceback ...\nValueError: bad input\n"},
    )  # fmt: skip
    histories = {
        "a": TaskHistory("a", [TaskEvent("task-started", "a", W, 1.0, 1.0), written]),
        "b": TaskHistory("b", [TaskEvent("task-started", "b", W, 1.0, 1.0), wrapped]),
    }
    counts, errors = failures(histories)
    assert counts == {"TypeError": 1, "ValueError": 1}
    assert errors == {"TypeError": f"TypeError: {mismatch}", "ValueError": "ValueError: bad input"}
    line = Status(tasks={"failed": 2}, failures=counts, errors=errors).line()
    assert f"2 failed (TypeError 1: {mismatch}, ValueError 1: bad input)" in line, line
