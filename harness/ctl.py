"""``python -m harness ctl``: drive the programs of a stack that is up, by hand, as ops would.

It talks to that stack's supervisord through its socket (found in the state file, ``harness.state``),
as ``supervisorctl`` does, and waits for what a person would check by eye: after ``start``, ``restart``
or ``deploy``, until the program is ready (a worker has announced itself in its journal, the web app
answers). Commands:

- ``status [--json]``: each program's state, each queue's ready / unacknowledged messages, the workers
  online, the tasks so far (``harness.status``);
- ``stop NAME`` (TERM to its process group, as ``supervisorctl stop``), ``start NAME``, ``restart NAME``,
  ``kill NAME`` (SIGKILL to the whole group), ``signal NAME SIG`` (to the main process only);
- ``deploy NAME --env NAME=VALUE | --celery-app module:app | --web-app module:app``: restart it as
  another version (``harness.redeploy``);
- ``logs NAME [--stdout] [-f]``: the end of its log;
- ``broker ACTION [ARGS]``: a fault on the broker that ``harness up`` started (``harness.control``): ``stop
  [HOW]``, ``start``, ``restart [HOW]``, ``freeze``, ``thaw`` on either family; RabbitMQ's ``alarm memory|disk
  on|off`` and ``rabbitmqctl ARGS...``; Redis's ``persistence MODE`` and ``kill-connections``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import xmlrpc.client
from pathlib import Path

from harness import control
from harness.errors import HarnessError
from harness.journal import JournalReader
from harness.redeploy import deploy, parse_env
from harness.state import STATE_HELP, StackState, path_for
from harness.status import StatusReader
from harness.supervisor import SIGNALS, STOPPED_STATES, Supervisor
from harness.waiting import WaitTimeout, eventually
from harness.web import WebClient

READY_TIMEOUT_S = 30.0  # by hand, a slow machine should not make start look broken; the harness's own is 7 s


class Controls:
    def __init__(self, state: StackState) -> None:
        self.state = state
        self.supervisor = Supervisor.attach(Path(state.supervisor_conf), Path(state.supervisor_socket))

    def known(self, name: str) -> str:
        if name not in self.state.programs:
            raise HarnessError(f"the stack has no program {name!r}; its programs: {', '.join(self.state.programs)}")
        return name

    def wait_ready(self, name: str, since: float, timeout: float = READY_TIMEOUT_S) -> float:
        """Wait until ``name`` is ready; fail at once, with its stderr, if it exits. Returns the seconds it took."""
        role = self.state.programs[name]
        if role in ("worker", "beat"):  # a worker announced itself; a beat loaded its schedule
            journal = JournalReader(self.state.journal_dir)
            step = "worker-online" if role == "worker" else "beat-ready"

            def ready() -> bool:
                return any(e.type == step and e.program == name and e.t >= since for e in journal.entries())
        else:
            web = WebClient(self.state.web_url or "")

            def ready() -> bool:
                return web.ready(self.state.web_ready_path)

        def check() -> bool:
            info = self.supervisor.info(name)
            if info["statename"] in STOPPED_STATES:
                raise HarnessError(
                    f"{name} exited while starting (exit status {info['exitstatus']}); its log ends:\n"
                    f"{self.supervisor.stderr_tail(name, 1500)}"
                )
            return ready()

        try:
            eventually(check, timeout=timeout, what=f"{name} to be ready")
        except WaitTimeout:
            raise HarnessError(f"{name} runs but was not ready within {timeout:.0f}s; see: ctl logs {name}") from None
        return time.time() - since

    def stop(self, name: str) -> str:
        self.supervisor.stop_program(self.known(name))
        return f"{name}: {self.supervisor.state(name)}"

    def start(self, name: str) -> str:
        since = time.time()
        self.supervisor.start_program(self.known(name))
        return f"{name}: ready in {self.wait_ready(name, since):.1f} s"

    def restart(self, name: str) -> str:
        self.stop(name)
        return self.start(name)

    def kill(self, name: str) -> str:
        self.supervisor.kill_group(self.known(name))
        state = self.supervisor.wait_stopped(name, timeout=10)
        return f"{name}: killed ({state})"

    def signal(self, name: str, signal: str) -> str:
        self.supervisor.signal_program(self.known(name), signal.upper().removeprefix("SIG"))
        return f"{name}: SIG{signal.upper().removeprefix('SIG')} sent to its main process"

    def deploy(self, name: str, env: list[str], celery_app: str | None, web_app: str | None) -> str:
        if celery_app and web_app:
            raise HarnessError("give --celery-app or --web-app, not both: a program runs one app")
        since = time.time()
        change = deploy(self.supervisor, self.known(name), parse_env(env), celery_app or web_app)
        return f"{name}: deployed {change}; ready in {self.wait_ready(name, since):.1f} s"

    def logs(self, name: str, stdout: bool, follow: bool, length: int) -> None:
        read = self.supervisor.rpc.tailProcessStdoutLog if stdout else self.supervisor.rpc.tailProcessStderrLog
        text, offset, _ = read(self.known(name), 0, length)
        sys.stdout.write(text)
        sys.stdout.flush()
        while follow:  # until Ctrl-C, as tail -f
            time.sleep(0.5)  # polling supervisord's log, a display refresh
            text, offset, _ = read(name, offset, 65536)
            sys.stdout.write(text)
            sys.stdout.flush()

    def status(self, as_json: bool) -> str:
        status = StatusReader(self.state).read()
        if as_json:
            return json.dumps(status.as_dict(), indent=1)
        programs = ", ".join(f"{name} {state}" for name, state in status.programs.items())
        return f"programs: {programs}\n{status.line()}"


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m harness ctl", description=__doc__.split("\n\n")[0])
    top.add_argument("--state", type=Path, help=STATE_HELP)
    commands = top.add_subparsers(dest="command", required=True, metavar="command")
    status = commands.add_parser("status", help="programs, queues, workers online, tasks so far")
    status.add_argument("--json", action="store_true", help="as JSON, for scripts")
    for name, help in (
        ("stop", "stop it (TERM to its process group), as supervisorctl stop"),
        ("start", "start it and wait until it is ready"),
        ("restart", "stop, then start"),
        ("kill", "SIGKILL to its whole process group"),
    ):
        commands.add_parser(name, help=help).add_argument("program")
    signal = commands.add_parser("signal", help="send a signal to its main process, as kill -SIG <pid>")
    signal.add_argument("program")
    signal.add_argument("signal", type=lambda s: s.upper().removeprefix("SIG"), choices=SIGNALS)
    deploy_ = commands.add_parser("deploy", help="restart it as another version (environment or app)")
    deploy_.add_argument("program")
    deploy_.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="repeatable")
    deploy_.add_argument("--celery-app", help="a worker's new code, module:app")
    deploy_.add_argument("--web-app", help="the web program's new code, module:app")
    logs = commands.add_parser("logs", help="the end of its log (stderr, where Celery logs)")
    logs.add_argument("program")
    logs.add_argument("--stdout", action="store_true", help="its stdout instead (the web server's access log)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing what it writes, until Ctrl-C")
    logs.add_argument("--bytes", type=int, default=4000, help="how much of the end to show (default 4000)")
    broker = commands.add_parser("broker", help="a fault on the broker harness up started (stop, freeze, ...)")
    broker.add_argument(
        "action", choices=control.ACTIONS, metavar="action",
        help="; ".join(f"{name} {args}".strip() + f": {what}" for name, (_, args, what) in control.ACTIONS.items()),
    )  # fmt: skip
    broker.add_argument("args", nargs=argparse.REMAINDER, help="the action's arguments")
    return top


def run(args: argparse.Namespace) -> str | None:
    state = StackState.read(path_for(args.state))
    if args.command == "broker":
        return control.ask(state.control_socket, args.action, args.args)
    controls = Controls(state)
    match args.command:
        case "status":
            return controls.status(args.json)
        case "signal":
            return controls.signal(args.program, args.signal)
        case "deploy":
            return controls.deploy(args.program, args.env, args.celery_app, args.web_app)
        case "logs":
            controls.logs(args.program, args.stdout, args.follow, args.bytes)
            return None
        case command:
            return getattr(controls, command)(args.program)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        said = run(args)
    except HarnessError as error:
        print(f"harness: {error}", file=sys.stderr)
        return 2
    except (OSError, xmlrpc.client.Error) as exc:
        print(
            f"harness: the stack's supervisord does not answer ({type(exc).__name__}: {exc}); is the stack still "
            "up? (python -m harness down cleans up after one that died)",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        return 130
    if said:
        print(said)
    return 0
