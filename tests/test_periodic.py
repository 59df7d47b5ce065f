"""harness.periodic: every due run of a beat schedule given one fate, from the sends, the schedule and beat's spans."""

from __future__ import annotations

import pytest

from harness.periodic import BeatSend, BeatSpan, ScheduleEntry, judge_periodic
from harness.verdict import TaskEvent, TaskHistory

EVERY = 2.0
ENTRY = ScheduleEntry("report", "proj.report", every=EVERY, first_due=2.0)


def ran(task_id: str, start: float, end: float | None = None, **fields: object) -> TaskHistory:
    events = [TaskEvent("task-started", task_id, "w", start, start)]
    if end is not None:
        events.append(TaskEvent("task-succeeded", task_id, "w", end, end, fields))
    return TaskHistory(task_id, events)


def sends_at(*times: float, beat: str = "beat", prefix: str = "t") -> list[BeatSend]:
    return [BeatSend("report", f"{prefix}{n}", at, beat) for n, at in enumerate(times)]


def promptly(sends: list[BeatSend]) -> dict[str, TaskHistory]:
    """Each send's task started 10 ms after it was sent and ran 50 ms."""
    return {s.task_id: ran(s.task_id, s.at + 0.01, s.at + 0.06) for s in sends}


def judged(sends: list[BeatSend], spans: list[BeatSpan], until: float, histories=None, entry=ENTRY):
    return judge_periodic({entry.name: entry}, sends, spans, promptly(sends) if histories is None else histories, until)


def test_a_beat_that_never_stopped_ran_every_due_run() -> None:
    sends = sends_at(2.0, 4.0, 6.0, 8.0)
    verdict = judged(sends, [BeatSpan("beat", 0.0)], until=9.0)
    verdict.assert_counts(ran=4)


def test_runs_due_while_beat_was_down_are_missed_and_not_caught_up() -> None:
    # Sent at 2..10, stopped at 10.5, started again at 19.9 with its schedule file lost: next send one interval on.
    sends = sends_at(2.0, 4.0, 6.0, 8.0, 10.0, 22.0, 24.0)
    spans = [BeatSpan("beat", 0.0, 10.5, "stopped"), BeatSpan("beat", 20.0)]
    verdict = judged(sends, spans, until=24.5)
    verdict.assert_counts(ran=7, missed=5)
    assert [r.due for r in verdict.of("missed")] == [12.0, 14.0, 16.0, 18.0, 20.0]
    assert "no beat ran then (beat stopped 1.5s before)" in verdict.of("missed")[0].reason


def test_a_kept_schedule_file_sends_one_catch_up_run_at_restart() -> None:
    # The same outage, the file kept: beat sends the overdue run at once (20.0), then one interval on.
    sends = sends_at(2.0, 4.0, 6.0, 8.0, 10.0, 20.0, 22.0, 24.0)
    spans = [BeatSpan("beat", 0.0, 10.5, "stopped"), BeatSpan("beat", 20.0)]
    judged(sends, spans, until=24.5).assert_counts(ran=8, missed=4)


def test_two_beats_send_each_due_run_twice() -> None:
    first = sends_at(2.0, 4.0, 6.0, 8.0)
    second = sends_at(4.7, 6.7, beat="beat_v2", prefix="u")  # started at 2.7: both ran from 2.7 to 8.5
    verdict = judged(first + second, [BeatSpan("beat", 0.0, 8.5), BeatSpan("beat_v2", 2.7)], until=9.0)
    verdict.assert_counts(ran=4, duplicated=2)
    assert {r.beat for r in verdict.of("duplicated")} == {"beat_v2"}


def test_duplicates_are_found_whatever_the_phase_between_the_beats() -> None:
    for phase in (0.05, 0.5, 1.0, 1.5, 1.95):
        first = sends_at(2.0, 4.0, 6.0, 8.0, 10.0)
        second = sends_at(*(t + phase for t in (2.0, 4.0, 6.0, 8.0)), beat="beat_v2", prefix="u")
        verdict = judged(first + second, [BeatSpan("beat", 0.0), BeatSpan("beat_v2", phase)], until=10.5)
        assert verdict.count("duplicated") == 4, (phase, str(verdict))
        assert verdict.count("missed") == 0, (phase, str(verdict))


