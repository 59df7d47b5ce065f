"""Beware of signatures: Celery is RPC by name and arguments, and producer and worker deploy apart."""

import pytest

from app_under_test.stack import HELLO_QUEUE, demo
from harness.producers import assert_all_queued

pytestmark = pytest.mark.seed

CLICKS = 10
WATCH_S = 2.0  # the worker had the message and is idle: a redelivery would show within milliseconds


NEW_PRODUCER_OLD_WORKER = demo(producer="v2", worker_version="tasks")
OLD_PRODUCER_NEW_WORKER = demo(producer="v1", worker_version="tasks_v2")
OLD_PRODUCER_NEW_WORKER_WITH_DEFAULT = demo(producer="v1", worker_version="tasks_v2_default")


@pytest.mark.parametrize("stack_spec", [NEW_PRODUCER_OLD_WORKER], indirect=True, ids=["web-v2+worker-v1"])
def test_new_producer_old_worker_every_task_fails_and_the_work_is_gone(stack, producer, vhost, ledger):
    """The web app is deployed first: v2 sends ``say_hello(name, greeting)``; the worker still runs v1.

    What a user sees: nothing. Every click answers 202 — the producer cannot know the worker's
    signature. The worker raises ``TypeError`` for each task, acknowledges the message, and moves
    on: the queue is empty, no retry is scheduled, and the work is simply gone.
    """
    clicks = producer.send_many(CLICKS)
    assert_all_queued(clicks, within=1.0)  # the producer saw nothing wrong
    ledger.wait_settled(timeout=10)

    verdict = stack.verdict()
    verdict.assert_counts(failed=CLICKS)
    assert verdict.exception_types() == {"TypeError": CLICKS}
    vhost.wait_for_empty(HELLO_QUEUE, timeout=5)  # acknowledged: not waiting for a fixed worker
    ledger.assert_quiet(
        verdict.ids("failed"), for_=WATCH_S,
        why="a task that failed with TypeError is acknowledged and never delivered again: its work is lost for good",
    )  # fmt: skip


@pytest.mark.parametrize("stack_spec", [OLD_PRODUCER_NEW_WORKER], indirect=True, ids=["web-v1+worker-v2"])
def test_old_producer_new_worker_with_a_new_required_parameter_fails_every_task(stack, producer, ledger):
    """The worker is deployed first: v2's say_hello requires ``greeting``; the web app still sends v1.

    What a user sees: again nothing, and again every task fails with ``TypeError`` on the worker.
    """
    producer.send_many(CLICKS)
    ledger.wait_settled(timeout=10)

    verdict = stack.verdict()
    verdict.assert_counts(failed=CLICKS)
    assert verdict.exception_types() == {"TypeError": CLICKS}


@pytest.mark.parametrize(
    "stack_spec", [OLD_PRODUCER_NEW_WORKER_WITH_DEFAULT], indirect=True, ids=["web-v1+worker-v2-default"]
)
def test_old_producer_new_worker_with_a_default_for_the_new_parameter_succeeds(stack, producer, ledger):
    """The same deploy order, but v2 gave ``greeting`` a default: old messages still run."""
    producer.send_many(CLICKS)
    ledger.wait_settled(timeout=10)

    stack.verdict().assert_counts(succeeded=CLICKS)
