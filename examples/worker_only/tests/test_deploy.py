"""A producer on the next release, the billing worker still on release 1."""

import pytest

from harness.producers import DirectProducer

# Release 2 of the calling service adds a currency; it knows the task by name only.
CHARGE_V2 = DirectProducer("billing.charge", args=("customer-{n}", 1999, "EUR"), via="send_task")


@pytest.fixture
def stack_spec(stack_spec):
    return stack_spec.replace(producer=CHARGE_V2)


def test_a_new_producer_fails_every_charge_on_the_old_worker(stack, producer, ledger):
    """The caller is deployed first: every charge it sends has one argument too many for the old
    worker, which fails it with TypeError and acknowledges it: the charges are gone."""
    producer.send_many(5)
    ledger.wait_settled(timeout=30)
    verdict = stack.verdict()
    verdict.assert_counts(failed=5)
    assert verdict.exception_types() == {"TypeError": 5}
