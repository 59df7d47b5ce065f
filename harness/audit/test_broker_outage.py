"""The audit: RabbitMQ restarts under load, and the app keeps sending while it is down."""

import pytest

from harness.waiting import WaitTimeout

BACKLOG = 20  # as the catalogue's broker-restart scenarios
SENDS = 5  # while the broker is down, and again after it is back (as the catalogue's)
IN_FLIGHT_S = 3.0  # the running task outlasts the broker's stop, as in the catalogue
SEND_BOUND_S = 20.0  # a send still blocked after this long is reported as blocked

pytestmark = [pytest.mark.broker_fault]


@pytest.mark.audit("broker_restart_in_flight", "broker_restart_backlog", "publish_while_broker_down")
def test_broker_restart_under_load(owned_broker, stack, audit, ledger):
    """RabbitMQ stops and starts again (an upgrade, a crash, a node replaced) while the worker runs a
    task and a backlog waits behind it; the app keeps sending while it is down.

    What the table tells, in three rows: whether the backlog survived (persistent messages in a
    durable queue do), whether the running task ran once or twice (with late acknowledgement its
    acknowledgement has nowhere to go while the broker is away), and what the app's sends did while
    the broker was down: fail and say so (unsent), block, or vanish.
    """
    in_flight = audit.send(max(audit.work_s, IN_FLIGHT_S))
    ledger.wait_running([in_flight])
    backlog = [s.task_id for s in audit.send_many(BACKLOG)]

    with owned_broker.stopped():
        sending = audit.sends_in_background(SENDS)
        if not sending.wait(SEND_BOUND_S):
            audit.note("publish_while_broker_down", f"sends were still blocked {SEND_BOUND_S:.0f}s after they began")
    refused = sending.result(timeout=60)
    slowest = max(s.seconds for s in refused)
    audit.note("publish_while_broker_down", f"while the broker was down the slowest send returned in {slowest:.1f}s")

    try:
        stack.wait_worker_reconnected(audit.worker)
    except WaitTimeout:
        audit.note("broker_restart_backlog", "the worker did not reconnect by itself within 60s; restarted")
        stack.restart(audit.worker)
    accepted = [s.task_id for s in audit.send_many(SENDS)]
    sent_while_down = [s.task_id for s in refused]
    audit.settle([in_flight, *backlog, *sent_while_down, *accepted], timeout=60)
    stack.stop(audit.worker)
    audit.record(
        stack.verdict(), broker_restart_in_flight=[in_flight], broker_restart_backlog=backlog,
        publish_while_broker_down=sent_while_down + accepted,
    )  # fmt: skip
