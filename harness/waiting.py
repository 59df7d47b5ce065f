"""Waiting for conditions: ``eventually`` something holds, something ``never`` happens.

Both sit on tenacity and poll at a short fixed interval (50 ms by default): every observation is
cheap (an in-process ledger, a passive queue declare), and a short interval keeps scenarios fast
without the 1-second granularity that makes waits slow and coarse.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from tenacity import RetryError, Retrying, retry_if_exception, retry_if_result, stop_after_delay, wait_fixed

from harness.errors import HarnessError

T = TypeVar("T")

DEFAULT_INTERVAL = 0.05
PROGRESS_AFTER_S = 1.0  # a wait shows its progress once it has lasted this long

# Where long waits report progress (the pytest plugin points it at the terminal); called with the
# text and whether the wait is over.
ProgressSink = Callable[[str, bool], None]
_progress_sink: ProgressSink | None = None


def set_progress_sink(sink: ProgressSink | None) -> None:
    global _progress_sink
    _progress_sink = sink


def progress_shown() -> bool:
    return _progress_sink is not None


class WaitTimeout(AssertionError):
    """A condition did not hold within its bound."""


@dataclass
class _Last:
    value: Any = None
    error: BaseException | None = None
    calls: int = 0


class _Progress:
    """Reports ``what: <progress(value)>`` to the sink while a wait lasts, each change once."""

    def __init__(self, what: str, describe: Callable[[Any], str] | None) -> None:
        self.what, self.describe = what, describe
        self.started = time.monotonic()
        self.shown = ""

    def update(self, value: Any) -> None:
        if self.describe is None or _progress_sink is None:
            return
        if time.monotonic() - self.started < PROGRESS_AFTER_S:
            return
        text = f"{self.what}: {self.describe(value)}"
        if text != self.shown:
            _progress_sink(text, False)
            self.shown = text

    def finish(self, outcome: str) -> None:
        if self.shown and _progress_sink is not None:
            _progress_sink(f"{self.what}: {outcome} after {time.monotonic() - self.started:.1f}s", True)


def _observe(probe: Callable[[], T], last: _Last, progress: _Progress | None = None) -> Callable[[], T]:
    def call() -> T:
        last.calls += 1
        try:
            value = probe()
        except Exception as exc:
            last.error = exc
            raise
        last.value, last.error = value, None
        if progress is not None:
            progress.update(value)
        return value

    return call


def _retryable(exc: BaseException) -> bool:
    # A HarnessError (a worker crashed while we waited for it, say) will not go away by waiting, and
    # Ctrl-C (KeyboardInterrupt, a BaseException that tenacity would catch too) must stop the run.
    return isinstance(exc, Exception) and not isinstance(exc, HarnessError)


def eventually(
    probe: Callable[[], T],
    *,
    until: Callable[[T], bool] = bool,
    timeout: float,
    what: str,
    interval: float = DEFAULT_INTERVAL,
    progress: Callable[[T], str] | None = None,
) -> T:
    """Call ``probe`` until ``until(value)`` holds, and return that value.

    Raises WaitTimeout naming ``what`` was awaited, for how long, and the last value (or error) seen.
    Exceptions from the probe are retried, except HarnessError, which propagates at once.
    ``progress`` turns a value into a short status ("12/20 ended") shown while a long wait lasts.
    """
    last = _Last()
    shown = _Progress(what, progress)
    started = time.monotonic()
    retrying = Retrying(
        stop=stop_after_delay(timeout),
        wait=wait_fixed(interval),
        retry=retry_if_result(lambda value: not until(value)) | retry_if_exception(_retryable),
        reraise=False,
    )
    try:
        value = retrying(_observe(probe, last, shown))
    except RetryError:
        shown.finish("gave up")
        elapsed = time.monotonic() - started
        if last.error is not None:
            seen = f"error {last.error!r}"
        else:  # the wait's own description of what it saw ("3 not ended: ..."), else the value itself
            seen = progress(last.value) if progress is not None and last.calls else repr(last.value)
        raise WaitTimeout(
            f"gave up waiting for {what} after {elapsed:.1f}s ({last.calls} checks); last seen: {seen}"
        ) from None
    except BaseException:
        shown.finish("interrupted")
        raise
    shown.finish("done")
    return value


def never(
    probe: Callable[[], T],
    *,
    until: Callable[[T], bool] = bool,
    for_: float,
    what: str,
    interval: float = DEFAULT_INTERVAL,
) -> int:
    """Watch ``probe`` for ``for_`` seconds and fail as soon as ``until(value)`` holds.

    ``what`` describes the thing that must not happen. Returns how many observations were made,
    so a caller can report how closely it watched.
    """
    last = _Last()
    started = time.monotonic()
    retrying = Retrying(
        stop=stop_after_delay(for_),
        wait=wait_fixed(interval),
        retry=retry_if_result(lambda value: not until(value)),
        reraise=True,
    )
    try:
        value = retrying(_observe(probe, last))
    except RetryError:
        return last.calls
    elapsed = time.monotonic() - started
    raise AssertionError(
        f"{what}: it happened after {elapsed:.2f}s of a {for_:.1f}s watch "
        f"(observation {last.calls}); value seen: {value!r}"
    )
