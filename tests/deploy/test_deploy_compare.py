"""Two versions compared from what introspection reports (pure logic: no process, no broker)."""

from __future__ import annotations

from typing import Any

import pytest

from harness.deploy.compare import (
    BREAKS,
    CHANGES,
    NEW_TO_OLD,
    OLD_TO_NEW,
    QUEUED,
    SAFE,
    STRANDED,
    WAITING,
    CallPolicy,
    compare,
    match_renames,
    tasks_of,
)
from harness.deploy.signatures import KEYWORD, POSITIONAL
from harness.errors import HarnessError


def task(params: tuple[str, ...] = ("x",), queue: str = "celery", **info: Any) -> dict[str, Any]:
    return {
        "module": info.pop("module", "proj.tasks"),
        "function": info.pop("function", None),
        "bound": info.pop("bound", False),
        "parameters": [{"name": p, "kind": "positional_or_keyword", "has_default": False} for p in params],
        "options": {"queue": queue, **info.pop("options", {})},
        "queue_by_name": info.pop("queue_by_name", queue),
        "body_hash": info.pop("body_hash", None),
    }


def app(queues: tuple[str, ...] = ("celery",), **tasks: dict[str, Any]) -> dict[str, Any]:
    return {"queues": list(queues), "tasks": tasks}


def test_a_rename_is_found_by_function_then_code_then_lone_parameters():
    base = app(
        a=task(function="a"), b=task(function="b_fn", body_hash="h1"), c=task(("p", "q"), function="c_fn"),
        d=task(("z",), function="d_fn"), e=task(("z",), function="e_fn"),
    )  # fmt: skip
    new = app(
        a2=task(function="a"), b2=task(function="other", body_hash="h1"), c2=task(("p", "q"), function="c2_fn"),
        d2=task(("z",), function="d2_fn"),
    )  # fmt: skip

    found = match_renames(tasks_of(base), tasks_of(new))
    assert {old: new for old, (new, _) in found.items()} == {"a": "a2", "b": "b2", "c": "c2"}
    assert "check it" in found["c"][1]  # the weakest evidence says so
    # d and e have the same parameters as d2: which one was renamed cannot be told, so neither is.
    kinds = {(c.task, c.kind) for c in compare(base, new).changes}
    assert {("d", "removed"), ("e", "removed"), ("d2", "added")} <= kinds


def test_the_route_depends_on_how_producers_send():
    """A task's own queue option is applied by apply_async; a by-name send_task uses task_routes only."""
    base = app(("celery", "reports"), report=task(queue="reports", queue_by_name="celery"))
    new = app(("celery", "analytics"), report=task(queue="analytics", queue_by_name="celery"))

    moved = compare(base, new).change("report", "routing")
    assert (moved.verdicts[OLD_TO_NEW], moved.verdicts[NEW_TO_OLD], moved.verdicts[QUEUED]) == (BREAKS, "waits", BREAKS)
    assert [c.kind for c in compare(base, new, via="send_task").changes] == []


def test_routing_predictions_come_before_names_and_signatures():
    base = app(("celery", "reports"), report=task(queue="reports"))
    new = app(("celery", "analytics"), report=task(("x", "y"), queue="analytics"))

    predicted = {(m.direction, m.predicted.kind, m.predicted.queue) for m in compare(base, new).messages}
    assert (OLD_TO_NEW, STRANDED, "reports") in predicted and (NEW_TO_OLD, WAITING, "analytics") in predicted


def test_a_queue_the_new_workers_still_consume_is_safe():
    base = app(("celery", "reports"), report=task(queue="reports"))
    new = app(("celery", "reports", "analytics"), report=task(queue="analytics"))
    moved = compare(base, new).change("report", "routing")
    assert moved.verdicts[OLD_TO_NEW] == SAFE and moved.verdicts[NEW_TO_OLD] == "waits"


def test_a_time_limit_travels_in_the_message():
    base = app(feed=task(options={"time_limit": 30}))
    new = app(feed=task(options={"time_limit": 120}))
    change = compare(base, new).change("feed", "delivery")
    assert "puts time_limit=30 in the message: the new worker applies it, not its 120" in change.reasons[OLD_TO_NEW]


def test_call_policy():
    policy = CallPolicy.parse(["keyword", "proj.tasks.move=positional", "proj.tasks.add=both"])
    assert policy.of("proj.tasks.move") == (POSITIONAL,)
    assert policy.of("proj.tasks.add") == (POSITIONAL, KEYWORD)
    assert policy.of("anything.else") == (KEYWORD,)
    assert policy.of("renamed.new_name", "proj.tasks.move") == (POSITIONAL,)  # either name of a renamed task
    with pytest.raises(HarnessError, match="--calls 'sometimes'"):
        CallPolicy.parse(["sometimes"])


def test_a_parameter_renamed_in_place_is_named_and_its_values_said_to_land_in_the_new_name():
    """``gravatar_cache(person_id)`` became ``gravatar_cache(profile_picture_id)`` (pretalx's history): called
    positionally it runs both ways, but the ids queued as person ids are now read as profile picture ids."""
    base = app(**{"person.tasks.gravatar_cache": task(("person_id",))})
    new = app(**{"person.tasks.gravatar_cache": task(("profile_picture_id",))})

    [change] = compare(base, new, CallPolicy.parse(["positional"])).changes
    assert change.detail == "`person_id` renamed `profile_picture_id` in place (position 1)"
    assert change.verdicts == {OLD_TO_NEW: CHANGES, NEW_TO_OLD: CHANGES, QUEUED: CHANGES}
    assert "positional callers' values for `person_id` now land in `profile_picture_id`" in change.reasons[OLD_TO_NEW]
    # Called with keywords, the old name is not taken at all.
    [keyword] = compare(base, new, CallPolicy.parse(["keyword"])).changes
    assert keyword.verdicts[OLD_TO_NEW] == BREAKS


def test_a_keyword_only_tasks_calls_are_labelled_keyword_calls_whatever_the_convention():
    """``export(*, event_id, make_zip=True)`` became ``export(*, event_id, cached_file_id=None)``: a producer
    can only call it with keywords, so no reason may call its call positional."""

    def exported(*names: str) -> dict[str, Any]:
        made = task(())
        made["parameters"] = [
            {"name": "event_id", "kind": "keyword_only", "has_default": False},
            *({"name": n, "kind": "keyword_only", "has_default": True, "default": d} for n, d in names),
        ]
        return made

    base = app(**{"agenda.tasks.export": exported(("make_zip", "True"))})
    new = app(**{"agenda.tasks.export": exported(("cached_file_id", "None"))})
    [change] = compare(base, new, CallPolicy.parse(["positional"])).changes
    assert change.verdicts[OLD_TO_NEW] == BREAKS  # make_zip=… is not taken by the new worker
    assert "(keyword call)" in change.reasons[OLD_TO_NEW] and "(positional" not in change.reasons[OLD_TO_NEW]


def test_the_retry_options_a_worker_runs_a_task_under_are_compared():
    """wger gave a task autoretry_for and a backoff: "no task changed" said nothing of it."""
    base = app(sync=task(options={"autoretry_for": [], "retry_backoff": False}))
    new = app(sync=task(options={"autoretry_for": ["requests.exceptions.RequestException"], "retry_backoff": True}))
    changes = {c.detail.split()[0]: c for c in compare(base, new).changes}
    assert set(changes) == {"autoretry_for", "retry_backoff"}
    assert changes["retry_backoff"].verdicts == {OLD_TO_NEW: CHANGES, NEW_TO_OLD: SAFE, QUEUED: CHANGES}
