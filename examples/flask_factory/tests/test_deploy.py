"""A deploy that changes a task's signature: the workers run release 2, the web app still release 1."""

import pytest


@pytest.fixture
def stack_spec(stack_spec):
    return stack_spec.with_worker_app("wsgi_v2:celery_app")


def test_workers_deployed_first_fail_every_signup_email(stack, producer, ledger):
    """Release 2 requires a language; the workers are deployed first and the web still sends v1:
    every signup redirects as usual, and every email fails with TypeError on the worker."""
    producer.send_many(5)
    ledger.wait_settled(timeout=30)
    verdict = stack.verdict()
    verdict.assert_counts(failed=5)
    assert verdict.exception_types() == {"TypeError": 5}
