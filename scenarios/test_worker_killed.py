"""A worker dies mid-task: what becomes of the task it was running, and of those it had prefetched."""

import pytest

from app_under_test.stack import WORKER, demo

pytestmark = [pytest.mark.catalogue, pytest.mark.worker_fault]

TASKS = 4  # one running + three prefetched: -c 1 with Celery's default prefetch multiplier of 4
LONG = demo(work_seconds=3)  # long enough to be killed mid-task
ACKS_LATE = pytest.mark.celery_config(task_acks_late=True, task_reject_on_worker_lost=True)


@pytest.mark.parametrize("stack_spec", [LONG], indirect=True, ids=["early-ack"])
def test_worker_killed_with_early_ack_loses_the_running_task(stack, ledger):
    """The worker's machine dies (SIGKILL to every process of the worker) while a task runs.

    What a user sees: that task's work never happens and nothing reports it. By default Celery
    acknowledges a task just before running it, so the broker has already forgotten it. The three
    tasks the worker had prefetched were not acknowledged: the broker requeues them when the
    connection drops and the restarted worker runs them. Setting that changes it: ``task_acks_late``.
    """
    ids, running = stack.busy_worker(TASKS)
    stack.kill(WORKER)
    stack.start(WORKER)
    ledger.wait_settled([i for i in ids if i != running], timeout=20)
    stack.stop(WORKER)  # no consumer left: a task neither done nor queued is lost for good

    verdict = stack.verdict()
    verdict.assert_counts(succeeded=TASKS - 1, lost=1)
    assert verdict.ids("lost") == [running]
    redelivered = [i for i in ids if i != running and ledger.history(i).count("task-received") == 2]
    assert len(redelivered) == TASKS - 1, "each prefetched task was delivered again to the restarted worker"


@ACKS_LATE
@pytest.mark.parametrize("stack_spec", [LONG], indirect=True, ids=["acks-late"])
def test_worker_killed_with_acks_late_reruns_the_running_task(stack, ledger):
    """The same death, with ``task_acks_late`` and ``task_reject_on_worker_lost`` on.

    What a user sees: no task is lost, but the one that was running runs twice: from the start
    again on the restarted worker, after its first run was cut off part-way. Late acknowledgement
    trades loss for repetition, so such tasks must be safe to run again (idempotent).
    """
    ids, running = stack.busy_worker(TASKS)
    stack.kill(WORKER)
    stack.start(WORKER)
    ledger.wait_settled(ids, timeout=20)

    verdict = stack.verdict()
    verdict.assert_counts(succeeded=TASKS - 1, duplicated=1)
    history = ledger.history(running)
    assert (history.count("task-started"), history.count("task-succeeded")) == (2, 1), history.describe()


@pytest.mark.parametrize("stack_spec", [LONG], indirect=True, ids=["early-ack"])
def test_pool_process_killed_with_early_ack_fails_the_running_task(stack, ledger):
    """The kernel's OOM killer takes the pool process running a task; the worker itself survives.

    What a user sees: the task fails with ``WorkerLostError`` and is not retried; the worker
    starts a new pool process and goes on with the others.
    """
    ids, running = stack.busy_worker(TASKS)
    stack.kill_pool_process(WORKER)
    ledger.wait_settled(ids, timeout=20)

    verdict = stack.verdict()
    verdict.assert_counts(succeeded=TASKS - 1, failed=1)
    assert verdict.ids("failed") == [running]
    assert verdict.exception_types() == {"WorkerLostError": 1}


@ACKS_LATE
@pytest.mark.parametrize("stack_spec", [LONG], indirect=True, ids=["acks-late"])
def test_pool_process_killed_with_reject_on_worker_lost_reruns_the_task(stack, ledger):
    """The same OOM kill, with ``task_acks_late`` and ``task_reject_on_worker_lost``.

    What a user sees: the worker rejects the lost task back to the queue instead of failing it,
    and it runs again to completion: it ran twice, it is not lost.
    """
    ids, running = stack.busy_worker(TASKS)
    stack.kill_pool_process(WORKER)
    ledger.wait_settled(ids, timeout=20)

    verdict = stack.verdict()
    verdict.assert_counts(succeeded=TASKS - 1, duplicated=1)
    history = ledger.history(running)
    assert (history.count("task-started"), history.count("task-succeeded")) == (2, 1), history.describe()
