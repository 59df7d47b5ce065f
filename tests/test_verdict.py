"""harness.verdict: one fate per task id, and the assertions built on it."""

from __future__ import annotations

from collections import Counter

import pytest

from harness.verdict import FATES, Send, TaskEvent, TaskHistory, Verdict, exception_type, fate_of, judge


def event(type_: str, task_id: str = "t", host: str = "w1", at: float = 0.0, **fields: object) -> TaskEvent:
    return TaskEvent(type_, task_id, host, at, at, fields)


def history(task_id: str, *events: str | TaskEvent, host: str = "w1") -> TaskHistory:
    """A history from event types (one second apart, on ``host``) or ready-made events."""
    built = [e if isinstance(e, TaskEvent) else event(e, task_id, host, at=float(n)) for n, e in enumerate(events)]
    return TaskHistory(task_id, built)


def sent(task_id: str, ok: bool = True) -> Send:
    return Send(task_id, ok, at=0.0, error=None if ok else "ConnectionError('refused')")


def fate(*events: str | TaskEvent, ok: bool = True, queued: bool = False, unacked: int | None = 0) -> str:
    return fate_of(sent("t", ok), history("t", *events), queued, unacked)


# -- every fate ------------------------------------------------------------------------------


def test_succeeded() -> None:
    assert fate("task-received", "task-started", "task-succeeded") == "succeeded"


def test_failed_on_an_exception() -> None:
    failed = event("task-failed", at=1.0, exception="ValueError('bad input')")
    assert fate("task-started", failed) == "failed"


@pytest.mark.parametrize("refusal", ["task-revoked", "task-rejected"])
def test_failed_when_the_worker_refuses_it(refusal: str) -> None:
    assert fate("task-received", refusal) == "failed"


def test_duplicated_when_started_twice_without_a_retry() -> None:
    assert fate("task-started", "task-started", "task-succeeded") == "duplicated"


def test_lost_when_started_again_and_again_never_ended_and_its_message_is_gone() -> None:
    # A quorum queue's delivery limit dropped a task that crashed its worker every time.
    runs = ("task-received", "task-started", "task-rejected") * 3
    assert fate("task-sent", *runs) == "lost"
    assert fate("task-sent", *runs, queued=True) == "duplicated"  # still there: it will start again
    assert fate("task-sent", *runs, unacked=1) == "duplicated"


def test_duplicated_when_it_succeeded_twice() -> None:
    assert fate("task-started", "task-succeeded", "task-succeeded") == "duplicated"


def test_retries_explain_extra_starts() -> None:
    events = ("task-started", "task-retried", "task-started", "task-retried", "task-started", "task-succeeded")
    assert fate(*events) == "succeeded"


def test_a_start_beyond_the_retries_is_a_duplicate() -> None:
    events = ("task-started", "task-retried", "task-started", "task-started", "task-succeeded")
    assert fate(*events) == "duplicated"


def test_lost_when_started_but_gone_and_nothing_unacked() -> None:
    assert fate("task-received", "task-started", unacked=0) == "lost"


def test_lost_when_it_never_ran_and_is_in_no_queue() -> None:
    assert fate_of(sent("t"), None, queued=False, unacked=0) == "lost"


def test_queued_when_its_message_is_ready() -> None:
    assert fate_of(sent("t"), None, queued=True, unacked=0) == "queued"


def test_a_run_that_ended_with_its_message_back_in_the_queue_is_queued_not_succeeded() -> None:
    """acks_late across a broker restart: the first run succeeded while the broker was away, its ack was
    lost, and the message waits again: the task will run again, so 'succeeded' would soon be wrong."""
    ran_once = history("t", "task-received", "task-started", "task-succeeded")
    assert fate_of(sent("t"), ran_once, queued=True, unacked=0) == "queued"
    assert fate_of(sent("t"), ran_once, queued=False, unacked=0) == "succeeded"


