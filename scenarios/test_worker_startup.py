"""A worker starts while RabbitMQ is down (a reboot where the worker's unit comes up first)."""

import pytest

from app_under_test.stack import HELLO_QUEUE, PATIENT_READY_S, WORKER, demo
from harness.producers import assert_all_queued
from harness.waiting import never

pytestmark = [pytest.mark.catalogue, pytest.mark.broker_fault]

BACKLOG = 5
DOWN_S = 5.0


def retry_on_startup(on: bool):
    marks = pytest.mark.celery_config(broker_connection_retry_on_startup=on)
    return pytest.param(on, marks=marks, id=f"retry-on-startup-{'on' if on else 'off'}")


@pytest.mark.parametrize("stack_spec", [demo(ready_timeout=PATIENT_READY_S)], indirect=True, ids=["demo"])
@pytest.mark.parametrize("retry", [retry_on_startup(True), retry_on_startup(False)])
def test_worker_started_while_the_broker_is_down(owned_broker, stack, producer, ledger, vhost, retry):
    """The worker is started while RabbitMQ is down, with a backlog waiting; the broker comes back 5 s later.

    What a user sees: with ``broker_connection_retry_on_startup = True`` the worker keeps retrying (Celery's
    backoff), connects once the broker is back and drains the backlog: every task runs once. With it
    ``False`` the worker gives up at its first refused connection and exits at once, with exit status 0
    (a supervisor configured to restart only on failure will not restart it); the backlog stays queued
    until someone starts it again. (Celery 5.3 added the setting; left unset it falls back to
    ``broker_connection_retry`` with a deprecation warning.)
    """
    stack.stop(WORKER)
    sends = producer.send_many(BACKLOG)
    assert_all_queued(sends, within=5)
    vhost.wait_for_ready(HELLO_QUEUE, BACKLOG, timeout=10)

    with owned_broker.stopped(how="app"):
        since = stack.start(WORKER, wait=False)
        if retry:
            never(lambda: stack.state(WORKER), until=lambda s: s != "RUNNING", for_=DOWN_S, what="the worker exited")
        else:
            stack.wait_exited(WORKER, timeout=30)

    if retry:
        stack.wait_ready([WORKER], since)
        ledger.wait_settled([s.task_id for s in sends], timeout=30)
        vhost.wait_for_ready(HELLO_QUEUE, 0, timeout=10)  # the harness's own reading reconnects too
        stack.verdict().assert_counts(succeeded=BACKLOG)
    else:
        assert stack.supervisor.info(WORKER)["exitstatus"] == 0
        vhost.wait_for_ready(HELLO_QUEUE, BACKLOG, timeout=10)
        stack.verdict().assert_counts(queued=BACKLOG)
