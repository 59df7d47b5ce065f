"""harness.soak: a run's counts from JUnit, and leftovers found by the run's private TMPDIR."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from harness.processes import processes_of
from harness.soak import RunResult, read_junit, table
from harness.waiting import eventually

JUNIT = """<?xml version="1.0"?>
<testsuites><testsuite>
<testcase classname="scenarios.test_a" name="test_ok"/>
<testcase classname="scenarios.test_a" name="test_bad"><failure message="x"/></testcase>
<testcase classname="scenarios.test_b" name="test_broken"><error message="y"/></testcase>
<testcase classname="scenarios.test_b" name="test_skip"><skipped/></testcase>
</testsuite></testsuites>
"""


def test_counts_and_failing_tests_come_from_the_junit_file(tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    path.write_text(JUNIT)
    counts, failures = read_junit(path)
    assert counts == {"passed": 1, "failed": 1, "errors": 1, "skipped": 1}
    assert failures == ["scenarios.test_a::test_bad", "scenarios.test_b::test_broken (error)"]


def test_a_process_that_inherited_the_runs_tmpdir_is_a_leftover(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], env={"TMPDIR": str(tmp_path)})
    try:
        assert any(f"process {child.pid}:" in line for line in processes_of(tmp_path))
    finally:
        child.kill()
        child.wait()
    assert processes_of(tmp_path) == []


def test_the_table_says_how_many_runs_were_clean() -> None:
    results = [RunResult(1, 0, 10.0, passed=3), RunResult(2, 1, 12.0, passed=2, failed=1, failures=["t::x"])]
    text = table(results)
    assert "t::x" in text and text.endswith("1 of 2 runs passed with nothing left behind")


def test_a_rule_whose_owner_lives_is_another_runs_and_one_whose_owner_died_is_a_leftover() -> None:
    from harness.soak import orphaned

    alive = f'-A INPUT -p tcp --dport 1 -m comment --comment "celery-failure-harness pid={os.getpid()}" -j DROP'
    assert not orphaned(alive)
    assert orphaned(alive.replace(f"pid={os.getpid()}", "pid=999999999"))
    assert orphaned('-A INPUT -m comment --comment "harness" -j DROP'), "no owner named: counted"


BLOCKING_TEST = """
import os, pathlib, threading

def test_blocks_until_interrupted():
    pathlib.Path(os.environ["SOAK_TEST_STARTED"]).write_text(str(os.getpid()))
    threading.Event().wait(120)
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_to_the_soak_alone_stops_the_run_and_leaves_nothing(tmp_path: Path, signum: int) -> None:
    """Only the soak gets the signal (kill PID, a CI runner cancelling): the run it started is interrupted
    too, and the soak's folder, which holds the run's TMPDIR, is gone."""
    (tmp_path / "test_blocking.py").write_text(BLOCKING_TEST)
    temp, started = tmp_path / "tmp", tmp_path / "started"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp), "SOAK_TEST_STARTED": str(started)}
    soak = subprocess.Popen(
        [sys.executable, "-m", "harness.soak", "-n", "2", "--", "test_blocking.py", "-p", "no:randomly"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    run_pid = None
    try:
        run_pid = int(eventually(lambda: started.exists() and started.read_text(), timeout=60, what="the run to start"))
        soak.send_signal(signum)
        output, _ = soak.communicate(timeout=60)
        left = psutil_exists(run_pid)
    finally:
        soak.kill()
        soak.wait()
        if run_pid is not None and psutil_exists(run_pid):
            os.kill(run_pid, signal.SIGKILL)  # this test's own leftover, if the soak left it
    assert soak.returncode != 0, output
    assert not left, "the run the soak started is still running"
    assert list(temp.iterdir()) == [], "the soak's folder (the run's TMPDIR) is left"
    assert "run 2/2" not in output, "the soak went on after the signal"
    assert "soak: interrupted during run 1/2" in output and "Traceback" not in output, output


def psutil_exists(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
