"""The audit: the worker is stopped while a task runs, in the three ways operators stop one."""

import pytest

pytestmark = [pytest.mark.worker_fault]


@pytest.mark.audit("warm_shutdown")
def test_warm_shutdown_mid_task(stack, audit):
    """``kill -TERM <worker pid>``: Celery's warm shutdown, then a restart.

    What the table tells: the running task should finish before the worker exits and the prefetched
    ones run once after the restart.
    """
    ids, _ = audit.busy()
    audit.shut_down("TERM")
    stack.start(audit.worker)
    audit.settle(ids)
    audit.finish(ids)
    audit.record(stack.verdict(), warm_shutdown=ids)


@pytest.mark.audit("supervisorctl_stop")
def test_supervisorctl_stop_mid_task(stack, audit):
    """``supervisorctl stop`` with ``stopasgroup=true``, as most deployments stop a worker: TERM to the
    whole process group, pool processes included, then a start.

    What the table tells: whether the running task, whose pool process dies on TERM at once, fails,
    runs again or is lost.
    """
    ids, _ = audit.busy()
    stack.stop(audit.worker)
    stack.start(audit.worker)
    audit.settle(ids)
    audit.finish(ids)
    audit.record(stack.verdict(), supervisorctl_stop=ids)


@pytest.mark.audit("cold_shutdown")
def test_cold_shutdown_mid_task(stack, audit):
    """``kill -QUIT <worker pid>``: Celery's cold shutdown, then a restart.

    What the table tells: whether the cancelled task is lost (acknowledged when it started) or
    requeued, and that the prefetched ones run once.
    """
    ids, _ = audit.busy()
    audit.shut_down("QUIT")
    stack.start(audit.worker)
    audit.settle(ids)
    audit.finish(ids)  # the worker stopped if a task did not end: what is neither done nor queued is lost
    audit.record(stack.verdict(), cold_shutdown=ids)
