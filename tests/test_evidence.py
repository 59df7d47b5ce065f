"""harness.evidence: two witnesses merged into one history per task, and the spans neither saw."""

from __future__ import annotations

import pytest

from harness.evidence import both_blind, merge
from harness.journal import Entry
from harness.verdict import Send, Span, TaskEvent, TaskHistory, judge

T = "task-1"
W = "worker_hello@harness"


def seen(*steps: tuple[str, float]) -> dict[str, TaskHistory]:
    """What the events witness received: (type, time) steps of task T on worker W."""
    return {T: TaskHistory(T, [TaskEvent(kind, T, W, at, at) for kind, at in steps])}


def written(*steps: tuple[str, float]) -> list[Entry]:
    """What the worker's journal holds."""
    return [Entry(kind, T, W, at, "worker_hello", 1) for kind, at in steps]


# The CI failure of the acks-late broker restart, as the two witnesses saw it. Run 1 starts at 0 and
# succeeds at 8, while the broker is down (5 to 11); the worker reconnects at 12 and runs the
# redelivered message (run 2), which succeeds at 15. The ledger's queue was gone when the worker flushed
# its buffer: the events witness holds run 1's receive and start and run 2's success only.
EVENTS_WITH_THE_GAP = seen(("task-received", 0.0), ("task-started", 0.01), ("task-succeeded", 15.0))
JOURNAL = written(
    ("task-received", 0.0), ("task-started", 0.01), ("task-succeeded", 8.0),
    ("task-received", 12.0), ("task-started", 12.01), ("task-succeeded", 15.0),
)  # fmt: skip
SEND = {T: Send(T, True, -0.01)}
BROKER_DOWN = Span(5.0, 12.5, "the broker was down")


def test_the_events_alone_call_the_task_succeeded_which_is_the_wrong_answer() -> None:
    verdict = judge(SEND, EVENTS_WITH_THE_GAP)
    assert verdict.counts()["succeeded"] == 1


def test_the_journal_fills_the_gap_and_the_task_is_duplicated() -> None:
    histories = merge(EVENTS_WITH_THE_GAP, JOURNAL)
    verdict = judge(SEND, histories, blind=both_blind([BROKER_DOWN], []))
    verdict.assert_counts(duplicated=1)
    steps = [(e.type, sorted(e.witnesses)) for e in histories[T].events]
    assert steps == [
        ("task-received", ["events", "journal"]),
        ("task-started", ["events", "journal"]),
        ("task-succeeded", ["journal"]),  # run 1's success: only the journal saw it
        ("task-received", ["journal"]),
        ("task-started", ["journal"]),
        ("task-succeeded", ["events", "journal"]),
    ]


def test_a_span_both_witnesses_missed_flags_the_fate_instead_of_calling_it_succeeded() -> None:
    # The journal was cut at 4 s (its process killed mid-line) and the events were blind 5 to 12.5 s:
    # whatever happened then is unknown, so the task gets no fate, with the reason.
    events = seen(("task-received", 0.0), ("task-started", 0.01), ("task-succeeded", 15.0))
    journal = written(("task-received", 0.0), ("task-started", 0.01))
    cut = Span(4.0, None, "the journal of worker_hello (pid 1) ends mid-line")
    verdict = judge(SEND, merge(events, journal), blind=both_blind([BROKER_DOWN], [cut]))
    verdict.assert_counts(unverified=1)
    assert "would be succeeded" in verdict.reasons[T] and "the broker was down" in verdict.reasons[T]
    assert "ends mid-line" in verdict.reasons[T]


def test_a_blind_span_outside_the_tasks_life_changes_nothing() -> None:
    events = seen(("task-received", 20.0), ("task-started", 20.1), ("task-succeeded", 21.0))
    cut = Span(4.0, 6.0, "a cut journal")
    judge({T: Send(T, True, 19.9)}, events, blind=both_blind([BROKER_DOWN], [cut])).assert_counts(succeeded=1)


def test_a_blind_span_cannot_undo_a_known_duplicate() -> None:
    verdict = judge(SEND, merge(EVENTS_WITH_THE_GAP, JOURNAL), blind=[Span(0.0, None, "everything blind")])
    verdict.assert_counts(duplicated=1)


def test_steps_pair_only_within_the_window() -> None:
    # Two starts 3 s apart, each seen by one witness: two runs, not one seen twice.
    histories = merge(seen(("task-started", 0.0)), written(("task-started", 3.0)))
    assert [sorted(e.witnesses) for e in histories[T].events] == [["events"], ["journal"]]


