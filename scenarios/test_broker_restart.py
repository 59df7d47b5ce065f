"""The broker restarts with a backlog: persistent tasks in a durable queue survive it."""

import pytest

from app_under_test.stack import HELLO_QUEUE, WORKER, demo
from harness.producers import assert_all_queued
from harness.waiting import eventually

pytestmark = [pytest.mark.catalogue, pytest.mark.broker_fault]

CLICKS = 20
QUIET_S = 2.0  # the worker is idle and connected: a surviving message would start within milliseconds


def test_broker_restart_keeps_a_persistent_backlog_and_every_task_runs_once(
    owned_broker, stack, producer, vhost, ledger
):
    """RabbitMQ restarts (an upgrade, a crash, a node replaced) while tasks wait for a stopped worker.

    What a user sees: nothing is lost. Celery publishes tasks as persistent messages (its default
    ``task_default_delivery_mode = "persistent"``) and declares its queues durable, so the backlog is on
    disk and is there again when the broker comes back. The worker, started afterwards, runs every task
    exactly once.
    """
    # Arrange: a backlog waits for a stopped worker.
    stack.stop(WORKER)
    assert_all_queued(producer.send_many(CLICKS), within=1.0)
    vhost.wait_for_ready(HELLO_QUEUE, CLICKS, timeout=5)

    # Inject the failure: the broker stops and starts again (same data, same port).
    owned_broker.restart_broker()

    # Observe: the backlog is still there; the worker drains it.
    vhost.wait_for_ready(HELLO_QUEUE, CLICKS, timeout=10)
    stack.start(WORKER)
    vhost.wait_for_ready(HELLO_QUEUE, 0, timeout=20)
    ledger.wait_settled(timeout=20)

    # Assert: every task ran exactly once.
    stack.verdict().assert_counts(succeeded=CLICKS)


@pytest.mark.celery_config(task_default_delivery_mode="transient")
def test_broker_restart_drops_transient_messages(owned_broker, stack, producer, vhost, ledger):
    """RabbitMQ restarts while tasks wait for a stopped worker, as in the persistent-backlog lesson, but the
    app publishes with ``task_default_delivery_mode = "transient"`` (a common speed-up).

    What a user sees: every waiting task vanishes. Transient messages live in memory only, even in
    a durable queue; the broker comes back with the queue and without them. The clicks all said
    "queued"; nothing will ever run. (Here the RabbitMQ application restarts inside its running node,
    ``rabbitmqctl stop_app`` / ``start_app``: every queue stops and recovers from disk, as in a node
    restart, only faster.)
    """
    stack.stop(WORKER)
    assert_all_queued(producer.send_many(CLICKS), within=1.0)
    vhost.wait_for_ready(HELLO_QUEUE, CLICKS, timeout=5)

    owned_broker.restart_broker(how="app")

    vhost.wait_for_ready(HELLO_QUEUE, 0, timeout=10)
    stack.start(WORKER)
    ledger.assert_quiet(ledger.sent_ids, for_=QUIET_S, why="a transient message does not survive a broker restart")
    stack.verdict().assert_counts(lost=CLICKS)


RELEASE = "release-the-task"  # the task works until the scenario creates this file in the programs' TMPDIR


@pytest.mark.celery_config(task_acks_late=True)
@pytest.mark.parametrize("stack_spec", [demo(env={"HELLO_HOLD_UNTIL": RELEASE})], indirect=True, ids=["held-task"])
def test_broker_restart_with_acks_late_runs_the_in_flight_task_twice(owned_broker, stack, producer, ledger):
    """The broker restarts while a worker runs a task, with ``task_acks_late`` on.

    What a user sees: that task runs twice, and succeeds twice. The worker finishes its first run
    while the broker is away, but the acknowledgement has nowhere to go ("Couldn't ack" in its log);
    the persistent message is still in the queue when the broker is back, and the worker, reconnected
    by itself, runs it again. Both runs are on record even though the broker was down for the first
    one's end: the worker's journal saw it at once, and Celery's success event comes only once the worker
    has reconnected (its main process reads the pool's result then), after the redelivery. (The RabbitMQ
    application stops inside its node until the first run has ended, then starts again, as ``rabbitmqctl
    stop_app`` / ``start_app`` do: the worker's connection is cut all the same; Celery's own reconnect
    backoff is left as users have it.)
    """
    task_id = producer.send().task_id
    ledger.wait_running([task_id])

    with owned_broker.stopped(how="app"):
        (stack.workdir / RELEASE).touch()  # the first run ends now, while the broker is away
        ledger.wait_settled([task_id], timeout=10)
    stack.wait_worker_reconnected(WORKER)
    eventually(
        lambda: ledger.history(task_id), until=lambda h: h.count("task-succeeded") == 2,
        timeout=30, what="the task to succeed twice: once before the restart, once after its redelivery",
    )  # fmt: skip

    stack.verdict().assert_counts(duplicated=1)
    assert ledger.history(task_id).count("task-started") == 2
