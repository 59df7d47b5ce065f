"""harness.executors: a tag no exiting process can match, and a process that dies with its owner."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
from mirakuru import SimpleExecutor
from mirakuru.base_env import processes_with_env

from harness.executors import OwnedProcess
from harness.waiting import eventually


class OwnedSimpleExecutor(OwnedProcess, SimpleExecutor):
    pass


SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def test_tag_holds_no_digit_so_no_exiting_process_pid_can_match_it():
    assert not any(ch.isdigit() for ch in OwnedSimpleExecutor(SLEEPER)._uuid)


def test_a_started_process_is_found_by_its_tag_and_stopped_but_not_by_the_owners_exit_sweep():
    executor = OwnedSimpleExecutor(SLEEPER)
    executor.start()
    try:
        pid = executor.process.pid
        assert pid in processes_with_env("mirakuru_uuid", executor._uuid)
        # What mirakuru.base.cleanup_subprocesses looks for when any process exits: here, our own pid.
        assert pid not in processes_with_env("mirakuru_uuid", str(os.getpid()))
    finally:
        executor.stop()
    assert not executor.running()


def test_the_process_gets_sigterm_when_its_owner_is_sigkilled(tmp_path: Path):
    """An owner killed with no teardown (xdist after Ctrl-C, a CI runner) takes its processes with it."""
    got_term, ready = tmp_path / "got-term", tmp_path / "ready"
    child = textwrap.dedent(f"""
        import signal, sys, time
        signal.signal(signal.SIGTERM, lambda *_: (open({str(got_term)!r}, "w").close(), sys.exit(0)))
        open({str(ready)!r}, "w").close()
        time.sleep(60)
    """)
    owner_code = textwrap.dedent(f"""
        import sys, time
        from mirakuru import SimpleExecutor
        from harness.executors import OwnedProcess
        class Owned(OwnedProcess, SimpleExecutor):
            pass
        executor = Owned([sys.executable, "-c", {child!r}])
        executor.start()
        print(executor.process.pid, flush=True)
        time.sleep(60)
    """)
    owner = subprocess.Popen([sys.executable, "-c", owner_code], stdout=subprocess.PIPE, text=True)
    try:
        child_pid = int(owner.stdout.readline())
        eventually(ready.exists, timeout=10, what="the owned process to set its SIGTERM handler")
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=10)
        eventually(got_term.exists, timeout=10, what="the owned process to get SIGTERM after its owner died")
        eventually(lambda: not psutil.pid_exists(child_pid) or psutil.Process(child_pid).status() == "zombie",
                   timeout=10, what="the owned process to exit")  # fmt: skip
    finally:
        owner.kill()
