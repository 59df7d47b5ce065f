"""Stopping a worker mid-task: a warm shutdown, supervisord's group stop, and a cold shutdown."""

import pytest

from app_under_test.stack import HELLO_QUEUE, WORKER, demo

pytestmark = [pytest.mark.catalogue, pytest.mark.worker_fault]

TASKS = 4  # one running + three prefetched (-c 1, prefetch multiplier 4)
LONG_WORK = demo(work_seconds=2)


def restart_and_settle(stack, ledger, ids: list[str]) -> None:
    stack.start(WORKER)
    ledger.wait_settled(ids, timeout=20)


@pytest.mark.parametrize("stack_spec", [LONG_WORK], indirect=True, ids=["2s-tasks"])
def test_warm_shutdown_finishes_the_running_task_and_requeues_the_rest(stack, vhost, ledger):
    """``kill -TERM <worker pid>``: Celery's warm shutdown.

    What a user sees: the running task completes before the worker exits; the prefetched tasks go
    back to the queue and run once a worker is back. Nothing is lost and nothing runs twice.
    """
    ids, running = stack.busy_worker(TASKS)
    stack.signal(WORKER, "TERM")
    stack.wait_exited(WORKER)

    assert ledger.history(running).terminal.type == "task-succeeded", "the running task finished before exit"
    vhost.wait_for_ready(HELLO_QUEUE, TASKS - 1, timeout=5)  # the prefetched ones are back in the queue
    restart_and_settle(stack, ledger, ids)
    stack.verdict().assert_counts(succeeded=TASKS)


@pytest.mark.parametrize("stack_spec", [LONG_WORK], indirect=True, ids=["2s-tasks"])
def test_supervisorctl_stop_with_stopasgroup_kills_the_running_task(stack, vhost, ledger):
    """``supervisorctl stop worker_hello`` with ``stopasgroup=true`` (as this harness, and many
    deployments, configure it so that no pool process is orphaned).

    What a user sees: the running task fails with ``WorkerLostError``. supervisord sends TERM to
    the whole process group, pool processes included, and a pool process dies on TERM at once, in
    the middle of its task. The worker then shuts down warmly and requeues what it had prefetched.
    To let the running task finish, signal only the worker's main process (see the warm shutdown).
    """
    ids, running = stack.busy_worker(TASKS)
    stack.stop(WORKER)

    vhost.wait_for_ready(HELLO_QUEUE, TASKS - 1, timeout=5)
    restart_and_settle(stack, ledger, ids)
    verdict = stack.verdict()
    verdict.assert_counts(succeeded=TASKS - 1, failed=1)
    assert verdict.ids("failed") == [running]
    assert verdict.exception_types() == {"WorkerLostError": 1}


@pytest.mark.parametrize("stack_spec", [LONG_WORK], indirect=True, ids=["2s-tasks"])
def test_cold_shutdown_cancels_the_running_task_and_it_is_lost(stack, vhost, ledger):
    """``kill -QUIT <worker pid>``: Celery's cold shutdown.

    What a user sees: the worker exits at once. The running task is terminated and reported
    cancelled (``task-cancelled``); it had been acknowledged when it started, so nothing brings it
    back: it is lost. The prefetched tasks are requeued and run after the restart. With
    ``task_acks_late`` the running task's message would be requeued instead.
    """
    ids, running = stack.busy_worker(TASKS)
    stack.signal(WORKER, "QUIT")
    stack.wait_exited(WORKER)

    vhost.wait_for_ready(HELLO_QUEUE, TASKS - 1, timeout=5)
    restart_and_settle(stack, ledger, [i for i in ids if i != running])
    stack.stop(WORKER)  # no consumer left: what is neither done nor queued is lost
    verdict = stack.verdict()
    verdict.assert_counts(succeeded=TASKS - 1, lost=1)
    assert verdict.ids("lost") == [running]
    assert ledger.history(running).count("task-cancelled") == 1
