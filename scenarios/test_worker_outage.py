"""A stopped worker: the site keeps answering, tasks wait in the queue, and nothing is lost."""

from harness.waiting import eventually, never

CLICKS = 20
CLICK_BOUND_S = 1.0  # a click only publishes a message; a second is generous on a loaded CI machine
WATCH_S = 2.0  # 40 queue-depth observations with no consumer: enough to see a stray consumer at work


def test_worker_outage_tasks_wait_in_the_queue_and_all_run_once_after_restart(stack, web, vhost, ledger):
    """Ops stop the worker (``supervisorctl stop worker_hello``) while users keep clicking.

    What a user sees: every click still answers at once, because the web app only publishes a
    message. The tasks pile up in ``hello_queue``: nothing is processed and nothing is lost. When ops
    start the worker again the backlog drains, and every task runs exactly once.

    Why it matters: a broker-backed queue decouples the web app from its workers, so a worker
    outage delays the work instead of breaking the site or dropping the work.
    """
    # Arrange: ops stop the worker.
    stack.stop("worker_hello")

    # Inject the failure: users keep clicking while no worker runs.
    clicks = web.clicks(CLICKS)
    slowest = max(c.seconds for c in clicks)
    assert all(c.status == 202 and c.queued for c in clicks), f"some clicks were not queued: {clicks}"
    assert slowest < CLICK_BOUND_S, f"a click took {slowest:.2f}s; offloading must answer within {CLICK_BOUND_S}s"

    # Observe: the backlog sits in the queue, untouched.
    eventually(lambda: vhost.ready("hello_queue"), until=lambda n: n == CLICKS, timeout=5, what=f"{CLICKS} ready messages in hello_queue")
    never(
        lambda: vhost.ready("hello_queue"), until=lambda n: n != CLICKS, for_=WATCH_S,
        what="hello_queue's depth changed while no worker consumes it (something processed or dropped tasks)",
    )
    assert ledger.count("task-started") == 0, "a task started while the worker was stopped"

    # Recover: ops start the worker; the backlog drains.
    stack.start_program("worker_hello")
    eventually(lambda: vhost.ready("hello_queue"), until=lambda n: n == 0, timeout=20, what="hello_queue to drain")
    ledger.wait_settled(timeout=20)

    # Assert: each click's task succeeded exactly once; none failed, none lost, none ran twice.
    stack.verdict().assert_counts(succeeded=CLICKS)
