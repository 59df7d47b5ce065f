"""``--keep-on-failure``: when a scenario fails, its stack stays up for a person to look at.

The failed scenario's vhost, web app and workers are left running after its body, and the same screen as
``harness up`` is printed (``harness.screen``: the page, the management UI, the commands, with a state file so
that ``harness ctl`` works on it), followed by the failing verdict. The scenario's teardown waits until
Enter is pressed in pytest's terminal (or Ctrl-C ends the run). With ``--pdb``, the screen comes first, then
the debugger, then the wait; the stack is up throughout.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from harness import screen
from harness.errors import HarnessError
from harness.stack import AppStack
from harness.state import StackState, default_path
from harness.terminal import notice


def state_path_for(config: pytest.Config) -> Path:
    """The default state file (in the rootdir), unless a live stack holds it: then one of this run's own."""
    path = default_path(config.rootpath)
    if path.exists():
        try:
            taken = StackState.read(path).alive
        except HarnessError:
            taken = True  # unreadable: not ours to overwrite
        if taken:
            return path.with_name(f"{path.stem}-{os.getpid()}.json")
    return path


def wait_for_enter(config: pytest.Config) -> str:
    """Read a line from the terminal pytest runs in, past its capture of stdin; '' if stdin is closed."""
    capture = config.pluginmanager.get_plugin("capturemanager")
    if capture is not None:
        capture.suspend_global_capture(in_=True)
    try:
        return sys.stdin.readline()
    except (OSError, ValueError):  # no usable stdin
        return ""
    finally:
        if capture is not None:
            capture.resume_global_capture()


class KeepOnFailure:
    """The plugin, registered by ``harness.plugin`` when ``--keep-on-failure`` is on."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.kept: dict[str, Path] = {}

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        report = yield
        stack = getattr(item, "funcargs", {}).get("stack")
        if report.when == "call" and report.failed and isinstance(stack, AppStack) and stack.supervisor.running:
            try:
                self.keep(item, report, stack)
            except Exception as exc:  # the stack may be what broke: the failure itself matters more
                notice(self.config, f"harness: --keep-on-failure could not keep the stack up: {exc!r}", red=True)
        return report

    def keep(self, item: pytest.Item, report: pytest.TestReport, stack: AppStack) -> None:
        path = state_path_for(self.config)
        state = StackState.of(
            "pytest", item.nodeid, stack, stack.vhost.broker, stack.vhost.queues, work_root=stack.workdir.parent
        )
        state.write(path)
        self.kept[item.nodeid] = path
        crash = getattr(report.longrepr, "reprcrash", None)
        failure = (crash.message if crash is not None else str(report.longrepr).strip()).splitlines()[0]
        verdict = stack.verdict()
        queues = sorted(stack.vhost.queue_names())
        headline = f"harness: {item.nodeid} failed; its stack stays up (--keep-on-failure)"
        text = [
            "",
            screen.render(state, path, queues, headline),
            "",
            f"the failure: {failure}",
            f"the verdict: {verdict.summary()}",
            verdict.explain() or "  (no task was sent)",
            "",
            "The stack stays up until you press Enter here (after leaving the debugger, with --pdb); Ctrl-C ends "
            f"the run. From another shell: {screen.command(path, 'down')} ends the run too.",
        ]
        notice(self.config, "\n".join(text), yellow=True)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_teardown(self, item: pytest.Item, nextitem: pytest.Item | None) -> None:
        path = self.kept.pop(item.nodeid, None)
        if path is None:
            return
        try:
            if not wait_for_enter(self.config):
                notice(self.config, "harness: stdin is closed, nobody can press Enter: tearing the kept stack down")
        finally:
            path.unlink(missing_ok=True)
