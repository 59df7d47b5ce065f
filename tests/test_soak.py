"""harness.soak: a run's counts from JUnit, and leftovers found by the run's private TMPDIR."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from harness.soak import RunResult, processes_of, read_junit, table

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


def test_a_network_rule_of_another_live_run_is_not_this_runs_leftover():
    import os

    from harness.soak import _others

    rule = 'iptables -A INPUT -i lo -p tcp --dport 4242 -m comment --comment "celery-failure-harness pid={}" -j DROP'
    assert _others(rule.format(os.getpid()), pid=1)  # alive, and not the run's
    assert not _others(rule.format(os.getpid()), pid=os.getpid())  # the run's own
    assert not _others(rule.format(2**22 + 7), pid=1)  # its process is dead: a leak
    assert not _others("iptables -A INPUT -m comment --comment harness-netns", pid=1)
