"""What the harness writes on pytest's terminal, past its output capture: notices and live progress.

A notice always starts on a line of its own (never inside pytest's progress line of dots). Long waits
show their progress on one line rewritten in place, on terminals only (``--harness-progress``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest


def to_terminal(config: pytest.Config, write: Callable) -> None:
    """Write to the terminal from inside a test, past pytest's output capture."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    if capture is None:
        write(reporter)
        return
    with capture.global_and_fixture_disabled():
        write(reporter)


def start_line(reporter) -> Callable[[], None]:
    """End pytest's progress line if anything is on it; returns how to resume it below (its file name again, so
    the test's result does not land on a line of its own). ``ensure_newline`` knows only the line that starts
    with a file name: under ``-q`` the dots stand alone, and only the writer knows where it is."""
    path = reporter.currentfspath if isinstance(reporter.currentfspath, Path) else None
    reporter.ensure_newline()
    writer = getattr(reporter, "_tw", None)
    if writer is not None and getattr(writer, "width_of_current_line", 0):
        writer.line()

    def resume() -> None:
        if path is not None and writer is not None and reporter.currentfspath is None:
            writer.write(os.path.relpath(path, reporter.startpath) + " ")
            reporter.currentfspath = path

    return resume


def notice(config: pytest.Config, text: str, **markup: bool) -> None:
    """One line of its own: pytest's progress line is ended first, and goes on below it."""

    def write(reporter) -> None:
        resume = start_line(reporter)
        reporter.write_line(text, **markup)
        resume()

    to_terminal(config, write)


class TerminalProgress:
    """Shows a long wait's progress on a line of its own, rewritten in place (terminals only)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.active = False
        self.resume: Callable[[], None] = lambda: None

    def __call__(self, text: str, final: bool) -> None:
        to_terminal(self.config, lambda reporter: self._show(reporter, text, final))

    def _show(self, reporter, text: str, final: bool) -> None:
        if not self.active:
            self.resume = start_line(reporter)
            self.active = True
        reporter.rewrite(f"  harness: {text}", light=not final)
        if final:
            reporter.write("\n")
            self.active = False
            self.resume()