def test_judge_calls_an_ended_task_queued_only_when_its_message_is_back_in_the_queue_it_was_sent_to() -> None:
    sent_to_hello = event("task-sent", "t", routing_key="hello_queue")
    ended = history("t", sent_to_hello, event("task-started", "t", at=1.0), event("task-succeeded", "t", at=2.0))
    back = judge({"t": sent("t")}, {"t": ended}, {"t": "hello_queue"})
    assert back.counts()["queued"] == 1 and back.where == {"t": "hello_queue"}
    dead_lettered = judge({"t": sent("t")}, {"t": ended}, {"t": "harness.dead.hello_queue"})
    assert dead_lettered.counts()["succeeded"] == 1, "a message kept in a dead-letter queue does not run again"


def test_a_known_duplicate_stays_duplicated_even_when_queued_again() -> None:
    twice = history("t", "task-started", "task-succeeded", "task-started", "task-succeeded")
    assert fate_of(sent("t"), twice, queued=True, unacked=0) == "duplicated"


def test_queued_wins_over_an_unknown_unacked_count() -> None:
    assert fate_of(sent("t"), None, queued=True, unacked=None) == "queued"


@pytest.mark.parametrize("unacked", [None, 1, 5])
def test_unsettled_when_the_broker_may_still_hold_it(unacked: int | None) -> None:
    assert fate("task-started", unacked=unacked) == "unsettled"


def test_a_task_a_live_worker_holds_is_unsettled_in_flight_not_lost() -> None:
    # Early acknowledgement: a running task's message is acked, so RabbitMQ counts nothing for it; the worker
    # process that received it still runs: the task is in flight, whatever the count says.
    running = {"t": history("t", "task-received", "task-started")}
    verdict = judge({"t": sent("t")}, running, unacked=0, held={"t": "worker_hello"})
    assert verdict.ids("unsettled") == ["t"]
    assert verdict.reasons["t"] == "in flight: worker_hello received it and still runs; no end of it yet"
    assert judge({"t": sent("t")}, running, unacked=0).ids("lost") == ["t"]  # the process that received it is gone


def test_holding_changes_nothing_for_an_ended_or_queued_task() -> None:
    done = {"t": history("t", "task-received", "task-started", "task-succeeded")}
    assert judge({"t": sent("t")}, done, held={"t": "worker_hello"}).ids("succeeded") == ["t"]
    back = {"t": history("t", "task-received", "task-started")}
    assert judge({"t": sent("t")}, back, queued={"t": "q"}, held={"t": "worker_hello"}).ids("queued") == ["t"]


def test_unexpected_when_it_ran_but_was_never_sent() -> None:
    assert fate_of(None, history("x", "task-started", "task-succeeded"), False, 0) == "unexpected"


def test_recovered_when_the_send_errored_yet_it_ran() -> None:
    assert fate("task-started", "task-succeeded", ok=False) == "recovered"


def test_unsent_when_the_send_errored_and_it_never_ran() -> None:
    assert fate_of(sent("t", ok=False), None, queued=False, unacked=0) == "unsent"
    assert fate("task-sent", ok=False) == "unsent"


# -- rejections that requeue -----------------------------------------------------------------


def test_a_requeueing_rejection_is_not_terminal() -> None:
    rejected = event("task-rejected", at=1.0, requeue=True)
    h = history("t", "task-started", rejected)
    assert h.terminal is None
    assert h.exception_type is None
    assert fate_of(sent("t"), h, queued=True, unacked=0) == "queued"
    assert fate_of(sent("t"), h, queued=False, unacked=1) == "unsettled"


def test_a_rejection_for_good_is_terminal_and_named_rejected() -> None:
    rejected = event("task-rejected", host="w2", at=1.0, requeue=False)
    h = history("t", "task-received", rejected)
    assert h.terminal == rejected
    assert h.exception_type == "Rejected"
    assert h.finished_by == "w2"


def test_the_terminal_event_is_the_last_one_that_ends_the_task() -> None:
    h = history(
        "t",
        event("task-failed", at=1.0, exception="KeyError('k')"),
        event("task-rejected", at=2.0, requeue=True),
        event("task-revoked", host="w3", at=3.0),
    )
    assert h.terminal is not None and h.terminal.type == "task-revoked"
    assert h.exception_type == "Revoked"


