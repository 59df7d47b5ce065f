"""The audit: a task that runs longer than the broker's consumer timeout."""

import pytest

from harness.audit.failures import behind_note
from harness.audit.runner import prefetched_behind
from harness.waiting import eventually

CONSUMER_TIMEOUT_MS = 1000  # instead of RabbitMQ's 30 minutes, checked every 250 ms
LONG_S = CONSUMER_TIMEOUT_MS / 1000 + 1.0

pytestmark = [pytest.mark.limits, pytest.mark.broker_fault]


@pytest.fixture
def consumer_timeout(owned_broker):
    """The broker closes a channel whose delivery stays unacknowledged for 1 s (requested before the stack,
    so the workers' channels get it); gives the broker's own value, for the table."""
    with owned_broker.rabbit_settings(consumer_timeout=CONSUMER_TIMEOUT_MS, channel_tick_interval=250) as before:
        yield before["consumer_timeout"]


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
        lambda: audit.exited() or ledger.settled(both) == 2, timeout=LONG_S + 15,
        what="the worker to exit, or both tasks to end",
    )  # fmt: skip

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
