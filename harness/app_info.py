"""What a Celery app declares, read by ``python -m harness.introspect`` in a process of its own.

The test process never imports the user's app to learn about it (and two versions of an app never share
an interpreter). The child reports on a channel of its own, a file, never on standard output, which the
app may print to at import: a line printed by the app cannot break the reading. ``AppInfo`` reads in a
thread, so a scenario's set-up need not wait for it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.stack import harness_module

# A URL no broker answers at: apps that insist on a broker URL at import get one while being read.
INTROSPECTION_BROKER = "amqp://guest:guest@127.0.0.1:1/harness-introspection"


def last_error_line(stderr: str) -> str | None:
    """The line of a child's stderr that says why it failed: the exception's line, else the last line."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("HarnessLaunchError: "):
            return line.split(": ", 1)[1]
    return lines[-1].strip() if lines else None


def introspect(
    celery_app: str, cwd: str, python: str | None = None, workdir: Path | None = None, timeout: float = 30.0,
    env: Mapping[str, str] | None = None, named_by: str = "--celery-app", paths: Sequence[str] = (),
    foreign_tree: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """What the app declares, read in its folder ``cwd``, with its interpreter and the environment its
    programs get (``paths`` first on the import path). ``named_by``: where the user named the app
    (``--celery-app``, ``ini celery_app``...), as the errors say it. ``foreign_tree``: a folder none of its
    modules may come from; the document lists those that did (``foreign_modules``)."""
    command, launcher_env = harness_module(
        python or sys.executable, "introspect", workdir or Path(tempfile.gettempdir())
    )
    base = {**os.environ, **(env or {}), **launcher_env}
    document, done = _read(command, cwd, base, celery_app, named_by, paths, foreign_tree, timeout, workdir)
    if (done.returncode != 0 or "error" in document) and "CELERY_BROKER_URL" not in base:
        # An app that insists on a broker URL at import gets the placeholder, and is read again. Not at first: an
        # app that falls back on a broker of its own (os.environ.get("CELERY_BROKER_URL", "redis://...")) must
        # show that one, which says the family it is configured for.
        base["CELERY_BROKER_URL"] = INTROSPECTION_BROKER
        document, done = _read(command, cwd, base, celery_app, named_by, paths, foreign_tree, timeout, workdir)
    if "error" in document:
        raise HarnessError(document["error"])
    if done.returncode != 0 or not document:
        why = last_error_line(done.stderr) or f"exit status {done.returncode}"
        raise HarnessError(f"{named_by} {celery_app} could not be read: {why}")
    return document


def _read(
    command: list[str], cwd: str, env: dict[str, str], celery_app: str, named_by: str, paths: Sequence[str],
    foreign_tree: str | None, timeout: float, workdir: Path | None,
) -> tuple[dict[str, Any], subprocess.CompletedProcess]:  # fmt: skip
    """One reading of the app in a child process: its document (``{}`` if it wrote none) and how it exited."""
    with tempfile.TemporaryDirectory(prefix="harness-introspect-", dir=workdir) as folder:
        report = Path(folder) / "app.json"
        command = [*command, "--celery-app", celery_app, f"--named-by={named_by}", f"--report={report}"]
        command += [f"--path={path}" for path in paths]  # = : a folder may begin with --
        if foreign_tree:
            command.append(f"--foreign-tree={foreign_tree}")
        try:
            done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise HarnessError(
                f"{named_by} {celery_app} took more than {timeout:.0f}s to import; does it connect at import?"
            ) from None
        try:
            document = json.loads(report.read_text())
        except (OSError, ValueError):
            document = None
    return (document if isinstance(document, dict) else {}), done


class AppInfo:
    """What the app declares, read by ``introspect`` in a thread: ``result()`` waits, and raises the
    HarnessError the reading met."""

    def __init__(self, read: Callable[[], dict[str, Any]]) -> None:
        self._value: dict[str, Any] | None = None
        self._error: HarnessError | None = None
        self._thread = threading.Thread(target=self._run, args=(read,), name="harness-introspect", daemon=True)
        self._thread.start()

    def _run(self, read: Callable[[], dict[str, Any]]) -> None:
        try:
            self._value = read()
        except HarnessError as error:
            self._error = error
        except Exception as exc:  # a reading that broke in an unforeseen way still says what
            self._error = HarnessError(f"the app could not be read: {exc!r}")

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    @property
    def error(self) -> HarnessError | None:
        return self._error if self.done else None

    def result(self) -> dict[str, Any]:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._value is not None
        return self._value

    def __getitem__(self, key: str) -> Any:
        return self.result()[key]


def own_transport(info: dict[str, Any]) -> str | None:
    """The broker family the app is configured for: the ``CELERY_BROKER_URL`` of the user's environment, else the
    app's own broker setting (``own_broker_scheme``); None when it names none (Celery's default, AMQP, is
    assumed by no one: the run's transport stands)."""
    from harness.brokers import transport_of_url

    env = os.environ.get("CELERY_BROKER_URL")
    if env:
        return transport_of_url(env)
    scheme = info.get("own_broker_scheme")
    return transport_of_url(f"{scheme}://") if scheme and scheme != "env" else None