def test_a_send_pairs_whatever_name_the_producer_had_in_each_witness() -> None:
    events = {T: TaskHistory(T, [TaskEvent("task-sent", T, "gen123@host", 0.01, 0.01)])}
    journal = [Entry("task-sent", T, None, 0.0, "web", 9)]
    [step] = merge(events, journal)[T].events
    assert step.witnesses == {"events", "journal"} and step.timestamp == 0.0


def test_both_blind_is_the_intersection() -> None:
    spans = both_blind([Span(0, 10, "a"), Span(20, None, "b")], [Span(5, 25, "c")])
    assert [(s.start, s.end) for s in spans] == [(5, 10), (20, 25)]


# The acks-late broker restart as measured here (Celery 5.7.0, RabbitMQ 3.10.8): run 1's success is written
# to the journal at 5.1 s, while the broker is down (2.0 to 15.3 s); the worker's main process reads the
# pool's result only after reconnecting, and Celery's event for it is stamped 22.5 s, after the redelivered
# message was received (22.4 s). Run 2 then ends at 25.5 s, seen by both.
LATE_SUCCESS = seen(
    ("task-received", 1.85), ("task-started", 1.97), ("task-succeeded", 22.48),
    ("task-received", 22.38), ("task-started", 22.49),
)  # fmt: skip
RUN_1_JOURNAL = written(
    ("task-received", 1.85), ("task-started", 1.97), ("task-succeeded", 5.08),
    ("task-received", 22.38), ("task-started", 22.49),
)  # fmt: skip
RESTART = Span(1.5, 15.8, "the broker was down")


def test_a_success_reported_late_is_one_step_not_a_second_run() -> None:
    # Before run 2 ends: one success (run 1's), seen by both witnesses at the journal's time (no start of
    # that worker lies between the journal's line and the late event: run 2 starts at 22.49).
    history = merge(LATE_SUCCESS, RUN_1_JOURNAL)[T]
    [success] = [e for e in history.events if e.type == "task-succeeded"]
    assert success.timestamp == 5.08 and success.witnesses == {"events", "journal"}
    assert success.fields["reported_late_s"] == pytest.approx(17.4)


def test_when_run_2_ends_both_successes_are_counted() -> None:
    events = {T: TaskHistory(T, [*LATE_SUCCESS[T].events, TaskEvent("task-succeeded", T, W, 25.49, 25.49)])}
    journal = [*RUN_1_JOURNAL, *written(("task-succeeded", 25.49))]
    history = merge(events, journal)[T]
    assert [(e.timestamp, sorted(e.witnesses)) for e in history.events if e.type == "task-succeeded"] == [
        (5.08, ["events", "journal"]),
        (25.49, ["events", "journal"]),
    ]
    judge(SEND, {T: history}, blind=both_blind([RESTART], [])).assert_counts(duplicated=1)


def test_an_end_whose_event_the_worker_made_after_reconnecting_is_one_step() -> None:
    # Early acknowledgement; the broker is down from 1 to 17. The pool process ends the task at 3 (the
    # journal writes it then); the worker's main process reads the result, and makes the event, only
    # once it is connected again, at 21: the same run's end, seen by both, not a second success.
    events = seen(("task-received", 0.0), ("task-started", 0.01), ("task-succeeded", 21.0))
    journal = written(("task-received", 0.0), ("task-started", 0.01), ("task-succeeded", 3.0))
    history = merge(events, journal)[T]
    assert [(e.type, e.timestamp, sorted(e.witnesses)) for e in history.events][-1] == (
        "task-succeeded", 3.0, ["events", "journal"],
    )  # fmt: skip
    judge(SEND, {T: history}).assert_counts(succeeded=1)


def test_ends_with_a_start_between_them_are_two_runs() -> None:
    # Run 1 ends at 8 (only the journal saw it), run 2 starts at 12 and ends at 15 (only the events saw
    # the end: the journal was cut): a start lies between the two ends, so they are two runs.
    events = seen(("task-started", 0.0), ("task-started", 12.0), ("task-succeeded", 15.0))
    journal = written(("task-started", 0.0), ("task-succeeded", 8.0), ("task-started", 12.0))
    history = merge(events, journal)[T]
    assert history.count("task-succeeded") == 2
    judge(SEND, {T: history}).assert_counts(duplicated=1)


