"""celery beat under faults: periodic runs sent twice, skipped, caught up late, or run long after they were due.

Every story judges the runs that were due (``verdict.periodic``: ran, stale, not_run, duplicated, missed) from what
the beat journaled and its schedule; each waits for the sends it counts and judges up to a moment it waited for,
so the counts do not depend on how fast the machine is.
"""

import pytest

from app_under_test.stack import BEAT, WORKER, periodic

pytestmark = [pytest.mark.catalogue, pytest.mark.beat]

EVERY = 1.0  # the entry's interval, seconds
NEW_BEAT = "beat_v2"


@pytest.mark.parametrize("stack_spec", [periodic(EVERY, beats=(BEAT, NEW_BEAT))], indirect=True, ids=["two-beats"])
def test_two_beats_during_a_deploy_send_every_periodic_task_twice(stack, ledger):
    """A deploy starts the new beat before it stops the old one (a rolling update, or a second replica).

    What a user sees: while both run, every periodic task is sent twice, under two task ids, and runs twice: the
    nightly report mailed twice, the invoice run charging twice. Celery has no lock between beats: run exactly one
    (a deployment that stops the old one first, ``replicas: 1`` with ``Recreate``), or make the task safe to repeat.
    """
    ledger.wait_beat_sends(2, beat=BEAT)
    stack.start(NEW_BEAT)
    overlap = ledger.wait_beat_sends(3, beat=NEW_BEAT)
    last_old = ledger.wait_beat_sends(1, beat=BEAT, since=overlap[-1].at)[0]  # the old beat has a send after each
    stack.stop(BEAT)

    runs = stack.periodic_verdict(last_old, after=0.01)  # not the new beat's next: its pair is not judged
    duplicates = runs.of("duplicated")
    assert len(duplicates) == 3, runs
    runs.assert_counts(ran=len(runs.runs) - 3, duplicated=3)
    assert all(overlap[0].at - EVERY <= d.due <= last_old.at for d in duplicates), "only while both beats ran"


@pytest.mark.parametrize("stack_spec", [periodic(EVERY)], indirect=True, ids=["every-1s"])
def test_beat_down_for_several_intervals_misses_those_runs_and_does_not_catch_up(stack, ledger):
    """beat is stopped for a few intervals (a crash, a node drained, a deploy that took long).

    What a user sees: the runs due while it was down never happen, and nothing says so: beat does not catch up
    when it comes back; it sends one overdue run (its schedule file says the entry is late) and goes on from
    there. A task that must run every interval cannot rely on beat alone: make each run cover the time since
    the last one that succeeded.
    """
    ledger.wait_beat_sends(2)
    stack.stop(BEAT)
    ledger.assert_beat_silent(4.5 * EVERY, "beat is stopped")
    back = ledger.wait_beat_sends(2, since=stack.start(BEAT))

    runs = stack.periodic_verdict(back[-1])
    down, up = stack.beat_spans()
    assert back[1].at - back[0].at >= EVERY * 0.99, "one overdue run at restart, then one interval on: no catch-up"
    assert runs.count("missed") >= 4, runs
    assert all(down.end < m.due < up.start for m in runs.of("missed")), "each missed run was due while beat was down"
    runs.assert_counts(ran=len(runs.runs) - runs.count("missed"), missed=runs.count("missed"))


@pytest.mark.parametrize("schedule_file", ["kept", "lost"])
@pytest.mark.parametrize("stack_spec", [periodic(EVERY)], indirect=True, ids=["every-1s"])
def test_beat_restarted_sends_an_overdue_run_at_once_only_if_its_schedule_file_was_kept(stack, ledger, schedule_file):
    """beat restarts after an outage of a few intervals, its schedule file (``celerybeat-schedule``) kept on a
    volume, or lost with a container that had none.

    What a user sees: with the file kept, beat knows the entry is overdue and sends one run the moment it is up;
    with the file lost, it takes the entry as just run and sends the first one a whole interval later. Neither
    catches up the runs missed meanwhile. For a daily job, a lost file means a whole day without it.
    """
    ledger.wait_beat_sends(2)
    stack.stop(BEAT)
    ledger.assert_beat_silent(2.5 * EVERY, "beat is stopped")
    if schedule_file == "lost":
        assert stack.forget_schedule(BEAT), "the schedule file existed"
    started = stack.start(BEAT)
    first = ledger.wait_beat_sends(1, since=started)[0]

    ready = ledger.beat_steps("beat-ready", BEAT)[-1].t
    waited = first.at - ready
    if schedule_file == "kept":
        assert waited < EVERY / 2, f"an overdue run sent at once: {waited:.2f}s after beat was up"
    else:
        assert EVERY * 0.95 <= waited < EVERY * 1.5, f"the first run a whole interval on: {waited:.2f}s"
    runs = stack.periodic_verdict(first)
    assert runs.count("missed") >= 2, runs
    runs.assert_counts(ran=len(runs.runs) - runs.count("missed"), missed=runs.count("missed"))


