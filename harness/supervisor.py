"""The app's processes under supervisord: config generation and XML-RPC control.

The harness writes a supervisord config per scenario (programs, logs and the control socket all
in the scenario's own directory), starts supervisord with mirakuru (ready when its unix socket
accepts connections) and drives the programs through supervisor's own XML-RPC client, as
``supervisorctl`` does.
"""

from __future__ import annotations

import configparser
import dataclasses
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
import xmlrpc.client
from dataclasses import dataclass, field
from pathlib import Path

from mirakuru.exceptions import ProcessExitedWithError, TimeoutExpired
from supervisor.xmlrpc import SupervisorTransport

from harness.errors import HarnessError
from harness.executors import OwnedUnixSocketExecutor
from harness.waiting import eventually

PROGRAMS_FILE = "programs.json"  # the programs as the harness defined them, next to supervisord.conf
SIGNALS = ("TERM", "INT", "QUIT", "KILL", "HUP", "USR1", "USR2", "STOP", "CONT")  # STOP/CONT: a hung process
STOPPED_STATES = ("STOPPED", "EXITED", "FATAL", "BACKOFF")
STOP_MARGIN_S = 10.0  # beyond a program's stopwaitsecs, after which supervisord has SIGKILLed it


@dataclass
class Program:
    """One supervisord program. Defaults suit fault scenarios: nothing restarts by itself."""

    name: str
    command: list[str]
    environment: dict[str, str] = field(default_factory=dict)
    directory: str | None = None
    autostart: bool = True
    stopsignal: str = "TERM"
    stopwaitsecs: int = 10


def _escape(value: str) -> str:
    # supervisord expands %(name)s in values: a literal % must be doubled.
    return value.replace("%", "%%")


def _env_pair(key: str, value: str) -> str:
    # supervisord splits environment= with a non-POSIX shlex: no escapes, so a value is quoted with
    # whichever quote it does not contain.
    quote = "'" if '"' in value else '"'
    if quote in value:
        raise HarnessError(f"environment variable {key} holds both kinds of quote, which supervisord cannot pass on")
    return f"{key}={quote}{_escape(value)}{quote}"


def render_config(programs: list[Program], workdir: Path, socket: Path) -> str:
    config = configparser.RawConfigParser()
    config.optionxform = str  # keep option names as written
    config["unix_http_server"] = {"file": str(socket), "chmod": "0700"}
    config["supervisord"] = {
        "nodaemon": "true",
        "logfile": str(workdir / "supervisord.log"),
        "pidfile": str(workdir / "supervisord.pid"),
        "childlogdir": str(workdir),
        "loglevel": "info",
        "identifier": f"harness-{workdir.name}",
    }
    config["rpcinterface:supervisor"] = {
        "supervisor.rpcinterface_factory": "supervisor.rpcinterface:make_main_rpcinterface"
    }
    config["supervisorctl"] = {"serverurl": f"unix://{socket}"}
    for program in programs:
        section = {
            "command": _escape(shlex.join(program.command)),
            "autostart": str(program.autostart).lower(),
            # A fault scenario decides when a program comes back; supervisord must not.
            "autorestart": "false",
            "startsecs": "0",
            "startretries": "0",
            "stopsignal": program.stopsignal,
            "stopwaitsecs": str(program.stopwaitsecs),
            # A Celery worker has pool children and gunicorn its workers: signal the whole group.
            "stopasgroup": "true",
            "killasgroup": "true",
            "stdout_logfile": str(workdir / f"{program.name}.out.log"),
            "stderr_logfile": str(workdir / f"{program.name}.err.log"),
        }
        if program.directory:
            section["directory"] = program.directory
        if program.environment:
            section["environment"] = ",".join(_env_pair(k, v) for k, v in program.environment.items())
        config[f"program:{program.name}"] = section
    lines = []
    for name in config.sections():
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {value}" for key, value in config[name].items())
        lines.append("")
    return "\n".join(lines)


