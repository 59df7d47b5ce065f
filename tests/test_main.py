"""``python -m harness``: the dispatcher of the harness's command-line tools."""

from __future__ import annotations

import importlib
import subprocess
import sys
from importlib.metadata import entry_points

from harness.__main__ import COMMANDS, main


def harness(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, timeout=60)


def test_every_command_is_a_module_with_a_main() -> None:
    for name, (module, summary) in COMMANDS.items():
        assert callable(importlib.import_module(module).main), name
        assert summary, f"{name} has no summary"


def test_without_a_command_the_usage_lists_them_all() -> None:
    done = harness()
    assert done.returncode == 2
    assert all(f"  {name} " in done.stdout for name in COMMANDS), done.stdout


def test_an_unknown_command_is_one_sentence_and_the_usage() -> None:
    done = harness("upp")
    assert done.returncode == 2 and done.stderr.startswith("harness: no command 'upp'"), done.stderr


def test_up_takes_the_plugins_broker_and_stack_options() -> None:
    done = harness("up", "--help")
    assert done.returncode == 0
    for flag in ("--harness-broker", "--harness-broker-url", "--harness-rabbitmq-image", "--celery-app", "--env"):
        assert flag in done.stdout, flag


def test_a_bad_option_value_is_one_sentence(tmp_path) -> None:
    assert main(["up", "--harness-boot-timeout", "soon", "--state", str(tmp_path / "s.json")]) == 2


def test_the_console_script_runs_the_same_dispatcher() -> None:
    [script] = [e for e in entry_points(group="console_scripts") if e.name == "celery-harness"]
    assert script.value == "harness.__main__:main"
