"""The audit: RabbitMQ restarts under load, and the app keeps sending while it is down."""

import time

import pytest

from harness.faults import BROKER_UP
from harness.waiting import WaitTimeout

BACKLOG = 20  # as the catalogue's broker-restart scenarios
SENDS = 5  # while the broker is down, and again after it is back (as the catalogue's)
HOLD_CAP_S = 60.0  # the running probe ends once the broker is down (released then), or after this long
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
    release = audit.release_file("in-flight")
    in_flight = audit.send(audit.capped(HOLD_CAP_S), hold=release)  # a real task runs its own length
    ledger.wait_running([in_flight])
    backlog = [s.task_id for s in audit.send_many(BACKLOG)]

    with owned_broker.stopped():
        down_at = time.time()
        release.touch()  # the running task ends now, while the broker is away
        sending = audit.sends_in_background(SENDS)
        if not sending.wait(SEND_BOUND_S):
            audit.note("publish_while_broker_down", f"sends were still blocked {SEND_BOUND_S:.0f}s after they began")
    refused = sending.result(timeout=60)
    audit.note("publish_while_broker_down", f"while the broker was down the slowest send returned in "
               f"{max(s.seconds for s in refused):.1f}s")  # fmt: skip

    try:
        stack.wait_worker_reconnected(audit.worker)
        back = time.time() - stack.timeline.last(BROKER_UP)
        audit.note("broker_restart_backlog", f"the worker reconnected by itself {back:.1f}s after the broker was back")
    except WaitTimeout:
        audit.note("broker_restart_backlog", "the worker did not reconnect by itself within 60s; restarted")
        stack.restart(audit.worker)
    accepted = [s.task_id for s in audit.send_many(SENDS)]
    sent_while_down = [s.task_id for s in refused]
    audit.settle([in_flight, *backlog, *sent_while_down, *accepted], timeout=60)
    if audit.exited():  # Celery 5.7 on Redis: a worker's reconnect can die on an AttributeError, exit status 0
        for failure in ("broker_restart_backlog", "publish_while_broker_down"):
            audit.note(failure, f"the worker exited by itself after the broker was back: {audit.why_exited()}")
    if audit.first_end(in_flight) < down_at:
        audit.note("broker_restart_in_flight", "it ended before the broker was down: no task was in flight")
    audit.finish([in_flight, *backlog, *sent_while_down, *accepted])
    audit.record(
        stack.verdict(), broker_restart_in_flight=[in_flight], broker_restart_backlog=backlog,
        publish_while_broker_down=sent_while_down + accepted,
    )  # fmt: skip
