"""The broker restarts with a backlog: persistent tasks in a durable queue survive it."""

import time

import pytest

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
    restarted_at = time.time()
    owned_broker.restart_broker()
    ledger.wait_listening_since(restarted_at)

    # Observe: the backlog is still there; the worker drains it.
    vhost.wait_for_ready("hello_queue", CLICKS, timeout=10)
    stack.start_program("worker_hello")
    vhost.wait_for_ready("hello_queue", 0, timeout=20)
    ledger.wait_settled(timeout=20)

    # Assert: every task ran exactly once.
    stack.verdict().assert_counts(succeeded=CLICKS)
