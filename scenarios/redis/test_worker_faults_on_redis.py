"""A worker stopped, killed or shut down on Redis: where its tasks wait, and when they come back."""

import pytest

from app_under_test.stack import HELLO_QUEUE, WORKER, demo
from harness.brokers.redis.settings import visibility
from harness.producers import assert_all_queued

pytestmark = [pytest.mark.catalogue, pytest.mark.worker_fault]

CLICKS = 20
TASKS = 2  # one running + one prefetched: -c 1 and worker_prefetch_multiplier 1 (see the last story for 4)
ONE_PREFETCHED = {"worker_prefetch_multiplier": 1}
LONG = demo(work_seconds=3)  # long enough to be killed mid-task
VISIBILITY_TIMEOUT_S = 4
FAST_RESTORE = visibility(VISIBILITY_TIMEOUT_S)
RESTORE_BOUND_S = VISIBILITY_TIMEOUT_S + 10  # the timeout, a sweep, a loaded machine


def test_worker_outage_on_redis_tasks_wait_in_the_list_and_all_run_once(stack, producer, vhost, ledger):
    """Ops stop the worker while users click, on Redis.

    What a user sees: as on RabbitMQ, every click answers at once and the tasks wait; here they wait in a Redis
    list named after the queue (``LLEN hello_queue``), and the restarted worker drains it, each task once.
    """
    stack.stop(WORKER)
    assert_all_queued(producer.send_many(CLICKS), within=1.0)
    vhost.wait_for_ready(HELLO_QUEUE, CLICKS, timeout=5)
    vhost.assert_ready_holds(HELLO_QUEUE, CLICKS, for_=2.0, why="no worker consumes it")

    stack.start(WORKER)
    vhost.wait_for_empty(HELLO_QUEUE, timeout=20)
    ledger.wait_settled(timeout=20)

    stack.verdict().assert_counts(succeeded=CLICKS)


@pytest.mark.celery_config(broker_transport_options=FAST_RESTORE, **ONE_PREFETCHED)
@pytest.mark.parametrize("stack_spec", [LONG], indirect=True, ids=["early-ack"])
def test_worker_killed_on_redis_prefetched_tasks_wait_for_the_visibility_timeout(stack, vhost, ledger):
    """The worker's machine dies (SIGKILL) while a task runs and another is prefetched, default acks.

    What a user sees: the running task is lost, as on RabbitMQ (acknowledged as it started). The prefetched one
    is not lost, but it does not come back when the connection drops, as it would on RabbitMQ: it sits in
    Redis's ``unacked`` hash, and the restarted worker idles beside it until it is older than
    ``visibility_timeout`` — one hour by default, here 4 s. Until then the verdict calls it ``unsettled``
    (held unacknowledged), never ``lost``.
    """
    ids, running = stack.busy_worker(TASKS)
    stack.kill(WORKER)
    stack.start(WORKER)

    held = stack.verdict(settle=0)
    prefetched = [i for i in ids if i != running]
    assert sorted(held.ids("unsettled")) == sorted(i for i in prefetched if ledger.history(i).terminal is None)

    ledger.wait_settled(prefetched, timeout=RESTORE_BOUND_S)
    verdict = stack.verdict()
    verdict.assert_counts(succeeded=TASKS - 1, lost=1)
    assert verdict.ids("lost") == [running]


@pytest.mark.celery_config(task_acks_late=True, broker_transport_options=FAST_RESTORE, **ONE_PREFETCHED)
@pytest.mark.parametrize("stack_spec", [LONG], indirect=True, ids=["acks-late"])
def test_worker_killed_on_redis_with_acks_late_reruns_the_task_after_the_visibility_timeout(stack, ledger):
    """The same death with ``task_acks_late``: the running task's message is still unacknowledged.

    What a user sees: nothing is lost, and the task that was running runs again from the start — after
    ``visibility_timeout``, not at the reconnect as on RabbitMQ. With the default of one hour, an acks-late task
    cut off by a crash runs again an hour later.
    """
    ids, running = stack.busy_worker(TASKS)
    stack.kill(WORKER)
    stack.start(WORKER)
    ledger.wait_settled(ids, timeout=RESTORE_BOUND_S + 3 * TASKS)

    verdict = stack.verdict()
    verdict.assert_counts(succeeded=TASKS - 1, duplicated=1)
    history = ledger.history(running)
    assert (history.count("task-started"), history.count("task-succeeded")) == (2, 1), history.describe()


@pytest.mark.parametrize("stack_spec", [LONG], indirect=True, ids=["default-visibility"])
def test_warm_shutdown_on_redis_puts_prefetched_tasks_back_at_once(stack, producer, vhost, ledger):
    """Ops stop the worker the normal way (SIGTERM: a warm shutdown) while it runs one task and holds three
    (Celery's default prefetch: 4 per pool process).

    What a user sees: the running task finishes; the three prefetched ones go back to the queue at once (kombu
    restores a channel's unacknowledged messages when it closes), with the default one-hour
    ``visibility_timeout``: a deploy that stops workers warm delays nothing.
    """
    ids, running = stack.busy_worker(4)
    stack.signal(WORKER, "TERM")  # the main process only, as `kill -TERM <pid>` (supervisorctl stop: the group)
    stack.wait_exited(WORKER)
    prefetched = [i for i in ids if i != running]
    vhost.wait_for_ready(HELLO_QUEUE, len(prefetched), timeout=5)
    assert vhost.depth(HELLO_QUEUE).unacked == 0, "nothing stays held once the worker is gone"

    stack.start(WORKER)
    ledger.wait_settled(ids, timeout=20)
    stack.verdict().assert_counts(succeeded=len(ids))


@pytest.mark.celery_config(broker_transport_options=FAST_RESTORE)
@pytest.mark.parametrize("stack_spec", [LONG], indirect=True, ids=["prefetch-4"])
def test_tasks_prefetched_longer_than_the_visibility_timeout_run_twice(stack, ledger):
    """No fault at all: a worker with one pool process takes four 3-second tasks at once (Celery's default
    prefetch), and ``visibility_timeout`` is shorter than the wait of the last ones (here 4 s).

    What a user sees: tasks run twice although nothing failed. The worker holds the later tasks unacknowledged
    while it works through the first ones; once they are older than ``visibility_timeout`` a sweep puts them
    back in the queue, and they are delivered again while the first copy still waits. It is the reason the
    Celery docs ask for a visibility timeout longer than the longest wait of any task, ETA and countdown
    included: with the one-hour default, a backlog an hour deep behind a prefetching worker does this too.
    """
    ids, _ = stack.busy_worker(4)

    stack.wait_every_copy_ran(ids, quiet=VISIBILITY_TIMEOUT_S + 2, timeout=60)

    verdict = stack.verdict()
    assert verdict.count("duplicated") >= 1, verdict.explain()
    assert verdict.count("duplicated") + verdict.count("succeeded") == len(ids), verdict.explain()
    assert all(ledger.history(i).count("task-received") >= 2 for i in verdict.ids("duplicated"))
