"""The broker restarts with a backlog: persistent tasks in a durable queue survive it."""

import pytest

from harness.stack import StackSpec, WebSpec
from harness.waiting import eventually
from harness.web import assert_all_queued

pytestmark = [pytest.mark.catalogue, pytest.mark.broker_fault]

CLICKS = 20


def test_broker_restart_keeps_a_persistent_backlog_and_every_task_runs_once(owned_broker, stack, web, vhost, ledger):
    """RabbitMQ restarts (an upgrade, a crash, a node replaced) while tasks wait for a stopped worker.

    What a user sees: nothing is lost. Celery publishes tasks as persistent messages and declares its
    queues durable, so the backlog is on disk and is there again when the broker comes back. The
    worker, started afterwards, runs every task exactly once.
    """
    # Arrange: a backlog waits for a stopped worker.
    stack.stop("worker_hello")
    assert_all_queued(web.clicks(CLICKS), within=1.0)
    vhost.wait_for_ready("hello_queue", CLICKS, timeout=5)

    # Inject the failure: the broker stops and starts again (same data, same port).
    owned_broker.restart_broker()

    # Observe: the backlog is still there; the worker drains it.
    vhost.wait_for_ready("hello_queue", CLICKS, timeout=10)
    stack.start_program("worker_hello")
    vhost.wait_for_ready("hello_queue", 0, timeout=20)
    ledger.wait_settled(timeout=20)

    # Assert: every task ran exactly once.
    stack.verdict().assert_counts(succeeded=CLICKS)


TRANSIENT = StackSpec(web=WebSpec(env={"CELERY_DELIVERY_MODE": "transient"}))
QUIET_S = 2.0  # the worker is idle and connected: a surviving message would start within milliseconds


@pytest.mark.parametrize("stack_spec", [TRANSIENT], indirect=True, ids=["transient-messages"])
def test_broker_restart_drops_transient_messages(owned_broker, stack, web, vhost, ledger):
    """The same restart, but the app publishes with ``task_default_delivery_mode = "transient"``
    (a common speed-up).

    What a user sees: every waiting task vanishes. Transient messages live in memory only, even in
    a durable queue; the broker comes back with the queue and without them. The clicks all said
    "queued"; nothing will ever run.
    """
    stack.stop("worker_hello")
    assert_all_queued(web.clicks(CLICKS), within=1.0)
    vhost.wait_for_ready("hello_queue", CLICKS, timeout=5)

    owned_broker.restart_broker()

    vhost.wait_for_ready("hello_queue", 0, timeout=10)
    stack.start_program("worker_hello")
    ledger.assert_quiet(ledger.sent_ids, for_=QUIET_S, why="a transient message does not survive a broker restart")
    stack.verdict().assert_counts(lost=CLICKS)


IN_FLIGHT_ACKS_LATE = StackSpec(env={"HELLO_WORK_SECONDS": "3", "CELERY_ACKS_LATE": "1"})


@pytest.mark.parametrize("stack_spec", [IN_FLIGHT_ACKS_LATE], indirect=True, ids=["acks-late"])
def test_broker_restart_with_acks_late_runs_the_in_flight_task_twice(owned_broker, stack, web, ledger):
    """The broker restarts while a worker runs a task, with ``task_acks_late`` on.

    What a user sees: that task runs twice, and succeeds twice. The worker finishes its first run
    while the broker is away (its success event waits in the worker's buffer), but the
    acknowledgement has nowhere to go; the persistent message is still in the queue when the broker
    is back, and the worker, reconnected by itself, runs it again.
    """
    task_id = web.click().task_id
    ledger.wait_running([task_id])

    owned_broker.restart_broker()
    stack.wait_worker_reconnected("worker_hello")
    eventually(
        lambda: ledger.history(task_id), until=lambda h: h.count("task-succeeded") == 2,
        timeout=30, what="the task to succeed twice: once before the restart, once after its redelivery",
    )  # fmt: skip

    stack.verdict().assert_counts(duplicated=1)
    assert ledger.history(task_id).count("task-started") == 2