@pytest.mark.parametrize(
    "stack_spec, fate",
    [(periodic(EVERY), "stale"), (periodic(EVERY, expires=1.5 * EVERY), "not_run")],
    indirect=["stack_spec"], ids=["no-expires", "expires-1.5s"],
)  # fmt: skip
def test_a_worker_down_while_beat_fires_runs_the_pile_at_once_unless_the_runs_expire(stack, ledger, fate):
    """The worker is down for a few intervals while beat keeps sending (a deploy of the workers, a crash loop).

    What a user sees: the runs pile up in the queue, and when the worker is back they all run at once, each long
    after its time (``stale``): four "every second" reports in a burst, each about a moment long gone. With
    ``expires`` shorter than the outage in the entry's options, the late runs never run: on RabbitMQ, Celery
    (5.5+) sends ``expires`` as the message's TTL too, so the broker drops each one before the worker sees it
    (no ``task-revoked``: they are gone from the queue); on Redis the worker discards them on receipt.
    """
    ledger.wait_settled([s.task_id for s in ledger.wait_beat_sends(1)], timeout=10)
    stack.stop(WORKER)
    pile = ledger.wait_beat_sends(6, since=stack.beat_spans()[0].start + 2 * EVERY)
    back = stack.start(WORKER)
    after = ledger.wait_beat_sends(1, since=back)[0]
    ledger.wait_settled([after.task_id], timeout=15)  # one queue, one pool process: the pile went before it

    # The first four, each at least two intervals old when the worker is back (older than expires).
    runs = stack.verdict(periodic_until=pile[3].at + EVERY / 2).periodic
    late = [r for r in runs.runs if r.task_id in {s.task_id for s in pile[:4]}]
    assert [r.fate for r in late] == [fate] * 4, runs
    if fate == "not_run":
        assert all(r.reason.startswith("expired") for r in late), runs
    assert runs.count("missed") == runs.count("duplicated") == 0, runs


@pytest.mark.parametrize(
    "stack_spec, concurrency",
    [(periodic(EVERY, work_seconds=2.5 * EVERY), 1), (periodic(EVERY, work_seconds=2.5 * EVERY, concurrency=3), 3)],
    indirect=["stack_spec"], ids=["c1", "c3"],
)  # fmt: skip
def test_a_periodic_task_longer_than_its_interval_piles_up_or_overlaps_itself(stack, ledger, concurrency):
    """The periodic task takes 2.5 intervals (a report that grew with the data).

    What a user sees: with one pool process, the runs queue behind each other and start later and later
    (``stale``), and the queue grows without end: the backlog never drains. With three, they keep up but run
    at the same time as each other (``verdict.periodic.overlaps``): two copies of the job on the same rows. A
    long periodic task needs a lock (or a singleton guard) and an interval it fits in.
    """
    sends = ledger.wait_beat_sends(4)
    ledger.wait_started(sends[3].task_id, timeout=15)  # with -c 1, after three whole runs

    runs = stack.verdict(periodic_until=sends[3].at + EVERY / 2).periodic  # earlier runs may still run
    if concurrency == 1:
        runs.assert_counts(ran=1, stale=3)
        assert runs.overlaps == {}, "one pool process never runs two at once"
    else:
        runs.assert_counts(ran=4)
        assert list(runs.overlaps) == [s.task_id for s in sends[1:4]], runs
