"""``python -m harness.soak``: the suite N times in a row, and what each run left behind.

A scenario that passed ten times alone can still fail inside the full suite, so "it passed N times"
is only worth something for the whole suite, on one provider, back to back. Each run is a fresh
``python -m pytest <args>`` with a private ``TMPDIR``; after it, the soak looks for what the run left:

- processes: any process whose command line, working directory or environment names the run's TMPDIR
  (every process the harness starts inherits it; the broker node names it on its command line);
- containers: harness containers labelled with that run's pytest pid;
- temporary files: anything left in the run's TMPDIR;
- network namespaces and iptables rules whose name or comment says ``harness``, and that were not there
  before the run (other runs on the machine may hold some of their own).

It prints a table (run, passed, failed, errors, seconds, failing tests, leftovers) and a total, and
exits non-zero if any run failed or left anything. ``--json FILE`` keeps the table.

Ctrl-C (or SIGTERM) stops the soak: the run in progress gets one SIGTERM, which the harness's plugin turns
into pytest's Ctrl-C (a SIGINT would be ignored by a run the soak started as a background job: a shell starts
those with SIGINT ignored, and children inherit it), tidies up, and the soak's folder goes after it. Each run has
a session of its own, so a Ctrl-C typed at the terminal reaches the run once, through the soak (twice would cut
pytest's tear-down short).

    python -m harness.soak -n 20 -- scenarios/ --harness-broker local
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from harness.errors import HarnessError
from harness.processes import interrupt, processes_of

REAP_GRACE_S = 5.0
INTERRUPTED_RUN_S = 180.0  # for an interrupted run's tear-down (brokers stopped, containers removed)


@dataclass
class RunResult:
    run: int
    exit_code: int
    seconds: float
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    failures: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return self.exit_code == 0 and not self.failed and not self.errors and not self.leftovers


def read_junit(path: Path) -> tuple[dict[str, int], list[str]]:
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    failures = []
    if not path.exists():
        return counts, failures
    for case in ElementTree.parse(path).iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        if case.find("failure") is not None:
            counts["failed"] += 1
            failures.append(name)
        elif case.find("error") is not None:
            counts["errors"] += 1
            failures.append(f"{name} (error)")
        elif case.find("skipped") is not None:
            counts["skipped"] += 1
        else:
            counts["passed"] += 1
    return counts, failures


def containers_of(pid: int) -> list[str]:
    """The harness's containers the run whose pytest had ``pid`` left, asked of the engine (docker-py), not
    of the docker CLI: a machine may reach an engine without the CLI installed."""
    from harness.brokers.containers import LABEL, LABEL_PID, docker_client

    try:
        client = docker_client(5.0)
    except HarnessError:  # no engine answers (or docker-py is not installed): nothing can be left in one
        return []
    with contextlib.closing(client):
        found = client.containers.list(all=True, filters={"label": [f"{LABEL}=true", f"{LABEL_PID}={pid}"]})
    return [f"container {c.short_id}" for c in found]


def harness_network_leftovers() -> list[str]:
    """Network namespaces and iptables rules of the harness (named or commented ``harness``)."""
    found = []
    if shutil.which("ip"):
        done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
        found += [f"netns {line.split()[0]}" for line in done.stdout.splitlines() if "harness" in line]
    if shutil.which("iptables"):
        done = subprocess.run(["iptables", "-S"], capture_output=True, text=True)
        found += [f"iptables {line}" for line in done.stdout.splitlines() if "harness" in line and orphaned(line)]
    return found


def orphaned(rule: str) -> bool:
    """A rule whose comment names its owner's pid (``celery-failure-harness pid=N``) is a leftover only once
    that owner is gone: a live owner is another run at work (runs in parallel share the machine's rules)."""
    owner = re.search(r"pid=(\d+)", rule)
    return owner is None or not psutil.pid_exists(int(owner[1]))


def leftovers(tmpdir: Path, pid: int, network_before: set[str]) -> list[str]:
    deadline = time.monotonic() + REAP_GRACE_S
    while True:  # killed processes may take a moment to be reaped
        left = processes_of(tmpdir)
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    # pytest-of-<user> is pytest's own basetemp (made by xdist even for runs that ask for no tmp_path): pytest
    # keeps the last three on purpose and prunes the rest itself.
    files = (
        [f"file {p.name}" for p in tmpdir.iterdir() if not p.name.startswith("pytest-of-")] if tmpdir.exists() else []
    )
    network = [item for item in harness_network_leftovers() if item not in network_before]
    return left + containers_of(pid) + files + network


def run_once(number: int, pytest_args: list[str], folder: Path) -> RunResult:
    tmpdir = folder / f"run-{number}" / "tmp"
    tmpdir.mkdir(parents=True)
    junit = folder / f"run-{number}" / "junit.xml"
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    command = [sys.executable, "-m", "pytest", *pytest_args, "-q", f"--junitxml={junit}", "-p", "no:cacheprovider"]
    log = (folder / f"run-{number}" / "output.txt").open("wb")
    network_before = set(harness_network_leftovers())
    started = time.monotonic()
    with log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = process.wait()
        except BaseException:  # the soak interrupted: the run must tidy up before its folder goes
            interrupt(process, INTERRUPTED_RUN_S)
            raise
    seconds = time.monotonic() - started
    counts, failures = read_junit(junit)
    result = RunResult(number, code, seconds, failures=failures, **counts)
    result.leftovers = leftovers(tmpdir, process.pid, network_before)
    return result


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM (a CI runner cancelling) tidies up as Ctrl-C does


def table(results: list[RunResult]) -> str:
    lines = [f"{'run':>3}  {'passed':>6}  {'failed':>6}  {'errors':>6}  {'seconds':>7}  failures / leftovers"]
    for r in results:
        notes = "; ".join([*r.failures, *r.leftovers]) or "-"
        lines.append(f"{r.run:>3}  {r.passed:>6}  {r.failed:>6}  {r.errors:>6}  {r.seconds:>7.1f}  {notes}")
    clean = sum(1 for r in results if r.clean)
    lines.append(f"{clean} of {len(results)} runs passed with nothing left behind")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.soak", description=__doc__.split("\n\n")[0],
        epilog="Everything after -- goes to pytest, e.g. -- scenarios/ --harness-broker local",
    )  # fmt: skip
    parser.add_argument("-n", "--runs", type=int, default=20, help="how many runs (default 20)")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--keep", action="store_true", help="keep each run's output and JUnit XML (printed path)")
    parser.add_argument("pytest_args", nargs="*", help="pytest's arguments (after --)")
    args = parser.parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _interrupted)
    folder = Path(tempfile.mkdtemp(prefix="harness-soak-"))
    results = []
    interrupted = False
    try:
        try:
            for number in range(1, args.runs + 1):
                print(f"run {number}/{args.runs}: started", flush=True)
                result = run_once(number, args.pytest_args or ["scenarios/"], folder)
                results.append(result)
                status = "ok" if result.clean else "FAILED" if (result.failed or result.errors) else "LEFT BEHIND"
                print(f"run {number}/{args.runs}: {status} in {result.seconds:.0f}s", flush=True)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the run in progress has torn down; say so, and what ran
            interrupted = True
            print(f"soak: interrupted during run {len(results) + 1}/{args.runs}; it was stopped and tidied up")
        print(table(results))
        if args.json:
            args.json.write_text(json.dumps([asdict(r) for r in results], indent=1))
    finally:
        if args.keep:
            print(f"outputs kept in {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous)
    if interrupted:
        return 130  # as a shell reports a run ended by Ctrl-C
    return 0 if all(r.clean for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
