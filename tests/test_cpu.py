"""harness.cpu: a command's CPU-seconds by kind of process, from control groups (needs root: skipped without)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from harness.cpu import KINDS, CpuAccount, Hierarchy, kind_of
from harness.errors import HarnessError


def test_kinds_from_command_lines(tmp_path: Path) -> None:
    config = tmp_path / "worker.json"
    config.write_text(json.dumps({"role": "worker"}))
    web = tmp_path / "web.json"
    web.write_text(json.dumps({"role": "web"}))
    assert kind_of(["/usr/lib/erlang/erts-13/bin/beam.smp", "-W", "w"]) == "broker"
    assert kind_of(["/usr/sbin/redis-server", "127.0.0.1:7000"]) == "broker"
    assert kind_of(["/bin/sh", "-s", "rabbit_disk_monitor"]) == "broker"  # the node's port program for df
    assert kind_of(["/bin/sh", "/usr/lib/rabbitmq/bin/rabbitmqctl", "eval", "ok."]) == "broker tools"
    assert kind_of([sys.executable, "-m", "supervisor.supervisord", "-c", "x.conf"]) == "supervisord"
    assert kind_of([sys.executable, "-m", "harness.launcher", "--config", str(config)]) == "worker"
    assert kind_of([sys.executable, "-m", "harness.launcher", "--config", str(web)]) == "web"
    assert kind_of([sys.executable, "-m", "harness.launcher", "--config", str(tmp_path / "gone.json")]) == "other"
    assert kind_of([sys.executable, "-m", "pytest", "scenarios"]) == "pytest"
    assert kind_of(["/usr/bin/chromium", "--headless"]) == "other"


def _account() -> CpuAccount:
    try:
        return CpuAccount(Hierarchy.find())
    except HarnessError as exc:
        pytest.skip(str(exc))


BURN = "import time; end = time.process_time() + {s}; exec('while time.process_time() < end: pass')"


def test_each_process_is_charged_to_its_kind_and_the_groups_go_afterwards() -> None:
    """A command that burns 0.5 CPU-s itself and starts a "supervisord" that burns 0.5 CPU-s: each lands in
    its kind's group (the command's child was moved after its exec), and nothing of the account is left."""
    account = _account()
    # its own command line must not say "supervisord", or the parent is sorted as one
    burn = BURN.format(s=0.5)
    child = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {burn!r}, 'super' + 'visord'])"
    with account:
        done = account.run([sys.executable, "-c", f"{BURN.format(s=0.5)}; {child}"])
    assert done.returncode == 0
    spent = account.by_kind()
    assert set(spent) == set(KINDS)
    assert 0.45 <= spent["supervisord"] <= 0.7, spent
    assert 0.45 <= spent["other"] <= 0.75, spent
    assert not account.top.exists()
