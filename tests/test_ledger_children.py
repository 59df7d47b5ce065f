"""Ledger.wait_settled with children: a child whose publish raised is settled (it will never run)."""

from __future__ import annotations

import pytest

from harness.ledger import Ledger
from harness.verdict import TaskEvent, TaskHistory
from harness.waiting import WaitTimeout

JOURNAL = frozenset({"journal"})


def step(type_: str, task_id: str, at: float, **fields: object) -> TaskEvent:
    return TaskEvent(type_, task_id, "w1", at, at, fields, JOURNAL)


def ledger_with(histories: dict[str, TaskHistory]) -> Ledger:
    """A ledger that is never started, whose witnesses' merged histories are ``histories``."""
    ledger = Ledger("amqp://guest:guest@127.0.0.1:1//")
    ledger.histories = lambda: histories  # type: ignore[method-assign]
    ledger.sends = lambda: {}  # type: ignore[method-assign]
    return ledger


def parent(*ending: str) -> TaskHistory:
    return TaskHistory("parent", [step("task-started", "parent", 0.0), *(step(t, "parent", 2.0) for t in ending)])


def child(*steps: str) -> TaskHistory:
    return TaskHistory(
        "child", [step("task-sent", "child", 1.0, parent_id="parent"), *(step(s, "child", 1.1) for s in steps)]
    )


def test_a_child_whose_publish_raised_is_settled_once_its_parent_has_ended() -> None:
    ledger = ledger_with({"parent": parent("task-failed"), "child": child()})
    ledger.wait_settled([], timeout=0.5, children=True)  # returns: nothing left to wait for


def test_a_child_whose_parent_still_runs_may_yet_be_published() -> None:
    ledger = ledger_with({"parent": parent(), "child": child()})
    with pytest.raises(WaitTimeout, match="children included"):
        ledger.wait_settled([], timeout=0.3, children=True)


def test_a_published_child_is_waited_for_until_it_ends() -> None:
    ledger = ledger_with({"parent": parent("task-succeeded"), "child": child("task-published")})
    with pytest.raises(WaitTimeout, match="1 not ended: child"):
        ledger.wait_settled([], timeout=0.3, children=True)
