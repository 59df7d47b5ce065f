"""Child recycling under load: ``max_tasks_per_child`` replaces each pool process after its N-th task."""

import pytest

from app_under_test.stack import demo, worker
from harness.producers import DirectProducer

pytestmark = [pytest.mark.catalogue, pytest.mark.worker_fault]

BACKLOG, CONCURRENCY = 50, 10
MAINTENANCE_TICK_S = 5.0  # Celery's prefork pool replaces exited processes on this timer (AsynPool)


def recycling(per_child: int | None):
    spec = demo(workers=(worker(version="tasks_lab", concurrency=CONCURRENCY, max_tasks_per_child=per_child),))
    return spec.replace(producer=DirectProducer("nap", celery_app="app_under_test.tasks_lab:app", args=(0.05,)))


@pytest.mark.parametrize(
    ("stack_spec", "per_child"), [(recycling(None), None), (recycling(1), 1)],
    indirect=["stack_spec"], ids=["no-recycling", "max-tasks-per-child-1"],
)  # fmt: skip
def test_max_tasks_per_child_1_under_a_backlog_loses_nothing(stack, producer, ledger, per_child, record_property):
    """A ``-c 10`` worker started with ``--max-tasks-per-child 1`` (a common cure for memory leaks) meets a
    backlog of 50 short tasks.

    What a user sees: every task runs exactly once, nothing lost, nothing run twice, each in a fresh pool
    process. The price is not the fork, as commonly thought, but the wait for it: the prefork pool replaces
    an exited process only on its 5 s maintenance timer, so each pool slot runs at most one task per 5 s
    (a ``-c 1`` worker: one task every 5 s). Without recycling the same backlog drains in about a second.
    """
    ids = [s.task_id for s in producer.send_many(BACKLOG)]
    ledger.wait_settled(ids, timeout=90)

    histories = ledger.event_histories()
    starts = [e for i in ids for e in histories[i].events if e.type == "task-started"]
    ends = [histories[i].terminal.timestamp for i in ids]
    elapsed = max(ends) - min(e.timestamp for e in starts)
    pids = {e.fields.get("pid") for e in starts}
    record_property("drain_s", round(elapsed, 2))
    print(
        f"max_tasks_per_child={per_child}: {BACKLOG} tasks of 0.05 s drained in {elapsed:.2f}s by {len(pids)} pool pids"
    )
    stack.verdict().assert_counts(succeeded=BACKLOG)
    if per_child == 1:
        assert len(pids) == BACKLOG, f"{len(pids)} pool processes ran the {BACKLOG} tasks"
        rounds = BACKLOG // CONCURRENCY
        assert elapsed >= (rounds - 1) * MAINTENANCE_TICK_S * 0.8, f"drained in {elapsed:.1f}s"
    else:
        assert len(pids) <= CONCURRENCY
