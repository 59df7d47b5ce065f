"""The audit: the app's periodic tasks (its ``beat_schedule``), behind a stopped worker and sent by two beats.

Each interval entry of the app runs every second here, its ``expires`` shrunk in proportion (``harness.audit.beat``;
the rows say how): an outage of a few intervals takes seconds. An app without a ``beat_schedule`` gets "not
applicable" rows; one whose entries the audit cannot run in seconds (crontab only) gets rows saying why.
"""

import time

import pytest

from harness.audit.beat import AUDIT_BEAT, AUDIT_EVERY_S, NEW_BEAT, OUTAGE_RUNS, OVERLAP_RUNS
from harness.periodic import DUPLICATE_WITHIN, clusters

pytestmark = [pytest.mark.beat]


def ids(sends) -> list[str]:
    return [s.task_id for each in sends.values() for s in each]


@pytest.mark.audit("beat_worker_outage")
@pytest.mark.worker_fault
def test_periodic_tasks_behind_a_stopped_worker(stack, audit, ledger):
    """The worker is stopped (a deploy of the workers, a crash loop) while beat keeps sending the app's periodic
    tasks, for a few intervals of each entry, then started again.

    What the table tells: what became of the runs sent while the worker was down. Without ``expires`` they wait in
    the queue and run in a burst when the worker is back, each long after its time (``stale``); with an
    ``expires`` shorter than the outage they are dropped (``not_run``: on RabbitMQ, Celery 5.5+ sends it as the
    message's TTL too).
    """
    first = audit.beat_sends(1, beat=AUDIT_BEAT)
    ledger.wait_settled(ids(first), timeout=15)  # the worker runs the app's entries before the outage
    stack.stop(audit.worker)
    stopped = time.time()  # once it has stopped: every send from now on waits for it
    sent = audit.beat_sends(OUTAGE_RUNS + 1, beat=AUDIT_BEAT, since=stopped)  # the last one triggers the start
    judged = [s.task_id for each in sent.values() for s in each[:OUTAGE_RUNS]]
    back = stack.start(audit.worker)
    after = audit.beat_sends(1, beat=AUDIT_BEAT, since=back)  # a queue is first in, first out: the pile goes first
    audit.settle([*judged, *ids(after)])

    periodic = stack.verdict().periodic
    runs = [r for r in periodic.runs if r.task_id in set(judged)]
    down = back - stopped
    audit.note("beat_worker_outage", f"the worker was down {down:.1f}s ({down / AUDIT_EVERY_S:.1f} intervals); the "
               f"table counts the first {OUTAGE_RUNS} runs of each entry sent meanwhile")  # fmt: skip
    audit.record_periodic(periodic, beat_worker_outage=runs)


@pytest.mark.audit("beat_two_beats")
def test_two_beats_during_a_deploy(stack, audit):
    """A deploy starts the new beat before it stops the old one (a rolling update, a second replica), both on the
    app's scheduler and schedule.

    What the table tells: how many of the runs due while both ran were sent (and run) twice: every one, with
    Celery's own schedulers, which have no lock between beats.
    """
    audit.beat_sends(2, beat=AUDIT_BEAT)
    stack.start(NEW_BEAT)
    new = audit.beat_sends(OVERLAP_RUNS, beat=NEW_BEAT)
    last_new = max(s.at for each in new.values() for s in each)
    audit.beat_sends(1, beat=AUDIT_BEAT, since=last_new)  # the old beat's send after the new one's last
    stack.stop(AUDIT_BEAT)  # the deploy ends: the old beat goes

    # The due runs while both ran: each group of sends ``verdict.periodic`` calls one due run (an entry's sends
    # less than DUPLICATE_WITHIN intervals after the group's first) that holds one of the new beat's.
    judged = set()
    for entry, mine in new.items():
        sends = [s for s in audit.ledger.beat_sends().values() if s.entry == entry]
        for group in clusters(sends, DUPLICATE_WITHIN * AUDIT_EVERY_S):
            if any(s in mine for s in group):
                judged |= {s.task_id for s in group}
    audit.settle(sorted(judged))
    periodic = stack.verdict().periodic
    runs = [r for r in periodic.runs if r.task_id in judged]
    audit.record_periodic(periodic, beat_two_beats=runs)