def test_a_late_end_and_the_next_runs_end_made_milliseconds_apart_pair_by_order_not_nearness() -> None:
    # Measured with a held task released while the broker was down: run 1 ends at 5.216 (journal); after
    # the reconnect the redelivery is received at 7.199, run 1's event is made at 7.301, run 2 starts at
    # 7.305 and ends at 7.307 (journal) / 7.3072 (event). Pairing by nearness took run 1's late event for
    # run 2's end and counted three successes; by order, two.
    events = seen(
        ("task-received", 2.9394), ("task-started", 2.9426), ("task-received", 7.1994),
        ("task-succeeded", 7.3010), ("task-started", 7.3050), ("task-succeeded", 7.3072),
    )  # fmt: skip
    journal = written(
        ("task-received", 2.9394), ("task-started", 2.9426), ("task-succeeded", 5.2158),
        ("task-received", 7.1994), ("task-started", 7.3050), ("task-succeeded", 7.3070),
    )  # fmt: skip
    successes = [e for e in merge(events, journal)[T].events if e.type == "task-succeeded"]
    assert [(e.timestamp, sorted(e.witnesses)) for e in successes] == [
        (5.2158, ["events", "journal"]),
        (7.3070, ["events", "journal"]),
    ]


def test_a_run_ends_once_even_when_the_next_start_came_before_the_late_event() -> None:
    # Run 2 starts (7.20) before run 1's late event is made (7.30): the start blocks the pairing by order,
    # which would leave three ends for two runs; a run ends once, so the leftovers pair.
    events = seen(("task-started", 2.0), ("task-started", 7.2), ("task-succeeded", 7.3), ("task-succeeded", 7.41))
    journal = written(("task-started", 2.0), ("task-succeeded", 5.0), ("task-started", 7.2), ("task-succeeded", 7.4))
    history = merge(events, journal)[T]
    assert history.count("task-succeeded") == 2 and history.count("task-started") == 2


def test_a_start_the_journal_never_wrote_does_not_take_the_next_runs_start() -> None:
    # CI, an acks-late task cancelled on connection loss (Celery 5.7.0): the worker's main process made
    # run 1's start event at 0.008 when the pool process accepted the job, and the pool process was
    # terminated before its task_prerun (no journal start; its postrun still ran). Run 2's start was
    # written at 0.165 and its event made at 0.171, after its end (0.170). Paired greedily, run 1's event
    # took run 2's journal start, run 2's event was left alone and stood between run 2's two ends: two
    # successes for one run.
    events = seen(
        ("task-received", 0.007), ("task-started", 0.008), ("task-received", 0.028), ("task-started", 0.171),
        ("task-succeeded", 0.172),
    )  # fmt: skip
    journal = written(
        ("task-received", 0.007), ("task-postrun", 0.012), ("task-retried", 0.013), ("task-received", 0.028),
        ("task-started", 0.165), ("task-succeeded", 0.170), ("task-postrun", 0.170),
    )  # fmt: skip
    history = merge(events, journal)[T]
    starts = [(e.timestamp, sorted(e.witnesses)) for e in history.events if e.type == "task-started"]
    assert starts == [(0.008, ["events"]), (0.165, ["events", "journal"])]
    assert history.count("task-succeeded") == 1


def test_a_step_pairs_with_the_same_step_not_the_earliest_in_the_window() -> None:
    # The message is received twice 21 ms apart; the events witness missed the first receive: its event
    # is the second receive, not the first one seen late.
    history = merge(seen(("task-received", 0.028)), written(("task-received", 0.007), ("task-received", 0.028)))
    assert [(e.timestamp, sorted(e.witnesses)) for e in history[T].events] == [
        (0.007, ["journal"]),
        (0.028, ["events", "journal"]),
    ]


def test_witness_gaps_count_the_steps_each_witness_missed() -> None:
    from harness.evidence import witness_gaps
    from harness.verdict import TaskEvent, TaskHistory

    def step(kind: str, *witnesses: str) -> TaskEvent:
        return TaskEvent(kind, "t", "w", 0.0, 0.0, {}, witnesses=frozenset(witnesses))

    history = TaskHistory(
        "t", [step("task-sent", "events"), step("task-received", "events", "journal"),
              step("task-started", "journal"), step("task-succeeded", "events")],
    )  # fmt: skip
    assert witness_gaps({"t": history}) == {"steps": 3, "events_missed": 1, "journal_missed": 1}
