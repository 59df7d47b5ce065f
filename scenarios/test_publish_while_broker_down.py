"""Users click while the broker is down: the app must say so quickly, and recover by itself."""

import pytest

from app_under_test.stack import WORKER
from harness.producers import assert_all_queued

pytestmark = [pytest.mark.catalogue, pytest.mark.broker_fault]

CLICKS = 5
ERROR_BOUND_S = 5.0  # the app's own bound: a 2 s connect timeout and 2 quick publish retries


def test_clicks_while_the_broker_is_down_fail_fast_and_clearly_then_work_again(owned_broker, stack, producer, ledger):
    """RabbitMQ is down (stopped for maintenance, or crashed) while users keep clicking.

    What a user sees: each click answers within a few seconds with an error (503) that says the
    task could not be queued, instead of a page that hangs. No task is silently lost: the app knew
    and said so, and none of those tasks ever runs. When the broker is back, the next clicks work
    again without restarting anything: the app's and the worker's connections recover by themselves.
    (The RabbitMQ application is stopped inside its node, ``rabbitmqctl stop_app``: the AMQP port refuses
    connections, as with the node down.)
    """
    # Inject the failure: the broker is down while users click.
    with owned_broker.stopped(how="app"):
        refused = producer.send_many(CLICKS)

    # Observe: each click failed fast and said why.
    assert all(c.status == 503 and not c.queued for c in refused), f"clicks while the broker was down: {refused}"
    slowest = max(c.seconds for c in refused)
    assert slowest < ERROR_BOUND_S, f"a click took {slowest:.1f}s to fail; the app must answer within {ERROR_BOUND_S}s"

    # Recover: the broker is back; new clicks are queued and run.
    stack.wait_worker_reconnected(WORKER)
    accepted = producer.send_many(CLICKS)
    assert_all_queued(accepted, within=ERROR_BOUND_S)
    ledger.wait_settled([c.task_id for c in accepted], timeout=20)

    stack.verdict().assert_counts(succeeded=CLICKS, unsent=CLICKS)
