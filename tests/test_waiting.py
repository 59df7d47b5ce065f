"""harness.waiting: ``eventually`` and ``never``, with windows of a fraction of a second."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator

import pytest

from harness.errors import HarnessError
from harness.waiting import WaitTimeout, eventually, never

WINDOW = 0.1
INTERVAL = 0.02


def counter() -> Callable[[], int]:
    """A probe returning 1, 2, 3, ... on successive calls."""
    calls: Iterator[int] = iter(range(1, 1_000_000))
    return lambda: next(calls)


def seconds_in(message: str, pattern: str) -> float:
    match = re.search(pattern, message)
    assert match, f"{pattern!r} not in {message!r}"
    return float(match[1])


# -- eventually ------------------------------------------------------------------------------


def test_eventually_returns_the_value_that_satisfied_the_condition() -> None:
    assert eventually(counter(), until=lambda n: n >= 3, timeout=1, what="three", interval=INTERVAL) == 3


def test_eventually_by_default_waits_for_a_truthy_value() -> None:
    values = iter([0, [], "", {"depth": 2}])
    assert eventually(lambda: next(values), timeout=1, what="a depth", interval=INTERVAL) == {"depth": 2}


def test_eventually_retries_a_probe_that_raises() -> None:
    outcomes: Iterator[int | Exception] = iter([ConnectionError("refused"), OSError("reset"), 42])

    def probe() -> int:
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert eventually(probe, timeout=1, what="an answer", interval=INTERVAL) == 42


def test_eventually_times_out_naming_what_how_long_and_the_last_value() -> None:
    calls = 0

    def probe() -> dict[str, int]:
        nonlocal calls
        calls += 1
        return {"depth": 7}

    started = time.monotonic()
    with pytest.raises(WaitTimeout) as info:
        eventually(probe, until=lambda v: v["depth"] == 0, timeout=WINDOW, what="the queue to drain", interval=INTERVAL)
    elapsed = time.monotonic() - started
    message = str(info.value)
    assert isinstance(info.value, AssertionError)  # pytest reports it as a plain failure
    assert message.startswith("gave up waiting for the queue to drain after ")
    assert WINDOW - 0.05 <= seconds_in(message, r"after (\d+\.\d)s") <= elapsed + 0.05
    assert f"({calls} checks)" in message and calls >= 3
    assert message.endswith("last seen: {'depth': 7}")
    assert WINDOW <= elapsed < WINDOW + 0.5


def test_eventually_times_out_reporting_the_last_error() -> None:
    def probe() -> int:
        raise ConnectionError("refused")

    with pytest.raises(WaitTimeout, match=r"last seen: error ConnectionError\('refused'\)$"):
        eventually(probe, timeout=WINDOW, what="the broker", interval=INTERVAL)


def test_eventually_reports_the_last_value_after_an_earlier_error() -> None:
    outcomes: Iterator[int | Exception] = iter([ConnectionError("refused"), *[0] * 1000])

    def probe() -> int:
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    with pytest.raises(WaitTimeout, match=r"last seen: 0$"):
        eventually(probe, timeout=WINDOW, what="a message", interval=INTERVAL)


def test_a_harness_error_propagates_at_once() -> None:
    calls = 0

    def probe() -> int:
        nonlocal calls
        calls += 1
        raise HarnessError("worker w1 exited with code 1")

    started = time.monotonic()
    with pytest.raises(HarnessError, match="worker w1 exited"):
        eventually(probe, timeout=5, what="the worker", interval=INTERVAL)
    assert calls == 1
    assert time.monotonic() - started < 0.5  # far from the 5 s window


# -- never -----------------------------------------------------------------------------------


def test_never_returns_how_many_observations_it_made_over_the_window() -> None:
    calls = 0

    def probe() -> bool:
        nonlocal calls
        calls += 1
        return False

    started = time.monotonic()
    observations = never(probe, for_=WINDOW, what="a duplicate", interval=INTERVAL)
    elapsed = time.monotonic() - started
    assert observations == calls
    assert observations >= 3
    assert WINDOW <= elapsed < WINDOW + 0.5


def test_never_fails_as_soon_as_the_condition_holds() -> None:
    started = time.monotonic()
    with pytest.raises(AssertionError) as info:
        never(counter(), until=lambda n: n >= 3, for_=5, what="a second delivery", interval=INTERVAL)
    elapsed = time.monotonic() - started
    message = str(info.value)
    assert elapsed < 1
    assert message.startswith("a second delivery: it happened after ")
    assert seconds_in(message, r"after (\d+\.\d\d)s") <= elapsed + 0.005  # rounded to 0.01 s
    assert "of a 5.0s watch (observation 3); value seen: 3" in message


def test_never_fails_on_the_first_observation_if_it_already_happened() -> None:
    with pytest.raises(AssertionError, match=r"\(observation 1\); value seen: \['dup'\]$"):
        never(lambda: ["dup"], for_=5, what="duplicates", interval=INTERVAL)


def test_never_lets_a_probe_error_through_without_waiting() -> None:
    def probe() -> bool:
        raise ConnectionError("refused")

    started = time.monotonic()
    with pytest.raises(ConnectionError, match="refused"):
        never(probe, for_=5, what="a redelivery", interval=INTERVAL)
    assert time.monotonic() - started < 0.5  # far from the 5 s window


def test_ctrl_c_in_a_probe_stops_eventually_at_once() -> None:
    calls = 0

    def probe() -> bool:
        nonlocal calls
        calls += 1
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        eventually(probe, timeout=5, what="never")
    assert calls == 1