# -- exception types -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("TypeError('x')", "TypeError"),
        ("  KeyError('k')", "KeyError"),
        ("celery.exceptions.TimeLimitExceeded(60.0,)", "celery.exceptions.TimeLimitExceeded"),
        ("WorkerLostError: Worker exited prematurely: signal 9 (SIGKILL)", "WorkerLostError"),
        ("something odd", "something odd"),
        (": no name", None),
        ("", None),
        (None, None),
    ],
)
def test_exception_type(text: str | None, expected: str | None) -> None:
    assert exception_type(text) == expected


def test_history_exception_type_comes_from_the_terminal_event() -> None:
    h = history("t", "task-started", event("task-failed", at=1.0, exception="ZeroDivisionError('x')"))
    assert h.exception_type == "ZeroDivisionError"


WRAPPED_TRACEBACK = """Traceback (most recent call last):
  File "/app/celery/app/trace.py", line 479, in trace_task
    R = retval = fun(*args, **kwargs)
  File "/app/shop/tasks.py", line 9, in charge
    raise ValueError("bad input")
ValueError: bad input
"""


def test_a_failure_reported_through_billiards_wrapper_is_shown_by_its_real_type_and_message() -> None:
    """Celery's task-failed event carries ``ExceptionWithTraceback()`` when the worker's main process reports
    the failure: the error shown is the cause, ``ValueError: bad input``, read from the traceback beside it."""
    failed = event("task-failed", "f", "w1", 0.25, exception="ExceptionWithTraceback()", traceback=WRAPPED_TRACEBACK)
    h = history("f", "task-started", failed)
    assert (failed.error, failed.exception_type, h.error) == (
        "ValueError: bad input",
        "ValueError",
        "ValueError: bad input",
    )
    assert "task-failed @w1 ValueError: bad input [events]" in h.describe()
    assert "ExceptionWithTraceback" not in judge({"f": sent("f")}, {"f": h}).explain()


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"exception": "ValueError('bad input')"}, "ValueError: bad input"),  # the event's repr, no traceback
        ({"exception": "KeyError('k')", "error_type": "KeyError", "error_message": "'k'"}, "KeyError: 'k'"),  # journal
        (
            {"exception": "ExceptionWithTraceback()", "error_type": "OSError", "error_message": "[Errno 5] io"},
            "OSError: [Errno 5] io",
        ),
        ({"exception": "celery.exceptions.TimeLimitExceeded(1.5,)"}, "TimeLimitExceeded: 1.5"),
        ({"exception": "Ignore()"}, "Ignore"),
        ({"exception": "ExceptionWithTraceback()"}, "ExceptionWithTraceback()"),  # nothing better was seen
        ({"exception": "cancelled by Celery"}, "cancelled by Celery"),
        (
            {"traceback": "Traceback ...\nbilliard.exceptions.WorkerLostError: Worker exited prematurely: signal 9"},
            "WorkerLostError: Worker exited prematurely: signal 9",
        ),
        ({"traceback": "Traceback ...\nValueError: line one\nline two\n"}, "ValueError: line one\nline two"),
        ({}, None),
    ],
)
def test_a_steps_error_is_type_and_message_from_the_best_witness(fields: dict, error: str | None) -> None:
    assert event("task-failed", **fields).error == error


# -- a whole verdict -------------------------------------------------------------------------


@pytest.fixture
def verdict() -> Verdict:
    """One task of every fate, plus a task-sent event from some other producer."""
    histories = {
        "ok": history("ok", "task-started", "task-succeeded", host="w1"),
        "bad": history("bad", "task-started", event("task-failed", "bad", "w2", 1.0, exception="OSError(5)")),
        "dup": history("dup", "task-started", "task-started", "task-succeeded", host="w2"),
        "gone": history("gone", "task-received", "task-started", host="w1"),
        "stray": history("stray", "task-started", "task-succeeded", host="w3"),
        "back": history("back", "task-started", "task-succeeded", host="w1"),
        "foreign": history("foreign", "task-sent"),
    }
    sends = {i: sent(i) for i in ("ok", "bad", "dup", "gone", "waiting", "limbo")}
    sends |= {i: sent(i, ok=False) for i in ("back", "never")}
    # "limbo" would be unsettled only with unacked messages; here the broker has none, so it is lost.
    return judge(sends, histories, queued=["waiting"], unacked=0)


