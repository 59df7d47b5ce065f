import os
import sys

from mirakuru import SimpleExecutor
from mirakuru.base_env import processes_with_env

from harness.executors import without_pid_in_tag


def test_tag_holds_no_digit_so_no_exiting_process_pid_can_match_it():
    executor = without_pid_in_tag(SimpleExecutor([sys.executable, "-c", "pass"]))
    assert not any(ch.isdigit() for ch in executor._uuid)


def test_a_started_process_is_still_found_by_its_tag_and_stopped():
    executor = without_pid_in_tag(SimpleExecutor([sys.executable, "-c", "import time; time.sleep(60)"]))
    executor.start()
    try:
        pid = executor.process.pid
        assert pid in processes_with_env("mirakuru_uuid", executor._uuid)
        # The exit-time sweep of this very process (mirakuru.base.cleanup_subprocesses) looks for our pid.
        assert pid not in processes_with_env("mirakuru_uuid", str(os.getpid()))
    finally:
        executor.stop()
    assert not executor.running()
