"""The harness on a worker-only service: three failures, every charge counted."""

import pytest

WORKER = "worker"


def test_a_stopped_worker_delays_charges_but_loses_none(stack, producer, vhost, ledger):
    """The billing worker is down: charges wait in the invoices queue (routed there by the app's own
    configuration) and all run once it is back, each sending its receipt (a task the charge enqueues)."""
    stack.stop(WORKER)
    producer.send_many(10)
    vhost.wait_for_ready("invoices", 10, timeout=5)
    stack.start(WORKER)
    ledger.wait_settled(timeout=30, children=True)
    verdict = stack.verdict()
    verdict.assert_counts(succeeded=10)
    verdict.children.assert_counts(succeeded=10)


def test_a_killed_worker_loses_the_charge_it_was_making(stack, ledger):
    """The worker is OOM-killed as a whole mid-charge: with early acknowledgement that charge is lost
    (the customer is never billed); the prefetched ones are requeued."""
    ids, running = stack.busy_worker(4)
    stack.kill(WORKER)
    stack.start(WORKER)
    ledger.wait_settled([i for i in ids if i != running], timeout=30)
    stack.stop(WORKER)
    stack.verdict().assert_counts(succeeded=3, lost=1)


@pytest.mark.celery_config(task_acks_late=True, task_reject_on_worker_lost=True)
def test_with_late_acks_a_killed_worker_charges_that_customer_twice(stack, ledger):
    """With late acknowledgement nothing is lost, but the charge that was cut off runs again: without an
    idempotency key at the gateway, that customer pays twice."""
    ids, _ = stack.busy_worker(4)
    stack.kill(WORKER)
    stack.start(WORKER)
    ledger.wait_settled(ids, timeout=30)
    stack.verdict().assert_counts(succeeded=3, duplicated=1)
