"""celery beat under faults: periodic runs sent twice, skipped, caught up, or run long after they were due."""

import pytest

from app_under_test.stack import BEAT, periodic

pytestmark = [pytest.mark.catalogue, pytest.mark.beat]


@pytest.mark.parametrize("stack_spec", [periodic(every=1.0)], indirect=True, ids=["every-1s"])
def test_smoke(stack, ledger):
    ledger.wait_beat_sends(3, timeout=10)
    stack.ledger.wait_settled(list(ledger.beat_sends()), timeout=10)
    verdict = stack.verdict()
    print(verdict.periodic)
    print(verdict.periodic_tasks)
    print(verdict)
    assert 0
