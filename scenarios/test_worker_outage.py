"""A stopped worker: the site keeps answering, tasks wait in the queue, and nothing is lost."""

import pytest

from app_under_test.stack import HELLO_QUEUE, WORKER
from harness.producers import assert_all_queued

pytestmark = pytest.mark.foundation

CLICKS = 20
CLICK_BOUND_S = 1.0  # a click only publishes a message; a second is generous even on a loaded CI machine
WATCH_S = 2.0  # about 40 depth readings with no consumer: long enough to catch anything taking messages


def test_worker_outage_tasks_wait_in_the_queue_and_all_run_once_after_restart(stack, producer, vhost, ledger):
    """Ops stop the worker (``supervisorctl stop worker_hello``) while users keep clicking.

    What a user sees: every click still answers at once, because the web app only publishes a
    message. The tasks pile up in ``hello_queue``: nothing is processed and nothing is lost. When ops
    start the worker again the backlog drains, and every task runs exactly once.

    Why it matters: a broker-backed queue decouples the web app from its workers, so a worker
    outage delays the work instead of breaking the site or dropping the work.
    """
    # Arrange: ops stop the worker.
    stack.stop(WORKER)

    # Inject the failure: users keep clicking while no worker runs.
    clicks = producer.send_many(CLICKS)
    assert_all_queued(clicks, within=CLICK_BOUND_S)

    # Observe: the backlog sits in the queue, untouched.
    vhost.wait_for_ready(HELLO_QUEUE, CLICKS, timeout=5)
    vhost.assert_ready_holds(HELLO_QUEUE, CLICKS, for_=WATCH_S, why="no worker consumes it")
    assert ledger.count("task-started") == 0, "a task started while the worker was stopped"

    # Recover: ops start the worker; the backlog drains.
    stack.start(WORKER)
    vhost.wait_for_ready(HELLO_QUEUE, 0, timeout=20)
    ledger.wait_settled(timeout=20)

    # Assert: each click's task succeeded exactly once; none failed, none was lost or ran twice.
    stack.verdict().assert_counts(succeeded=CLICKS)
