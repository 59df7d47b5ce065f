"""Future-proof signatures: keyword data, extra fields ignored, missing fields defaulted."""

import pytest

from app_under_test.stack import demo

pytestmark = pytest.mark.seed

CLICKS = 10

NEW_PRODUCER_OLD_WORKER = demo(producer="tolerant_v2", worker_version="tasks_tolerant")
OLD_PRODUCER_NEW_WORKER = demo(producer="tolerant_v1", worker_version="tasks_tolerant_v2")


@pytest.mark.parametrize(
    "stack_spec",
    [NEW_PRODUCER_OLD_WORKER, OLD_PRODUCER_NEW_WORKER],
    indirect=True,
    ids=["new-producer+old-worker", "old-producer+new-worker"],
)
def test_tolerant_signatures_survive_either_deploy_order(stack, producer, ledger):
    """Both sides speak keywords: ``say_hello(name=..., greeting=...)``, and the task takes
    ``name="world", greeting="hello", **newer_fields``.

    What a user sees: whichever side is deployed first, every click's task runs. An old worker
    ignores the field it does not know; a new worker defaults the field an old producer leaves out.
    This is the signature to write when producer and worker live on different release cycles.
    """
    producer.send_many(CLICKS)
    ledger.wait_settled(timeout=10)

    stack.verdict().assert_counts(succeeded=CLICKS)
