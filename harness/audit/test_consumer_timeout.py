"""The audit: a task that runs longer than the broker's consumer timeout."""

import pytest

from harness.audit.failures import behind_note
from harness.audit.runner import prefetched_behind
from harness.waiting import WaitTimeout, eventually

CONSUMER_TIMEOUT_MS = 1000  # instead of RabbitMQ's 30 minutes, checked every 250 ms
LONG_S = CONSUMER_TIMEOUT_MS / 1000 + 1.0
EXIT_GRACE_S = LONG_S + 10  # a closed channel: the running task finishes first, then the worker exits

pytestmark = [pytest.mark.limits, pytest.mark.broker_fault]


@pytest.fixture
def consumer_timeout(owned_broker):
    """The broker closes a channel whose delivery stays unacknowledged for 1 s (requested before the stack,
    so the workers' channels get it); gives the broker's own value, for the table."""
    with owned_broker.rabbit_settings(consumer_timeout=CONSUMER_TIMEOUT_MS, channel_tick_interval=250) as before:
        yield before["consumer_timeout"]


def consumed(audit) -> bool:
    """Whether the audited queue has a consumer (the broker closing the worker's channel takes it away)."""
    return audit.vhost.depth(audit.queue).consumers > 0


def exit_or_kill(stack, audit) -> None:
    """The broker closed the worker's channel: Celery shuts the worker down once its running task ends.
    About one time in twenty (Celery 5.7.0, py-amqp 5.4.2) that shutdown hangs for good, waiting for a
    channel close-ok that never comes (the catalogue scenario's finding): the worker is then killed, as a
    supervisor's stop timeout would, and the table says so."""
    try:
        stack.wait_exited(audit.worker, timeout=EXIT_GRACE_S)
    except WaitTimeout:
        stack.kill(audit.worker)
        stack.wait_exited(audit.worker, timeout=10)
        for failure in ("consumer_timeout", "consumer_timeout_behind"):
            audit.note(failure, f"the worker's shutdown hung after the broker closed its channel; killed after "
                       f"{EXIT_GRACE_S:.0f}s, as a supervisor's stop timeout would")  # fmt: skip


@pytest.mark.audit("consumer_timeout", "consumer_timeout_behind")
def test_a_task_past_the_consumer_timeout(consumer_timeout, stack, audit, ledger):
    """One task runs longer than the broker's ``consumer_timeout`` (30 minutes by default: a report, an
    export, a video), and a second task is sent right behind it (prefetched, if the worker's prefetch
    leaves room beside the long task's delivery).

    What the table tells: whether the broker closes the worker's channel (an unacknowledged delivery
    past the timeout: the long task's own with late acknowledgement, a prefetched one's in any case;
    the second task's row says whether it was prefetched), which makes the worker exit; and what
    becomes of both tasks when the worker is started again, as an autorestarting supervisor would.
    """
    audit.broker.update(consumer_timeout_ms=consumer_timeout, consumer_timeout_audit_ms=CONSUMER_TIMEOUT_MS)
    audit.note("consumer_timeout", f"the broker's consumer_timeout is {consumer_timeout} ms; shortened to "
               f"{CONSUMER_TIMEOUT_MS} ms for a {LONG_S:.0f}s task")  # fmt: skip
    long, behind = audit.send(audit.capped(LONG_S)), audit.send()
    both = [long, behind]
    eventually(
        lambda: audit.exited() or ledger.settled(both) == 2 or not consumed(audit), timeout=LONG_S + 15,
        what="the worker to exit, both tasks to end, or the broker to close the worker's channel",
    )  # fmt: skip
    if not audit.exited() and ledger.settled(both) < 2:
        exit_or_kill(stack, audit)

    if audit.exited():
        for failure in ("consumer_timeout", "consumer_timeout_behind"):
            audit.note(failure, "the worker exited: the broker closed its channel; started again")
        stack.start(audit.worker)
        eventually(
            lambda: ledger.history(long).count("task-started") >= 2 or ledger.settled(both) == 2,
            timeout=LONG_S + 15, what="the long task to start again, or both tasks to end",
        )  # fmt: skip
    audit.finish(both)
    prefetched = prefetched_behind(ledger.history(long), ledger.history(behind))
    audit.observed["prefetched_behind"] = prefetched
    audit.note("consumer_timeout_behind", behind_note(audit.facts(), prefetched))
    audit.record(stack.verdict(), consumer_timeout=[long], consumer_timeout_behind=[behind])