def test_judge_gives_each_id_one_fate(verdict: Verdict) -> None:
    assert {fate: verdict.ids(fate) for fate in FATES if verdict.ids(fate)} == {
        "succeeded": ["ok"],
        "failed": ["bad"],
        "duplicated": ["dup"],
        "lost": ["gone", "limbo"],
        "queued": ["waiting"],
        "unexpected": ["stray"],
        "recovered": ["back"],
        "unsent": ["never"],
    }


def test_a_sent_event_from_another_producer_is_not_judged(verdict: Verdict) -> None:
    assert all("foreign" not in verdict.ids(fate) for fate in FATES)


def test_counts_sum_to_the_ids_judged(verdict: Verdict) -> None:
    counts = verdict.counts()
    assert list(counts) == list(FATES)
    assert sum(counts.values()) == verdict.total() == 9  # 8 sent + 1 unexpected; "foreign" is not judged
    assert verdict.summary().startswith("9 tasks: succeeded=1, failed=1, duplicated=1, lost=2")


def test_unknown_unacked_count_makes_the_missing_unsettled() -> None:
    v = judge({"a": sent("a"), "b": sent("b")}, {"a": history("a", "task-started")}, unacked=None)
    assert v.ids("unsettled") == ["a", "b"]
    assert v.total() == 2


def test_an_empty_verdict() -> None:
    v = judge({}, {})
    assert v.total() == 0
    assert v.summary() == "0 tasks: none"
    v.assert_counts()


def test_by_worker_counts_who_finished_each_task() -> None:
    histories = {
        "a": history("a", "task-started", "task-succeeded", host="w1"),
        "b": history("b", "task-started", "task-succeeded", host="w2"),
        # started on w1, which died; w2 took the redelivered message and finished it
        "c": history(
            "c",
            event("task-started", "c", "w1"),
            event("task-retried", "c", "w1", 1.0),
            event("task-started", "c", "w2", 2.0),
            event("task-succeeded", "c", "w2", 3.0),
        ),
    }
    v = judge({i: sent(i) for i in histories}, histories)
    assert v.by_worker("succeeded") == Counter({"w2": 2, "w1": 1})
    assert histories["c"].workers == ["w1", "w2"]


def test_by_worker_marks_unfinished_tasks_with_a_question_mark() -> None:
    v = judge({"a": sent("a")}, {"a": history("a", "task-started")}, unacked=0)
    assert v.by_worker("lost") == Counter({"?": 1})


def test_exception_types_of_the_failed(verdict: Verdict) -> None:
    assert verdict.exception_types() == Counter({"OSError": 1})


def test_assert_counts_passes_when_every_count_matches(verdict: Verdict) -> None:
    verdict.assert_counts(succeeded=1, failed=1, duplicated=1, lost=2, queued=1, unexpected=1, recovered=1, unsent=1)


def test_assert_counts_treats_an_unnamed_fate_as_zero(verdict: Verdict) -> None:
    with pytest.raises(AssertionError, match="unsent: expected 0, got 1"):
        verdict.assert_counts(succeeded=1, failed=1, duplicated=1, lost=2, queued=1, unexpected=1, recovered=1)


def test_assert_counts_message_lists_the_ids_and_their_histories() -> None:
    histories = {
        "a1": history("a1", "task-started", "task-succeeded"),
        "a2": history("a2", "task-received", "task-started", host="w9"),
    }
    v = judge({i: sent(i) for i in histories}, histories, unacked=0)
    with pytest.raises(AssertionError) as info:
        v.assert_counts(succeeded=2)
    message = str(info.value)
    assert "succeeded: expected 2, got 1" in message
    assert "lost: expected 0, got 1" in message
    # Each step says which witness saw it.
    assert "a1: +0.000s task-started @w1 [events]; +1.000s task-succeeded @w1 [events]" in message
    assert "a2: +0.000s task-received @w9 [events]; +1.000s task-started @w9 [events]" in message


