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


def test_up_takes_the_transport_and_ctl_offers_the_broker_controls() -> None:
    up = harness("up", "--help")
    assert all(flag in up.stdout for flag in ("--harness-transport", "--harness-redis-server")), up.stdout
    ctl = harness("ctl", "broker", "--help")
    assert ctl.returncode == 0 and "kill-connections" in ctl.stdout and "rabbitmqctl" in ctl.stdout, ctl.stdout


def test_a_bad_transport_from_the_environment_is_one_sentence(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("HARNESS_TRANSPORT", "kafka")
    assert main(["up", "--state", str(tmp_path / "s.json")]) == 2
    assert capsys.readouterr().err.startswith("harness: --harness-transport 'kafka' is not one of rabbitmq, redis")


def test_the_transport_of_the_tools_follows_cli_then_ini_then_env(tmp_path, monkeypatch) -> None:
    import argparse

    from harness import cli_options

    parser = argparse.ArgumentParser()
    cli_options.add_broker_and_stack(parser)
    monkeypatch.setenv("HARNESS_TRANSPORT", "redis")
    assert cli_options.get(parser.parse_args([]), "harness_transport", tmp_path) == "redis"
    (tmp_path / "pytest.ini").write_text("[pytest]\nharness_transport = auto\n")
    assert cli_options.get(parser.parse_args([]), "harness_transport", tmp_path) == "auto"
    args = parser.parse_args(["--harness-transport", "rabbitmq"])
    assert cli_options.get(args, "harness_transport", tmp_path) == "rabbitmq"
    monkeypatch.delenv("HARNESS_TRANSPORT")
    (tmp_path / "pytest.ini").unlink()
    assert cli_options.broker_options(parser.parse_args([]), str(tmp_path), tmp_path).transport == "rabbitmq"
