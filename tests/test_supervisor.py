"""harness.supervisor.render_config: the supervisord config a scenario's programs run under.

Each config is read back twice: with configparser (what is written) and with supervisord's own
option parser (what supervisord makes of it), in process; nothing is started.
"""

from __future__ import annotations

import configparser
import dataclasses
import shlex
import sys
import time
from pathlib import Path

import psutil
import pytest
from supervisor.options import ProcessConfig, ServerOptions

from harness.errors import HarnessError
from harness.supervisor import STOPPED_STATES, Program, Supervisor, render_config
from harness.waiting import eventually


def written(programs: list[Program], workdir: Path) -> configparser.RawConfigParser:
    config = configparser.RawConfigParser()
    config.optionxform = str  # type: ignore[assignment,method-assign]
    config.read_string(render_config(programs, workdir, workdir / "sv.sock"))
    return config


def as_supervisord_reads_it(program: Program, workdir: Path) -> ProcessConfig:
    path = workdir / "supervisord.conf"
    path.write_text(render_config([program], workdir, workdir / "sv.sock"))
    options = ServerOptions()
    options.configfile = str(path)
    options.process_config(do_usage=False)
    [group] = options.process_group_configs
    [process] = group.process_configs
    return process


def test_nothing_restarts_by_itself_and_stops_take_the_whole_group(tmp_path: Path) -> None:
    section = written([Program("worker", ["celery", "worker"], stopsignal="INT", stopwaitsecs=3)], tmp_path)[
        "program:worker"
    ]
    assert section["autorestart"] == "false"
    assert section["startsecs"] == "0"
    assert section["startretries"] == "0"
    assert section["stopasgroup"] == "true"
    assert section["killasgroup"] == "true"
    assert section["autostart"] == "true"
    assert section["stopsignal"] == "INT"
    assert section["stopwaitsecs"] == "3"


def test_supervisord_reads_the_program_settings_as_meant(tmp_path: Path) -> None:
    process = as_supervisord_reads_it(Program("web", ["gunicorn", "app:app"], autostart=False), tmp_path)
    assert process.autorestart is False
    assert process.autostart is False
    assert process.startsecs == 0
    assert process.stopasgroup is True
    assert process.killasgroup is True


def test_logs_socket_and_pidfile_live_in_the_workdir(tmp_path: Path) -> None:
    config = written([Program("web", ["gunicorn"]), Program("worker-1", ["celery"])], tmp_path)
    assert config["unix_http_server"]["file"] == str(tmp_path / "sv.sock")
    assert config["supervisorctl"]["serverurl"] == f"unix://{tmp_path / 'sv.sock'}"
    assert config["supervisord"]["logfile"] == str(tmp_path / "supervisord.log")
    assert config["supervisord"]["pidfile"] == str(tmp_path / "supervisord.pid")
    assert config["supervisord"]["childlogdir"] == str(tmp_path)
    for name in ("web", "worker-1"):
        assert config[f"program:{name}"]["stdout_logfile"] == str(tmp_path / f"{name}.out.log")
        assert config[f"program:{name}"]["stderr_logfile"] == str(tmp_path / f"{name}.err.log")


def test_directory_only_when_given(tmp_path: Path) -> None:
    config = written([Program("a", ["true"]), Program("b", ["true"], directory="/srv/app")], tmp_path)
    assert "directory" not in config["program:a"]
    assert config["program:b"]["directory"] == "/srv/app"


def test_percent_signs_are_doubled_in_the_file(tmp_path: Path) -> None:
    program = Program("w", ["celery", "--logfile", "%n%I.log"], environment={"RATE": "100%"})
    section = written([program], tmp_path)["program:w"]
    assert section["command"] == "celery --logfile %%n%%I.log"
    assert section["environment"] == 'RATE="100%%"'


def test_command_arguments_survive_quoting_and_percent_expansion(tmp_path: Path) -> None:
    command = ["python", "-c", "print('%(x)s is 50%')", "two words", "it's"]
    process = as_supervisord_reads_it(Program("w", command), tmp_path)
    assert shlex.split(process.command) == command


