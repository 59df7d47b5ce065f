"""harness.audit.expect: what a team accepts, parsed from the option or the ini table."""

from __future__ import annotations

import pytest

from harness.audit.expect import parse
from harness.errors import HarnessError

FAILURES = ("worker_killed", "bad_message")


def test_limits_everywhere_and_per_failure() -> None:
    expect = parse("lost=0, duplicated=0\nbad_message: lost=1\n# a comment\n", FAILURES)
    assert expect.limits("worker_killed") == {"lost": 0, "duplicated": 0}
    assert expect.limits("bad_message") == {"lost": 1, "duplicated": 0}
    assert expect.exceeded("worker_killed", {"succeeded": 3, "lost": 1}) == ["lost=1 > 0"]
    assert expect.exceeded("bad_message", {"succeeded": 5, "lost": 1, "failed": 1}) == []
    assert expect.describe() == "lost=0, duplicated=0, bad_message:lost=1"


def test_nothing_expected_accepts_everything() -> None:
    assert parse(None, FAILURES).exceeded("worker_killed", {"lost": 4}) == []


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("lost", "is not fate=N or failure:fate=N"),
        ("gone=0", "'gone' is not a fate"),
        ("worker_kiled:lost=0", "no failure 'worker_kiled'; failures: bad_message, worker_killed"),
    ],
)
def test_a_bad_expectation_is_one_sentence(text: str, says: str) -> None:
    with pytest.raises(HarnessError, match=says):
        parse(text, FAILURES)
