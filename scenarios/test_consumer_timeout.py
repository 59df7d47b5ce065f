"""A task that runs longer than the broker's consumer timeout, with late acknowledgement."""

import pytest

from app_under_test.stack import HELLO_QUEUE, WORKER, demo
from harness.waiting import WaitTimeout

pytestmark = [pytest.mark.catalogue, pytest.mark.limits, pytest.mark.broker_fault]

CONSUMER_TIMEOUT_MS = 2000
EXIT_GRACE_S = 20  # the running 6 s task finishes first, then the worker exits: seconds, when it does


@pytest.fixture
def short_consumer_timeout(owned_broker):
    """The broker closes a channel whose delivery stays unacknowledged for 2 s (checked every 0.5 s),
    instead of RabbitMQ's 30 minutes."""
    with owned_broker.rabbit_settings(consumer_timeout=CONSUMER_TIMEOUT_MS, channel_tick_interval=500):
        yield CONSUMER_TIMEOUT_MS / 1000


def worker_dies_or_hangs(stack, vhost) -> bool:
    """Wait until the broker has closed the worker's channel (no consumer left on the queue), then for the
    worker to exit. Whether it did is returned: about one run in twenty (Celery 5.7.0, py-amqp 5.4.2) its
    shutdown hangs for good, closing a channel and waiting for a close-ok that never comes, a live process
    that consumes nothing. It is then killed, as a supervisor's stop timeout would."""
    vhost.wait_for_consumers(HELLO_QUEUE, 0, timeout=30)
    try:
        stack.wait_exited(WORKER, timeout=EXIT_GRACE_S)
        return True
    except WaitTimeout:
        stack.kill(WORKER)
        stack.wait_exited(WORKER, timeout=10)
        return False


@pytest.mark.celery_config(task_acks_late=True)
@pytest.mark.parametrize("stack_spec", [demo(work_seconds=6)], indirect=True, ids=["6s-task"])
def test_a_task_longer_than_the_consumer_timeout_crashes_the_worker_and_runs_again(
    short_consumer_timeout, stack, producer, vhost, ledger
):
    """A 6 s task, ``task_acks_late`` on, and a broker ``consumer_timeout`` of 2 s.

    What a user sees: the worker dies. After 2 s without an acknowledgement the broker closes the
    worker's channel (PRECONDITION_FAILED), which Celery treats as unrecoverable: the worker shuts
    down, letting the running task finish first. The work was done, but the acknowledgement has
    nowhere to go, so the message is back in the queue. Restart the worker (as an autorestarting
    supervisor would) and the task runs again, and the worker dies again: a crash loop. A task must
    finish well within the consumer timeout, or use early acknowledgement. (About one time in twenty the
    worker does not even exit: its shutdown hangs, and it lives on consuming nothing.)
    """
    task_id = producer.send().task_id
    worker_dies_or_hangs(stack, vhost)
    assert ledger.history(task_id).count("task-succeeded") == 1, "the first run finished its work"
    vhost.wait_for_ready(HELLO_QUEUE, 1, timeout=5)  # yet the message is back: never acknowledged

    stack.start(WORKER)  # what autorestart=true would do
    worker_dies_or_hangs(stack, vhost)
    assert ledger.history(task_id).count("task-started") == 2, "the task ran again, and the worker died again"
    vhost.wait_for_ready(HELLO_QUEUE, 1, timeout=5)
    stack.verdict().assert_counts(duplicated=1)