def test_environment_values_with_commas_spaces_and_percents(tmp_path: Path) -> None:
    environment = {
        "CELERY_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672/harness-1",
        "QUEUES": "default,slow",
        "GREETING": "hello world",
        "RATE": "100%",
        "FORMAT": "%(asctime)s",
    }
    process = as_supervisord_reads_it(Program("w", ["true"], environment=environment), tmp_path)
    assert process.environment == environment


def test_environment_value_with_a_double_quote_and_a_comma(tmp_path: Path) -> None:
    environment = {"MESSAGE": 'say "hi", then leave', "PLAIN": "x"}
    process = as_supervisord_reads_it(Program("w", ["true"], environment=environment), tmp_path)
    assert process.environment == environment


def test_a_value_with_both_kinds_of_quote_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    program = Program("w", ["true"], environment={"BAD": 'it\'s "quoted"'})
    with pytest.raises(HarnessError, match="BAD holds both kinds of quote"):
        render_config([program], tmp_path, tmp_path / "sv.sock")


def test_a_replaced_program_runs_again_with_its_new_environment(tmp_path: Path) -> None:
    """What ``harness ctl deploy`` does, from another process: attach to the running supervisord by its config
    and socket, replace one program's environment; supervisord rereads it and the program restarts with it."""
    out = tmp_path / "seen.txt"
    code = "import os, pathlib, time; pathlib.Path(os.environ['OUT']).write_text(os.environ['X']); time.sleep(60)"
    program = Program("app", [sys.executable, "-c", code], {"OUT": str(out), "X": "v1"})
    supervisor = Supervisor(tmp_path, [program]).start()
    try:
        eventually(lambda: out.exists() and out.read_text(), until=lambda text: text == "v1", timeout=10, what="v1")
        before = supervisor.info("app")["pid"]

        attached = Supervisor.attach(supervisor.config_path, supervisor.socket)
        assert attached.programs == supervisor.programs
        attached.replace_program(dataclasses.replace(program, environment={"OUT": str(out), "X": "v2"}))

        eventually(lambda: out.read_text(), until=lambda text: text == "v2", timeout=10, what="v2")
        assert supervisor.state("app") == "RUNNING" and supervisor.info("app")["pid"] != before
        assert not psutil.pid_exists(before) or psutil.Process(before).status() == psutil.STATUS_ZOMBIE
    finally:
        supervisor.kill_programs()
        supervisor.close()


def test_a_slow_stop_costs_supervisord_almost_no_cpu(tmp_path: Path) -> None:
    """A program that takes 1.5 s to stop (a worker's warm shutdown): stop_program returns once it has stopped,
    and supervisord spends a small fraction of those 1.5 s on CPU (stopProcess with wait=True made it spin at
    full speed for the whole stop: about 1.4 CPU-s)."""
    code = (
        "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: (time.sleep(1.5), sys.exit(0)));"
        "print('up', flush=True); time.sleep(60)"
    )
    supervisor = Supervisor(tmp_path, [Program("slow", [sys.executable, "-c", code])]).start()
    try:
        out = tmp_path / "slow.out.log"  # "up" once its SIGTERM handler is in place
        eventually(lambda: out.exists() and out.read_text(), until=lambda text: text == "up\n", timeout=10, what="up")
        process = psutil.Process(supervisor.pid)
        before = sum(process.cpu_times()[:2])
        started = time.monotonic()
        supervisor.stop_program("slow")
        took = time.monotonic() - started
        spent = sum(process.cpu_times()[:2]) - before
        assert supervisor.state("slow") in STOPPED_STATES
        assert took >= 1.4, f"stop_program returned after {took:.2f} s, before the program had stopped"
        assert spent < 0.4, f"supervisord spent {spent:.2f} CPU-s during a {took:.1f} s stop"
    finally:
        supervisor.kill_programs()
        supervisor.close()
