"""``--keep-on-failure``: a failed scenario's stack stays reachable until Enter, then goes, leaving nothing.

An inner ``python -m pytest`` (a real subprocess with a private TMPDIR, stdin a pipe this test writes to)
runs two scenarios on the demo: one that passes (it must not wait for anyone) and one that fails on
purpose. While the inner run waits, this test opens the kept stack's page, finds its vhost and queue in
the management API and drives it with ``python -m harness ctl``; then it presses Enter (and, with
``--pdb``, first continues the debugger) and checks that the run ends as failed with nothing left behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from run_leftovers import describe, kill, survivors

from harness.brokers.rabbitmq.management import ManagementAPI
from harness.waiting import WaitTimeout, eventually, never
from harness.web import WebClient

SCENARIOS = '''
def test_passes_and_is_not_kept(stack, producer, ledger):
    producer.send()
    ledger.wait_settled(timeout=20)
    stack.verdict().assert_counts(succeeded=1)


def test_expects_a_failure_that_does_not_come(stack, producer, ledger):
    """Deliberately failing: the click's task succeeds, the scenario says it should have failed."""
    producer.send()
    ledger.wait_settled(timeout=20)
    stack.verdict().assert_counts(failed=1)
'''
KEPT_TIMEOUT_S = 120.0  # a broker boot, two stacks and two clicks, on a loaded machine
HELD_S = 2.0  # the kept stack must still be up after this, with nobody pressing Enter
EXIT_TIMEOUT_S = 60.0


@dataclass
class KeptRun:
    root: Path
    process: subprocess.Popen | None = None

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def state_path(self) -> Path:
        return self.root / "kept.json"

    @property
    def output_path(self) -> Path:
        return self.root / "output.txt"

    def output(self) -> str:
        return self.output_path.read_text(errors="replace") if self.output_path.exists() else ""

    def env(self) -> dict[str, str]:
        env = {**os.environ, "TMPDIR": str(self.tmp), "HARNESS_STATE": str(self.state_path)}
        env.pop("PYTEST_ADDOPTS", None)
        return env

    def start(self, *extra: str) -> None:
        project = self.root / "project"
        project.mkdir()
        self.tmp.mkdir()
        (project / "pytest.ini").write_text("[pytest]\nharness_stack = app_under_test.stack:demo\n")
        (project / "test_scenarios.py").write_text(textwrap.dedent(SCENARIOS))
        command = [
            sys.executable, "-m", "pytest", "test_scenarios.py", "--harness-broker", "local", "--keep-on-failure",
            "--harness-no-report", "-p", "no:cacheprovider", "-q", *extra,
        ]  # fmt: skip
        with self.output_path.open("wb") as output:
            self.process = subprocess.Popen(
                command, cwd=project, env=self.env(), stdin=subprocess.PIPE, stdout=output,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def press(self, text: str) -> None:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(text.encode())
        self.process.stdin.flush()

    def ctl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "harness", "ctl", *args], env=self.env(), capture_output=True, text=True, timeout=60
        )


@pytest.fixture
def kept_run(tmp_path: Path) -> Iterator[KeptRun]:
    run = KeptRun(tmp_path)
    yield run
    if run.process is not None and run.process.poll() is None:
        run.process.kill()  # its stack's processes are killed below, by pid
        run.process.wait()
    kill(survivors(run.tmp))


@pytest.mark.parametrize("debugger", [False, True], ids=["enter", "pdb"])
def test_a_failed_scenarios_stack_stays_reachable_until_enter(kept_run: KeptRun, debugger: bool) -> None:
    kept_run.start(*(["--pdb"] if debugger else []))
    process = kept_run.process
    eventually(
        lambda: kept_run.state_path.exists() or process.poll() is not None, timeout=KEPT_TIMEOUT_S,
        what="the failed scenario's stack to be kept (its state file)", interval=0.2,
    )  # fmt: skip
    assert kept_run.state_path.exists(), f"the run ended without keeping a stack:\n{kept_run.output()}"
    state = json.loads(kept_run.state_path.read_text())
    assert state["label"].endswith("test_expects_a_failure_that_does_not_come"), state["label"]
    if debugger:
        eventually(lambda: "(Pdb)" in kept_run.output(), timeout=10, what="the debugger's prompt")

    # Nobody pressed Enter: the run waits, and the stack stays up.
    never(lambda: process.poll(), until=lambda code: code is not None, for_=HELD_S, what="the run ended by itself")
    page = WebClient(state["web_url"]).page("/")
    assert page.status_code == 200 and "Say hello" in page.text
    management = ManagementAPI(state["management_url"], state["user"], state["password"])
    assert state["vhost"] in management.vhosts() and "hello_queue" in management.queues(state["vhost"])
    status = kept_run.ctl("status", "--json")
    assert status.returncode == 0, status.stderr
    facts = json.loads(status.stdout)
    assert facts["workers_online"] == ["worker_hello"] and facts["tasks"]["succeeded"] == 1, facts
    output = kept_run.output()
    assert "stays up" in output and "the verdict: 1 tasks: succeeded=1" in output, output[-3000:]

    # Enter (after leaving the debugger): the run goes on, fails, and leaves nothing.
    kept_run.press("c\n\n" if debugger else "\n")
    try:
        code = process.wait(timeout=EXIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the run did not end after Enter:\n{kept_run.output()[-3000:]}")
    assert code == 1 and "1 failed, 1 passed" in kept_run.output(), kept_run.output()[-3000:]
    assert not kept_run.state_path.exists(), "the state file outlived the kept stack"
    assert not WebClient(state["web_url"]).ready("/healthz"), "the kept web app still answers"
    try:
        eventually(lambda: survivors(kept_run.tmp), until=lambda left: not left, timeout=5, what="the run's processes")
    except WaitTimeout:
        pytest.fail(f"left behind: {[describe(p) for p in survivors(kept_run.tmp)]}")
    assert not list(kept_run.tmp.iterdir()), f"left in TMPDIR: {list(kept_run.tmp.iterdir())}"
