"""The harness on a Django project it was not written for: three failures, every order counted."""

import pytest

WORKER = "worker"


def test_a_stopped_worker_delays_fulfilment_but_loses_no_order(stack, producer, vhost, ledger):
    """The worker is down during a sale: orders are still accepted at once, fulfilments wait in the
    queue, and all run once the worker is back."""
    stack.stop(WORKER)
    producer.send_many(10)
    vhost.wait_for_ready("celery", 10, timeout=5)
    stack.start(WORKER)
    ledger.wait_settled(timeout=30)
    stack.verdict().assert_counts(succeeded=10)


def test_a_killed_worker_loses_the_fulfilment_it_was_running(stack, ledger):
    """The worker's container is killed mid-fulfilment: that order is never shipped (early ack),
    the prefetched ones are requeued and shipped after the restart."""
    ids, running = stack.busy_worker(4)
    stack.kill(WORKER)
    stack.start(WORKER)
    ledger.wait_settled([i for i in ids if i != running], timeout=30)
    stack.stop(WORKER)
    stack.verdict().assert_counts(succeeded=3, lost=1)


@pytest.mark.celery_config(task_acks_late=True, task_reject_on_worker_lost=True)
def test_with_late_acks_a_killed_worker_ships_that_order_twice(stack, ledger):
    """With late acknowledgement the cut-off fulfilment runs again from the start: no order lost, one
    shipped twice unless the task is idempotent."""
    ids, _ = stack.busy_worker(4)
    stack.kill(WORKER)
    stack.start(WORKER)
    ledger.wait_settled(ids, timeout=30)
    stack.verdict().assert_counts(succeeded=3, duplicated=1)
