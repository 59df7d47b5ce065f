"""What the harness writes on pytest's terminal, past its output capture: notices and live progress.

A notice always starts on a line of its own (never inside pytest's progress line of dots). Long waits
show their progress on one line rewritten in place, on terminals only (``--harness-progress``).
"""

from __future__ import annotations

from collections.abc import Callable

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


def notice(config: pytest.Config, text: str, **markup: bool) -> None:
    """One line of its own: the progress line of dots is ended first, and goes on below it."""

    def write(reporter) -> None:
        reporter.ensure_newline()
        reporter.write_line(text, **markup)

    to_terminal(config, write)


class TerminalProgress:
    """Shows a long wait's progress on a line of its own, rewritten in place (terminals only)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.active = False

    def __call__(self, text: str, final: bool) -> None:
        to_terminal(self.config, lambda reporter: self._show(reporter, text, final))

    def _show(self, reporter, text: str, final: bool) -> None:
        if not self.active:
            reporter.ensure_newline()
            self.active = True
        reporter.rewrite(f"  harness: {text}", light=not final)
        if final:
            reporter.write("\n")
            self.active = False
