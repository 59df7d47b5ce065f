"""Quorum queues (Celery 5.5+: ``task_create_missing_queue_type="quorum"``): what changes for a Celery app
against classic queues, and between RabbitMQ 3.x and 4.x (run with ``--harness-rabbitmq-version 4``).

A scenario whose outcome depends on the broker's version asserts per version (``rabbitmq_version``)."""

import pytest

from app_under_test.stack import HELLO_QUEUE, WORKER, demo
from harness.waiting import eventually, never

pytestmark = [pytest.mark.catalogue, pytest.mark.quorum]

# Celery's quorum-queue settings: its queues declared as quorum queues, and publisher confirms (which
# Celery's documentation says quorum queues need).
QUORUM = {"task_create_missing_queue_type": "quorum", "broker_transport_options": {"confirm_publish": True}}
ACKS_LATE = {"task_acks_late": True, "task_reject_on_worker_lost": True}
# How long the worker waits for a killed pool process's result before it declares it lost (default 10 s).
QUICK_LOSS = {"worker_lost_wait": 0.2}
# RabbitMQ 4.0's default delivery-limit for quorum queues (3.x: none): a message returned 20 times (rejected,
# or its consumer's channel closed) is dropped, so it is delivered 21 times (measured on 4.0.5, x-delivery-count 20).
DELIVERY_LIMIT_4 = 20
POISON = demo(worker_version="tasks_quorum", env={"HELLO_CRASH_POOL": "1"})


def deliveries(ledger, task_id: str) -> int:
    return ledger.history(task_id).count("task-received")


@pytest.mark.worker_fault
@pytest.mark.celery_config(**QUORUM, **ACKS_LATE, **QUICK_LOSS)
@pytest.mark.parametrize("stack_spec", [POISON], indirect=True, ids=["poison"])
def test_poison_task_on_a_quorum_queue_is_dropped_after_the_delivery_limit_on_rabbitmq_4(
    stack, producer, vhost, ledger, rabbitmq_version
):
    """A task kills the process running it every time (out of memory, a crashing C extension), with
    ``task_acks_late`` and ``task_reject_on_worker_lost``: the worker rejects it back to the queue each time.

    What a user sees on RabbitMQ 4: after its 21st delivery (20 returns) the quorum queue drops the message (its default
    ``delivery-limit``), nothing is logged by Celery, and the task is gone: lost. On 3.x there is no default
    limit: the task is delivered again and again, a crash loop that never ends (the worker restarts a pool
    process each time), and it is still in the queue when the worker stops.
    """
    task_id = producer.send().task_id

    if rabbitmq_version >= (4,):
        eventually(lambda: deliveries(ledger, task_id), until=lambda n: n > DELIVERY_LIMIT_4, timeout=90,
                   what="the poison task's 21st delivery", progress=str)  # fmt: skip
        vhost.wait_for_empty(HELLO_QUEUE, timeout=10)
        watched = never(lambda: deliveries(ledger, task_id), until=lambda n: n > DELIVERY_LIMIT_4 + 1, for_=3,
                        what="a delivery past the limit")  # fmt: skip
        stack.stop(WORKER)
        stack.verdict().assert_counts(lost=1)
        assert deliveries(ledger, task_id) == DELIVERY_LIMIT_4 + 1, f"the first delivery and 20 more ({watched} looks)"
    else:
        eventually(lambda: deliveries(ledger, task_id), until=lambda n: n > DELIVERY_LIMIT_4 + 5, timeout=90,
                   what="the poison task delivered past 4.0's limit", progress=str)  # fmt: skip
        stack.stop(WORKER)
        vhost.wait_for_ready(HELLO_QUEUE, 1, timeout=10)
        stack.verdict().assert_counts(queued=1)
