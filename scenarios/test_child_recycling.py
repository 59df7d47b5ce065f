"""Child recycling under load: ``max_tasks_per_child`` replaces each pool process after its N-th task."""

import pytest

from app_under_test.stack import PATIENT_READY_S, demo, worker
from harness.producers import DirectProducer

pytestmark = [pytest.mark.catalogue, pytest.mark.worker_fault]

BACKLOG, CONCURRENCY = 50, 10


def recycling(per_child: int | None):
    spec = demo(
        ready_timeout=PATIENT_READY_S,
        workers=(worker(version="tasks_lab", concurrency=CONCURRENCY, max_tasks_per_child=per_child),),
    )
    return spec.replace(producer=DirectProducer("nap", celery_app="app_under_test.tasks_lab:app", args=(0.05,)))


@pytest.mark.parametrize(
    ("stack_spec", "per_child"), [(recycling(None), None), (recycling(1), 1)],
    indirect=["stack_spec"], ids=["no-recycling", "max-tasks-per-child-1"],
)  # fmt: skip
def test_max_tasks_per_child_1_under_a_backlog_loses_nothing(stack, producer, ledger, per_child, record_property):
    """A ``-c 10`` worker started with ``--max-tasks-per-child 1`` (a common cure for memory leaks) meets a
    backlog of 50 short tasks.

    What a user sees: every task runs exactly once (each pool process's own record says so), nothing
    lost, each in a fresh pool process; the backlog takes several times longer to drain (the time is
    recorded as ``drain_s``: about 0.4 s without recycling, 3 to 8 s with it on this machine). Measured
    aside: a ``-c 1`` worker with recycling ran one task every 5 s, the prefork pool's maintenance timer.
    """
    ids = [s.task_id for s in producer.send_many(BACKLOG)]
    ledger.wait_settled(ids, timeout=90)

    histories = ledger.histories()
    starts = [e.timestamp for i in ids for e in histories[i].events if e.type == "task-started"]
    elapsed = max(histories[i].terminal.timestamp for i in ids) - min(starts)
    # Runs as the pool processes wrote them (the journal): with recycling, the main process's task-started
    # event can come a second after the run's own, which the ledger may count as a second run.
    runs = [sum(1 for e in histories[i].events if e.type == "task-started" and "journal" in e.witnesses) for i in ids]
    verdict = stack.verdict()
    record_property("drain_s", round(elapsed, 2))
    print(f"max_tasks_per_child={per_child}: {BACKLOG} tasks drained in {elapsed:.2f}s; ledger: {verdict.summary()}")
    assert runs == [1] * BACKLOG, f"runs per task (journal): {sorted(set(runs))}"
    assert verdict.count("succeeded") + verdict.count("duplicated") == BACKLOG, verdict.summary()
