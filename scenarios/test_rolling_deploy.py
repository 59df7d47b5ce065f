"""A rolling deploy: for a while, old and new workers share the queue."""

import pytest

from app_under_test.stack import HELLO_QUEUE, fleet

pytestmark = pytest.mark.seed

CLICKS = 20
V1, V2 = "worker_v1@harness", "worker_v2@harness"


STRICT = fleet("v2", worker_v1="tasks", worker_v2="tasks_v2")
TOLERANT = fleet("tolerant_v2", worker_v1="tasks_tolerant", worker_v2="tasks_tolerant_v2")


@pytest.mark.parametrize("stack_spec", [STRICT], indirect=True, ids=["strict"])
def test_mixed_fleet_with_strict_signatures_the_old_worker_fails_its_share(stack, producer, vhost, ledger):
    """Mid-deploy, v2 web sends ``say_hello(name, greeting)``; one v1 and one v2 worker consume hello_queue.

    What a user sees: about half the work silently fails. RabbitMQ spreads the tasks over both
    workers; each one the v1 worker gets fails with TypeError, each one the v2 worker gets succeeds.
    """
    vhost.wait_for_consumers(HELLO_QUEUE, 2)
    producer.send_many(CLICKS)
    ledger.wait_settled(timeout=15)

    verdict = stack.verdict()
    assert verdict.count("succeeded") + verdict.count("failed") == verdict.total() == CLICKS
    assert verdict.by_worker("failed") == {V1: verdict.count("failed")}, "only the v1 worker fails"
    assert verdict.by_worker("succeeded") == {V2: verdict.count("succeeded")}, "only the v2 worker succeeds"
    assert verdict.count("failed") > 0 and verdict.count("succeeded") > 0, "both workers took a share"
    assert set(verdict.exception_types()) == {"TypeError"}


@pytest.mark.parametrize("stack_spec", [TOLERANT], indirect=True, ids=["tolerant"])
def test_mixed_fleet_with_tolerant_signatures_every_task_succeeds(stack, producer, vhost, ledger):
    """The same mixed fleet, with the future-proof signature on every side: nothing fails."""
    vhost.wait_for_consumers(HELLO_QUEUE, 2)
    producer.send_many(CLICKS)
    ledger.wait_settled(timeout=15)

    verdict = stack.verdict()
    verdict.assert_counts(succeeded=CLICKS)
    assert set(verdict.by_worker("succeeded")) == {V1, V2}, "both workers took a share"


@pytest.mark.parametrize("stack_spec", [STRICT], indirect=True, ids=["strict"])
def test_once_the_old_worker_is_stopped_every_task_succeeds(stack, producer, vhost, ledger):
    """The deploy finishes: the v1 worker is stopped, and from then on every task succeeds on v2."""
    stack.stop("worker_v1")
    vhost.wait_for_consumers(HELLO_QUEUE, 1)
    producer.send_many(CLICKS)
    ledger.wait_settled(timeout=15)

    verdict = stack.verdict()
    verdict.assert_counts(succeeded=CLICKS)
    assert verdict.by_worker("succeeded") == {V2: CLICKS}