def test_assert_counts_message_names_the_exception() -> None:
    failed = event("task-failed", "f", "w1", 0.25, exception="TimeoutError('slow')")
    v = judge({"f": sent("f")}, {"f": history("f", "task-started", failed)})
    with pytest.raises(
        AssertionError, match=r"f: \+0\.000s task-started @w1 \[events\]; \+0\.250s task-failed @w1 TimeoutError"
    ):
        v.assert_counts(succeeded=1)


def test_assert_counts_rejects_an_unknown_fate(verdict: Verdict) -> None:
    with pytest.raises(TypeError, match="unknown fates \\['finished'\\]"):
        verdict.assert_counts(finished=1)


def test_explain_caps_each_fate() -> None:
    sends = {f"t{n}": sent(f"t{n}") for n in range(4)}
    v = judge(sends, {}, unacked=0)
    lines = v.explain(limit=2).splitlines()
    assert len(lines) == 3
    assert lines[0].split() == ["lost", "t0:", "no", "events"]
    assert lines[2].split() == ["lost", "...", "and", "2", "more"]


# -- tasks that tasks send ---------------------------------------------------------------------


def test_a_task_sent_by_a_task_is_judged_as_a_child_not_as_unexpected() -> None:
    parent = history("p", "task-started", "task-succeeded")
    receipt_sent = event("task-sent", "r", "worker@h", 0.5, parent_id="p", name="receipt")
    child = history("r", receipt_sent, "task-started", "task-succeeded")
    verdict = judge({"p": sent("p")}, {"p": parent, "r": child})
    verdict.assert_counts(succeeded=1)
    verdict.children.assert_counts(succeeded=1)


def test_a_lost_child_is_reported_lost_among_the_children() -> None:
    parent = history("p", "task-started", "task-succeeded")
    child = history("r", event("task-sent", "r", "worker@h", 0.5, parent_id="p"))
    verdict = judge({"p": sent("p")}, {"p": parent, "r": child}, unacked=0)
    verdict.assert_counts(succeeded=1)
    verdict.children.assert_counts(lost=1)


def test_a_task_nobody_was_seen_sending_is_still_unexpected() -> None:
    stray = history("s", "task-started", "task-succeeded")
    judge({}, {"s": stray}).assert_counts(unexpected=1)


# -- acknowledgements in doubt: more unacknowledged messages than tasks in flight ------------------


def judged_with(unacked: int | None, cut: bool = True) -> Verdict:
    """Two tasks ended, one running; the broker counts ``unacked`` unacknowledged messages; ``cut``: a network
    fault cut a connection."""
    histories = {
        "a": history("a", "task-received", "task-started", "task-succeeded"),
        "b": history("b", "task-received", "task-started", "task-failed"),
        "c": history("c", "task-received", "task-started"),
    }
    return judge({i: sent(i) for i in histories}, histories, unacked=unacked, connections_cut=cut)


def test_ended_tasks_are_unsettled_while_the_broker_holds_more_unacked_messages_than_tasks_in_flight() -> None:
    # A blackout: a worker's early acks went into a dead connection; RabbitMQ holds those messages until it
    # drops that connection, then delivers them again (seen: 4 of 20 ran twice, 22 s after the verdict).
    verdict = judged_with(unacked=3)
    assert verdict.counts() == {**dict.fromkeys(FATES, 0), "unsettled": 3}
    assert "3 unacknowledged message(s) and only 1 task(s) are in flight" in verdict.doubt
    assert verdict.reasons["a"].startswith("would be succeeded, but RabbitMQ holds 3")
    assert verdict.reasons["b"].startswith("would be failed, but")
    assert "c" not in verdict.reasons  # unsettled anyway: it never ended
    assert "would be succeeded" in verdict.explain(["unsettled"])


def test_without_a_cut_connection_a_count_above_the_tasks_in_flight_is_lagging_statistics() -> None:
    # Measured: after a drain the management API kept counting 4 unacknowledged for seconds (an idle queue).
    verdict = judged_with(unacked=4, cut=False)
    assert (verdict.count("succeeded"), verdict.count("failed"), verdict.doubt) == (1, 1, "")