class Supervisor:
    """A supervisord for one scenario, and its XML-RPC control."""

    def __init__(self, workdir: Path, programs: list[Program], start_timeout: float = 10.0) -> None:
        self.workdir = workdir
        self.programs = {p.name: p for p in programs}
        # A unix socket path is limited to 107 bytes; under a long TMPDIR, fall back to a short directory.
        self._socket_dir: Path | None = None
        self.socket = workdir / "sv.sock"
        if len(str(self.socket)) > 100:
            self._socket_dir = Path(tempfile.mkdtemp(prefix="hsv-", dir="/tmp"))
            self.socket = self._socket_dir / "sv.sock"
        self.config_path = workdir / "supervisord.conf"
        self.start_timeout = start_timeout
        self._executor: OwnedUnixSocketExecutor | None = None

    @classmethod
    def attach(cls, config_path: Path, socket: Path) -> Supervisor:
        """Control a supervisord another process started (``harness ctl``): its programs are read back from
        the file written next to its config. Closing it leaves supervisord running."""
        workdir = config_path.parent
        try:
            saved = json.loads((workdir / PROGRAMS_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise HarnessError(
                f"no readable program list next to {config_path} ({exc}); is that stack still up?"
            ) from None
        supervisor = cls.__new__(cls)  # not __init__: it would choose a socket of its own
        supervisor.workdir, supervisor.config_path, supervisor.socket = workdir, config_path, socket
        supervisor.programs = {fields["name"]: Program(**fields) for fields in saved}
        supervisor._socket_dir, supervisor._executor, supervisor.start_timeout = None, None, 10.0
        return supervisor

    def _write_config(self) -> None:
        programs = list(self.programs.values())
        (self.workdir / PROGRAMS_FILE).write_text(json.dumps([dataclasses.asdict(p) for p in programs], indent=1))
        self.config_path.write_text(render_config(programs, self.workdir, self.socket))

    def start(self) -> Supervisor:
        self._write_config()
        output = (self.workdir / "supervisord.stdout.log").open("ab")
        self._executor = OwnedUnixSocketExecutor(
            [sys.executable, "-m", "supervisor.supervisord", "-c", str(self.config_path)],
            socket_name=str(self.socket),
            timeout=self.start_timeout,
            sleep=0.02,
            stdout=output,
            stderr=output,
        )
        try:
            self._executor.start()
        except (ProcessExitedWithError, TimeoutExpired) as exc:
            self._executor = None
            lines = (self.workdir / "supervisord.stdout.log").read_text(errors="replace").splitlines()
            errors = [line.strip() for line in lines if "Error" in line] or [line.strip() for line in lines[-1:]]
            raise HarnessError(
                f"supervisord did not start ({type(exc).__name__}): {' | '.join(errors) or '(no output)'}"
            ) from None
        except BaseException:  # Ctrl-C while it started: nobody else would stop it
            self._executor.kill()
            self._executor = None
            raise
        finally:
            output.close()
        return self

    @property
    def pid(self) -> int | None:
        """supervisord's own pid (also its process group: mirakuru starts it in a session of its own)."""
        process = self._executor.process if self._executor is not None else None
        return process.pid if process is not None else None

    @property
    def running(self) -> bool:
        return self._executor is not None and self._executor.running()

    @property
    def rpc(self):
        # A fresh proxy per call: a proxy whose first request failed stays broken.
        transport = SupervisorTransport(None, None, f"unix://{self.socket}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport).supervisor

    # -- programs ----------------------------------------------------------------------------
    def info(self, name: str) -> dict:
        return self.rpc.getProcessInfo(name)

    def state(self, name: str) -> str:
        return self.info(name)["statename"]

    def start_program(self, name: str) -> None:
        try:
            self.rpc.startProcess(name, True)
        except xmlrpc.client.Fault as fault:
            if "ALREADY_STARTED" not in fault.faultString:
                raise HarnessError(
                    f"supervisord could not start {name} ({fault.faultString}); its stderr ends: "
                    f"{self.stderr_tail(name) or '(empty)'}"
                ) from None

    def stop_program(self, name: str) -> None:
        """Stop the program (its stop signal, to its group); returns once supervisord says it is stopped."""
        try:
            # Not stopProcess(name, wait=True): supervisord answers that call from a deferred with no delay,
            # and spins its loop at full speed until the program is gone (measured: 1.2 CPU-s for a worker's
            # one-second warm shutdown, most of supervisord's CPU in a scenario). Asked every 50 ms instead.
            self.rpc.stopProcess(name, False)
        except xmlrpc.client.Fault as fault:
            if "NOT_RUNNING" not in fault.faultString:
                raise
            return
        self.wait_stopped(name, self.programs[name].stopwaitsecs + STOP_MARGIN_S)

    def wait_stopped(self, name: str, timeout: float) -> str:
        """Wait until supervisord says the program is no longer running (stopped, exited, fatal); returns that
        state, or raises ``WaitTimeout`` after ``timeout`` seconds."""
        return eventually(
            lambda: self.state(name), until=lambda state: state in STOPPED_STATES, timeout=timeout,
            what=f"{name} to exit",
        )  # fmt: skip

    def replace_program(self, program: Program) -> None:
        """Run ``program`` (same name, new command or environment) in place of the old one, as ``supervisorctl
        update`` would after an edit of the config: rewrite it, let supervisord reread it, stop the old process,
        and start the new one. supervisord reads a program's environment only when its group is added."""
        self.programs[program.name] = program
        self._write_config()
        [[_added, changed, _removed]] = self.rpc.reloadConfig()
        self.stop_program(program.name)
        if program.name in changed:
            self.rpc.removeProcessGroup(program.name)
            self.rpc.addProcessGroup(program.name)
        self.start_program(program.name)

    def signal_program(self, name: str, signal: str) -> None:
        """Send a signal to the program's main process (not its group), as ``kill`` would."""
        if signal not in SIGNALS:
            raise ValueError(f"signal {signal!r} is not one of {SIGNALS}")
        self.rpc.signalProcess(name, signal)

    def stderr_tail(self, name: str, length: int = 1500) -> str:
        try:
            text, _, _ = self.rpc.tailProcessStderrLog(name, 0, length)
        except (OSError, xmlrpc.client.Error):
            path = self.workdir / f"{name}.err.log"
            text = path.read_text(errors="replace")[-length:] if path.exists() else ""
        return text.strip()

    # -- supervisord -------------------------------------------------------------------------
    def kill_group(self, name: str) -> None:
        """SIGKILL a program's whole process group (supervisord's own KILL reaches only the main pid)."""
        pid = self.info(name).get("pid")
        if pid:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def kill_programs(self) -> None:
        """SIGKILL every running program's process group at once.

        supervisord stops programs one group after another, each with its graceful stop, which
        costs seconds; at the end of a scenario nothing is worth a graceful stop.
        """
        try:
            infos = self.rpc.getAllProcessInfo()
        except (OSError, xmlrpc.client.Error):
            return
        for info in infos:
            if info.get("pid"):
                try:
                    os.killpg(info["pid"], signal.SIGKILL)  # supervisord gives each program its own group
                except ProcessLookupError:
                    pass

    def close(self) -> None:
        """Stop every program (each with its stop signal, as a group) and supervisord itself."""
        try:
            if self._executor is not None:
                try:
                    self._executor.stop(expected_returncode=0)
                except Exception:
                    self._executor.kill()
                self._executor = None
        finally:
            if self._socket_dir is not None:
                shutil.rmtree(self._socket_dir, ignore_errors=True)
