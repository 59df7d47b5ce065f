"""A deploy that changes a task's signature: the workers run release 2, the web still release 1."""

import pytest


@pytest.fixture
def stack_spec(stack_spec):
    return stack_spec.with_worker_app("release2:app")


def test_workers_deployed_first_fail_every_fulfilment(stack, producer, ledger):
    """Release 2's fulfil requires a quantity; orders placed by the old web app all fail on the new
    workers with TypeError, while the web app answers 202 as usual."""
    producer.send_many(5)
    ledger.wait_settled(timeout=30)
    verdict = stack.verdict()
    verdict.assert_counts(failed=5)
    assert verdict.exception_types() == {"TypeError": 5}
