"""Retries with backoff: the same task id runs again, and ends exactly once."""

import pytest

from app_under_test.stack import demo

pytestmark = [pytest.mark.catalogue, pytest.mark.limits]

BACKOFF_S = 0.2


def flaky(failures: int, max_retries: int):
    env = {
        "HELLO_FAILURES": str(failures),
        "HELLO_MAX_RETRIES": str(max_retries),
        "HELLO_RETRY_BACKOFF": str(BACKOFF_S),
    }
    return demo(worker_version="tasks_retry", env=env)


@pytest.mark.parametrize("stack_spec", [flaky(failures=2, max_retries=3)], indirect=True, ids=["fails-twice"])
def test_a_task_that_fails_twice_then_succeeds_is_one_success(stack, producer, ledger):
    """say_hello's service is down for its first two tries; the task retries with backoff.

    What a user sees: the work is done, once. The ledger shows two ``task-retried`` events and three
    runs under one task id, each retry waiting longer (0.2 s, then 0.4 s), and a single success: a
    retry is not a duplicate.
    """
    task_id = producer.send().task_id
    ledger.wait_settled([task_id], timeout=10)

    stack.verdict().assert_counts(succeeded=1)
    history = ledger.history(task_id)
    assert (history.count("task-retried"), history.count("task-started")) == (2, 3), history.describe()
    waits = ledger.retry_waits(task_id)
    # From each run's start to the next: at least the countdown its retry() asked for.
    assert [w >= BACKOFF_S * 2**n for n, w in enumerate(waits)] == [True, True], f"waits: {waits}"


@pytest.mark.parametrize("stack_spec", [flaky(failures=5, max_retries=2)], indirect=True, ids=["always-fails"])
def test_a_task_that_exhausts_its_retries_ends_failed_not_lost(stack, producer, ledger):
    """The service stays down past ``max_retries=2``.

    What a user sees: after its third run the task fails for good with the service's error
    (``ConnectionError``). It is accounted as failed, never as lost, and it is not retried again.
    """
    task_id = producer.send().task_id
    ledger.wait_settled([task_id], timeout=10)

    verdict = stack.verdict()
    verdict.assert_counts(failed=1)
    assert verdict.exception_types() == {"ConnectionError": 1}
    assert ledger.history(task_id).count("task-retried") == 2
