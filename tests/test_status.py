"""harness.status: the status line counts each task's fate as the verdict does, and names unconsumed queues."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.brokers.rabbitmq.vhost import ScenarioVhost
from harness.brokers.redis.space import RedisSpace
from harness.errors import HarnessError
from harness.journal import Entry
from harness.state import StackState
from harness.status import (
    SETTLE_S,
    Status,
    beat_line,
    consumed_queues,
    failures,
    next_due,
    saved_space,
    task_counts,
    unconsumed,
)
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


def test_on_redis_a_routed_queue_is_consumed_when_an_online_worker_said_it_consumes_it() -> None:
    """Redis counts no consumers (``consumers`` None): the workers' ``worker-online`` lines say what they consume."""
    depths = {"orders": {"ready": 0, "unacked": 0, "consumers": None}, "notifications": {"ready": 2, "consumers": None}}
    assert unconsumed(["orders", "notifications", "exports"], depths, consumed={"orders"}) == [
        "queue exports has no consumer",
        "queue notifications has no consumer",
    ]
    assert unconsumed(["orders", "notifications"], depths, consumed=None) == [], "unknown is not called unconsumed"


def test_the_consumed_queues_are_those_of_the_online_workers_current_processes() -> None:
    def online(program: str, pid: int, queues: list[str] | None) -> Entry:
        fields = {} if queues is None else {"queues": queues}
        return Entry("worker-online", None, "h", 1.0, program, pid, fields)

    infos = {"w1": {"pid": 11}, "w2": {"pid": 22}}
    entries = [online("w1", 10, ["old"]), online("w1", 11, ["orders"]), online("w2", 22, ["exports"])]
    assert consumed_queues(["w1", "w2"], infos, entries) == {"orders", "exports"}
    assert consumed_queues([], infos, entries) == set()
    assert consumed_queues(["w1"], infos, [online("w1", 11, None)]) is None, "a journal that did not say"


def saved_state(tmp_path: Path, **fields: object) -> dict:
    data = {
        "owner": "up", "pid": 1, "label": "harness up", "workdir": str(tmp_path), "supervisor_conf": "s.conf",
        "supervisor_socket": "s.sock", "journal_dir": str(tmp_path), "programs": {"w": "worker"},
        "broker_kind": "local", "vhost": "v", "user": "u", "password": "p", "management_url": None,
    }  # fmt: skip
    return {**data, **fields}


def test_a_state_file_from_before_redis_reads_as_rabbitmq(tmp_path: Path) -> None:
    path = tmp_path / "old.json"
    path.write_text(json.dumps(saved_state(tmp_path, amqp_url="amqp://u:p@127.0.0.1:5999/v")))
    state = StackState.read(path)
    assert (state.transport, state.url, state.control_socket) == ("rabbitmq", "amqp://u:p@127.0.0.1:5999/v", None)
    space = saved_space(state)
    assert isinstance(space, ScenarioVhost) and space.url == state.url and space.name == "v"


def test_a_redis_state_gives_a_space_on_its_database(tmp_path: Path) -> None:
    path = tmp_path / "redis.json"
    fields = {"transport": "redis", "url": "redis://127.0.0.1:6399/5", "vhost": "db 5", "queues": ["hello_queue"]}
    path.write_text(json.dumps(saved_state(tmp_path, **fields)))
    space = saved_space(StackState.read(path))
    assert isinstance(space, RedisSpace) and (space.db, space.url, space.transport) == (5, fields["url"], "redis")
    assert space.queues == ("hello_queue",) and not space.counts_consumers


def test_a_state_file_without_a_url_is_one_sentence(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(saved_state(tmp_path)))
    with pytest.raises(HarnessError, match=r"lacks url; remove it if no stack is up"):
        StackState.read(path)


# -- a running beat on the status line ---------------------------------------------------------------------------


def beat_step(kind: str, t: float, **fields: object) -> Entry:
    return Entry(kind, fields.pop("uuid", None), None, t, "beat", 7, {"type": kind, "t": t, **fields})


def test_a_beat_shows_each_entry_and_when_it_is_next_due() -> None:
    ready = beat_step("beat-ready", 100.0, entries={"report": {"every": 60.0, "due": 160.0},
                                                     "nightly": {"every": None, "due": None}})  # fmt: skip
    sent = beat_step("beat-sent", 160.2, uuid="t1", entry="report", at=160.0)
    assert (
        beat_line("beat", [ready], now=118.0) == "beat: nightly (not an interval) next ?, report every 60s next in 42s"
    )
    assert beat_line("beat", [ready, sent], now=170.0).endswith("report every 60s next in 50s")


def test_a_beat_that_has_not_loaded_its_schedule_says_so() -> None:
    assert beat_line("beat", [], now=1.0) == "beat: loading its schedule"


def test_only_the_latest_load_of_the_schedule_counts() -> None:
    first = beat_step("beat-ready", 0.0, entries={"report": {"every": 10.0, "due": 10.0}})
    old_send = beat_step("beat-sent", 10.0, uuid="t1", entry="report", at=10.0)
    again = beat_step("beat-ready", 50.0, entries={"report": {"every": 10.0, "due": 60.0}})
    assert next_due([first, old_send, again], now=55.0) == {"report": (10.0, 60.0)}


def test_a_send_tells_when_its_entry_is_next_due_even_one_loaded_later_or_not_an_interval() -> None:
    ready = beat_step("beat-ready", 0.0, entries={"report": {"every": 10.0, "due": 10.0}})
    cron = beat_step("beat-sent", 60.0, uuid="t1", entry="nightly", at=60.0, every=None, next=120.0)
    added = beat_step("beat-sent", 61.0, uuid="t2", entry="from-the-database", at=61.0, every=3.0)
    assert next_due([ready, cron, added], now=62.0) == {
        "report": (10.0, 10.0), "nightly": (None, 120.0), "from-the-database": (3.0, 64.0),
    }  # fmt: skip