def test_a_run_that_waited_behind_a_stopped_worker_is_stale() -> None:
    sends = sends_at(2.0, 4.0, 6.0)
    histories = {"t0": ran("t0", 2.01, 2.06), "t1": ran("t1", 9.0, 9.05), "t2": ran("t2", 9.06, 9.1)}
    verdict = judged(sends, [BeatSpan("beat", 0.0)], until=8.5, histories=histories)
    verdict.assert_counts(ran=1, stale=2, missed=0)
    assert "started 5.0s after it was sent, past its 2s interval" in verdict.of("stale")[0].reason


def test_an_expired_run_did_not_run_and_says_why() -> None:
    sends = sends_at(2.0, 4.0)
    revoked = TaskEvent("task-revoked", "t0", "w", 7.0, 7.0, {"expired": True})
    histories = {"t0": TaskHistory("t0", [revoked]), "t1": ran("t1", 7.1, 7.2)}
    verdict = judged(sends, [BeatSpan("beat", 0.0)], until=5.0, histories=histories)
    verdict.assert_counts(not_run=1, stale=1)
    assert verdict.of("not_run")[0].reason.startswith("expired: the worker discarded it on receipt, 5.0s after")


def test_a_run_longer_than_its_interval_overlaps_the_next() -> None:
    sends = sends_at(2.0, 4.0, 6.0)
    histories = {"t0": ran("t0", 2.0, 5.0), "t1": ran("t1", 4.0, 7.0), "t2": ran("t2", 6.0, 9.0)}
    verdict = judged(sends, [BeatSpan("beat", 0.0)], until=6.5, histories=histories)
    assert verdict.overlaps == {"t1": "t0", "t2": "t1"}


def test_runs_due_before_the_first_beat_of_the_stack_started_are_not_its_business() -> None:
    # A database scheduler remembers a last run from an earlier process: its first due time lies in the past.
    old = ScheduleEntry("report", "proj.report", every=EVERY, first_due=-30.0)
    sends = sends_at(0.1, 2.1, 4.1)
    judged(sends, [BeatSpan("beat", 0.0)], until=4.5, entry=old).assert_counts(ran=3)


def test_a_beat_that_never_sent_misses_every_due_run_since_it_loaded() -> None:
    verdict = judged([], [BeatSpan("beat", 0.0)], until=7.5)
    verdict.assert_counts(missed=3)
    assert "beat ran then, but sent nothing" in verdict.of("missed")[0].reason


def test_a_crontab_entry_is_judged_for_duplicates_only_and_says_so() -> None:
    cron = ScheduleEntry("report", "proj.report", every=None)
    sends = sends_at(60.0, 60.2, 120.0)
    verdict = judged(sends, [BeatSpan("beat", 0.0)], until=400.0, entry=cron)
    verdict.assert_counts(ran=2, duplicated=1)
    assert verdict.unjudged == ["report: missed runs are reckoned for interval schedules only (this one is not)"]


def test_assert_counts_names_what_differs() -> None:
    verdict = judged(sends_at(2.0), [BeatSpan("beat", 0.0)], until=7.5)
    with pytest.raises(AssertionError, match="missed: expected 0, got 2"):
        verdict.assert_counts(ran=1)
    with pytest.raises(TypeError, match="unknown periodic fates"):
        verdict.assert_counts(lost=1)


def test_a_run_whose_message_expired_in_the_broker_says_so() -> None:
    from harness.verdict import Verdict

    entry = ScheduleEntry("report", "proj.report", every=EVERY, expires=1.5, first_due=2.0)
    tasks = Verdict({"lost": ["t0"]}, {}, {})
    verdict = judge_periodic({"report": entry}, sends_at(2.0), [BeatSpan("beat", 0.0)], {}, until=2.5, tasks=tasks)
    verdict.assert_counts(not_run=1)
    assert verdict.of("not_run")[0].reason.startswith("expired in the broker: never delivered")
