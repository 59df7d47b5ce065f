"""The audit: a worker dies mid-task, as a whole or one pool process at a time."""

import pytest

pytestmark = [pytest.mark.worker_fault]


@pytest.mark.audit("worker_killed")
def test_worker_killed_mid_task(stack, audit):
    """SIGKILL to every process of the worker while a task runs (its machine or container died),
    then a restart.

    What the table tells: whether the running task is lost (it was acknowledged when it started) or
    runs again (late acknowledgement), and that the tasks the worker had prefetched run once.
    """
    ids, _ = audit.busy()
    stack.kill(audit.worker)
    stack.start(audit.worker)
    audit.settle(ids)
    audit.finish(ids)  # the worker stopped if a task did not end: what is neither done nor queued is lost
    audit.record(stack.verdict(), worker_killed=ids)


@pytest.mark.audit("pool_process_killed")
def test_pool_process_killed_mid_task(stack, audit):
    """The kernel's OOM killer takes the pool process running a task; the worker itself survives.

    What the table tells: whether the task fails (``WorkerLostError``), is requeued and runs again
    (``task_reject_on_worker_lost``), or is retried (``task_retry_on_worker_lost``).
    """
    if audit.pool != "prefork":
        pytest.skip(f"the worker runs the {audit.pool} pool: no pool process of its own to kill")
    ids, _ = audit.busy()
    stack.kill_pool_process(audit.worker)
    audit.settle(ids)
    audit.finish(ids)
    audit.record(stack.verdict(), pool_process_killed=ids)