@pytest.mark.parametrize("unacked", [0, 1, None])
def test_ended_tasks_keep_their_fates_when_the_unacked_count_is_explained_or_unknown(unacked: int | None) -> None:
    verdict = judged_with(unacked=unacked)
    assert (verdict.count("succeeded"), verdict.count("failed"), verdict.doubt) == (1, 1, "")


def test_a_task_back_in_its_queue_is_not_in_flight() -> None:
    histories = {"a": history("a", "task-received", "task-started", "task-succeeded"), "q": history("q", "task-sent")}
    verdict = judge({i: sent(i) for i in histories}, histories, queued={"q": "hello_queue"}, unacked=1,
                    connections_cut=True)  # fmt: skip
    assert verdict.count("unsettled") == 1 and verdict.reasons["a"].startswith("would be succeeded")


def test_printing_a_verdict_gives_its_counts_then_each_tasks_fate_and_history() -> None:
    verdict = judge({"a": sent("a"), "b": sent("b")}, {"a": history("a", "task-started", "task-succeeded")})
    text = str(verdict)
    assert text.splitlines()[0] == "2 tasks: succeeded=1, lost=1"
    assert any(line.split()[:2] == ["succeeded", "a:"] for line in text.splitlines()[1:])
    assert any(line.split()[:2] == ["lost", "b:"] for line in text.splitlines()[1:])
    assert repr(verdict) == "<Verdict 2 tasks: succeeded=1, lost=1>"


def test_a_task_back_in_its_queue_while_its_first_run_goes_on_is_queued_saying_so() -> None:
    # acks_late, the worker's connection reset: RabbitMQ requeues the message at once, the run goes on.
    running = {"t": history("t", "task-received", "task-started")}
    verdict = judge({"t": sent("t")}, running, queued={"t": "hello_queue"}, held={"t": "worker_hello"})
    assert verdict.ids("queued") == ["t"]
    assert verdict.reasons["t"] == "back in hello_queue while worker_hello still runs it: it will run again"


def test_children_is_an_empty_verdict_when_no_task_sent_one() -> None:
    verdict = judge({"t": sent("t")}, {"t": history("t", "task-started", "task-succeeded")})
    assert verdict.children is not None and verdict.children.summary() == "0 tasks: none"
    with pytest.raises(AssertionError):
        verdict.children.assert_counts(succeeded=1)


# -- a broker that says whose each unacknowledged message is (Redis's unacked hash) -------------------


def test_a_task_whose_message_sits_in_the_unacked_hash_is_unsettled_not_lost() -> None:
    """A worker killed while it held a prefetched task: no end, not ready in a queue, but Redis keeps its message
    unacknowledged and puts it back once visibility_timeout passes."""
    histories = {"a": history("a", "task-received"), "b": history("b", "task-received", "task-started")}
    verdict = judge({"a": sent("a"), "b": sent("b")}, histories, unacked=1, unacked_ids={"a": "hello_queue"})
    assert verdict.ids("unsettled") == ["a"]
    assert verdict.ids("lost") == ["b"]
    assert "goes back to hello_queue once visibility_timeout passes" in verdict.reasons["a"]


def test_an_ended_task_still_unacknowledged_will_run_again_so_it_is_unsettled() -> None:
    histories = {"a": history("a", "task-received", "task-started", "task-succeeded")}
    verdict = judge({"a": sent("a")}, histories, unacked=1, unacked_ids={"a": "hello_queue"})
    assert verdict.counts()["unsettled"] == 1
    assert verdict.reasons["a"].startswith("would be succeeded, but its message is unacknowledged")


def test_queued_in_a_redis_list_stays_queued() -> None:
    verdict = judge({"a": sent("a")}, {}, queued={"a": "hello_queue"}, unacked=0, unacked_ids={})
    assert verdict.ids("queued") == ["a"]


def test_without_the_unacked_ids_the_same_task_is_lost() -> None:
    """The test above fails without the per-message reading: the count alone (0 here) calls it lost."""
    histories = {"a": history("a", "task-received")}
    assert judge({"a": sent("a")}, histories, unacked=0).ids("lost") == ["a"]
    assert judge({"a": sent("a")}, histories, unacked=0, unacked_ids={"a": "q"}).ids("unsettled") == ["a"]
