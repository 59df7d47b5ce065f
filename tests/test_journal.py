"""harness.journal: each process appends whole lines; the reader reads what is new and says what was cut."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from celery import Celery, signals

from harness.journal import JournalReader, JournalWriter, connect, pool_name


def test_the_reader_reads_each_line_once_as_it_is_written(tmp_path: Path) -> None:
    writer = JournalWriter(tmp_path, "worker_hello", hostname="worker_hello@harness")
    reader = JournalReader(tmp_path)
    writer.write("task-received", "a")
    assert [(e.type, e.uuid, e.hostname, e.program, e.pid) for e in reader.entries()] == [
        ("task-received", "a", "worker_hello@harness", "worker_hello", os.getpid())
    ]
    writer.write("task-started", "a", "other@host", retries=0)
    assert [(e.type, e.hostname) for e in reader.entries()] == [
        ("task-received", "worker_hello@harness"),
        ("task-started", "other@host"),
    ]
    assert reader.cuts() == []


def test_a_line_cut_short_by_a_kill_is_reported_not_read(tmp_path: Path) -> None:
    JournalWriter(tmp_path, "worker_hello").write("task-started", "a")
    path = next(tmp_path.glob("*.jsonl"))
    with path.open("ab") as handle:
        handle.write(b'{"type":"task-succ')  # what a SIGKILL in the middle of a write would leave
    reader = JournalReader(tmp_path)
    assert [e.type for e in reader.entries()] == ["task-started"]
    [cut] = reader.cuts()
    assert cut.program == "worker_hello" and "ends mid-line" in cut.describe()


def test_a_forked_child_writes_a_file_of_its_own(tmp_path: Path) -> None:
    writer = JournalWriter(tmp_path, "worker_hello")
    writer.write("worker-online")
    pid = os.fork()
    if pid == 0:  # the child: a pool process
        writer.write("task-started", "a")
        os._exit(0)
    os.waitpid(pid, 0)
    assert len(list(tmp_path.glob("worker_hello.*.jsonl"))) == 2
    assert {e.pid for e in JournalReader(tmp_path).entries()} == {os.getpid(), pid}


def test_a_publish_is_journaled_before_and_after_it_reaches_the_broker(tmp_path: Path) -> None:
    """Celery's publish signals, fired by an eager-free send over the in-memory transport."""
    connect(JournalWriter(tmp_path, "web"))
    app = Celery("probe", broker="memory://", set_as_current=False)
    app.send_task("proj.add", args=(1, 2), task_id="sent-1")
    steps = [(e.type, e.uuid) for e in JournalReader(tmp_path).entries() if e.uuid == "sent-1"]
    assert steps == [("task-sent", "sent-1"), ("task-published", "sent-1")]


def test_a_run_celery_cancelled_itself_is_journaled_as_a_retry_saying_so(tmp_path: Path) -> None:
    """Celery's Request.cancel sends task_retry with no reason (its own Retry("cancelled by Celery"))."""
    connect(JournalWriter(tmp_path, "worker"))
    signals.task_retry.send(sender=None, request=SimpleNamespace(id="cancelled-1", hostname="w@h"), einfo=None)
    signals.task_retry.send(
        sender=None, request=SimpleNamespace(id="retried-1", hostname="w@h"), reason=ValueError("x"), einfo=None
    )
    said = {e.uuid: e.fields["exception"] for e in JournalReader(tmp_path).entries() if e.type == "task-retried"}
    assert said == {"cancelled-1": "cancelled by Celery", "retried-1": "ValueError('x')"}


def test_a_failure_is_journaled_with_its_real_type_and_message_whatever_wraps_it(tmp_path: Path) -> None:
    """The task_failure signal's exception, as the pool process or the worker's main process sends it: the
    exception itself, billiard's ExceptionWithTraceback around it, or Celery's wrapper of one that cannot be
    pickled. Each is written as its type and message (the repr of a wrapper names neither)."""
    from billiard.einfo import ExceptionWithTraceback
    from celery.utils.serialization import UnpickleableExceptionWrapper

    connect(JournalWriter(tmp_path, "worker"))
    for task_id, exception in {
        "plain": ValueError("bad input"),
        "wrapped": ExceptionWithTraceback(ValueError("bad input"), "Traceback ..."),
        "unpicklable": UnpickleableExceptionWrapper(
            "shop.errors", "GatewayError", ("card declined",), "GatewayError()"
        ),
        "silent": KeyboardInterrupt(),
    }.items():
        signals.task_failure.send(sender=None, task_id=task_id, exception=exception)
    said = {
        e.uuid: (e.fields["error_type"], e.fields["error_message"])
        for e in JournalReader(tmp_path).entries()
        if e.type == "task-failed"
    }
    assert said == {
        "plain": ("ValueError", "bad input"),
        "wrapped": ("ValueError", "bad input"),
        "unpicklable": ("GatewayError", "card declined"),
        "silent": ("KeyboardInterrupt", ""),
    }


@pytest.mark.parametrize("pool", ["prefork", "threads", "solo", "gevent"])
def test_a_worker_says_its_pool_as_its_P_option_names_it(pool: str) -> None:
    """The worker-online entry names the pool the worker runs (the app's own when no -P was given): the audit
    says which it audited."""
    from celery.concurrency import get_implementation

    assert pool_name(get_implementation(pool)(limit=1)) == pool
    assert pool_name(None) is None
