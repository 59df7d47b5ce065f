"""The application under test, running: its web app and Celery workers as supervisord programs.

``StackSpec`` says what to run (override the ``stack_spec`` fixture to change it); ``AppStack``
starts it in a scenario's vhost, waits until each program is really ready (the web app answers
HTTP, a worker has announced itself with ``worker-online``), and gives scenarios the operator's
controls: stop, start, restart and signal a program, as ``supervisorctl`` would.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

import app_under_test
from harness.errors import HarnessError
from harness.ledger import Ledger
from harness.ports import free_ports
from harness.supervisor import STOPPED_STATES, Program, Supervisor
from harness.timeline import Timeline
from harness.verdict import Verdict
from harness.vhost import ScenarioVhost
from harness.waiting import WaitTimeout, eventually
from harness.web import WebClient

PROJECT_ROOT = Path(app_under_test.__file__).resolve().parent.parent
# "ModuleNotFoundError: No module named 'x'", "Error: Invalid value for '-A'...": the line that says why.
_ERROR_LINE = re.compile(r"^(\w[\w.]*(Error|Exception)\b|Error:)")

# Short work so scenarios stay fast; a scenario that needs long tasks overrides it.
DEFAULT_ENV = {"HELLO_WORK_SECONDS": "0.05", "INLINE_WORK_SECONDS": "2.0"}


@dataclass(frozen=True)
class WorkerSpec:
    """A Celery worker program: ``celery -A <app> worker -Q <queues> -E``."""

    name: str = "worker_hello"
    app: str = "app_under_test.tasks"
    queues: tuple[str, ...] = ("hello_queue",)
    concurrency: int = 1
    extra_args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)

    @property
    def hostname(self) -> str:
        return f"{self.name}@harness"

    def program(self, env: dict[str, str]) -> Program:
        command = [
            sys.executable, "-m", "celery", "-A", self.app, "worker",
            "-Q", ",".join(self.queues), "-c", str(self.concurrency), "-n", self.hostname,
            "-E", "--without-gossip", "--without-mingle", "--loglevel", "INFO", *self.extra_args,
        ]  # fmt: skip
        return Program(self.name, command, {**env, **self.env}, str(PROJECT_ROOT))


@dataclass(frozen=True)
class WebSpec:
    """The Flask app under gunicorn with one synchronous worker, as in the classic demo."""

    name: str = "web"
    app: str = "app_under_test.web:app"
    env: dict[str, str] = field(default_factory=dict)

    def program(self, port: int, env: dict[str, str]) -> Program:
        command = [
            sys.executable, "-m", "gunicorn", "--workers", "1", "--worker-class", "sync",
            "--bind", f"127.0.0.1:{port}", "--graceful-timeout", "3", "--access-logfile", "-",
            "--no-control-socket", self.app,
        ]  # fmt: skip
        return Program(self.name, command, {**env, **self.env}, str(PROJECT_ROOT))


@dataclass(frozen=True)
class StackSpec:
    """What a scenario runs: the web app (or None), its workers, and environment shared by all programs."""

    web: WebSpec | None = field(default_factory=WebSpec)
    workers: tuple[WorkerSpec, ...] = (WorkerSpec(),)
    env: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_ENV))
    ready_timeout: float = 7.0  # a worker is online in about 1 s; leaves a bad-input run under 10 s

    def __post_init__(self) -> None:
        # A scenario's env adds to the defaults rather than replacing them.
        object.__setattr__(self, "env", {**DEFAULT_ENV, **self.env})

    def with_worker_app(self, app: str) -> StackSpec:
        """The same stack with every worker running another version of the tasks module."""
        return dataclasses.replace(self, workers=tuple(dataclasses.replace(w, app=app) for w in self.workers))


class AppStack:
    def __init__(
        self, spec: StackSpec, vhost: ScenarioVhost, ledger: Ledger, workdir: Path, timeline: Timeline | None = None
    ) -> None:
        self.spec = spec
        self.timeline = timeline or Timeline()
        self.vhost = vhost
        self.ledger = ledger
        self.workdir = workdir
        # TMPDIR: billiard (Celery's pool) leaves pymp-* directories behind a killed worker; keep them in
        # the scenario's directory, which goes at the end.
        env = {**spec.env, "CELERY_BROKER_URL": vhost.amqp_url, "PYTHONUNBUFFERED": "1", "TMPDIR": str(workdir)}
        programs = [w.program(env) for w in spec.workers]
        self.web: WebClient | None = None
        if spec.web is not None:
            port = free_ports(1)[0]
            programs.append(spec.web.program(port, env))
            self.web = WebClient(f"http://127.0.0.1:{port}", ledger)
        self.workers = {w.name: w for w in spec.workers}
        self.supervisor = Supervisor(workdir, programs)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> AppStack:
        since = time.time()
        self.supervisor.start()  # every program autostarts
        self.wait_ready(self.supervisor.programs, since)
        return self

    def close(self) -> None:
        """Kill the programs (their state is thrown away with the vhost), then stop supervisord."""
        if self.supervisor.running:
            self.supervisor.kill_programs()
        self.supervisor.close()

    def wait_ready(self, names: Iterable[str], since: float) -> None:
        """Wait until each program is ready; fail at once, with its stderr, if one exits."""
        pending = set(names)

        def still_pending() -> set[str]:
            for name in sorted(pending):
                if self._ready(name, since):
                    pending.discard(name)
            return pending

        try:
            eventually(
                still_pending, until=lambda left: not left, timeout=self.spec.ready_timeout,
                what="programs to be ready", progress=lambda left: f"waiting on {', '.join(sorted(left))}",
            )  # fmt: skip
        except WaitTimeout:
            details = "; ".join(f"{name}: {self._not_ready_reason(name)}" for name in sorted(pending))
            raise HarnessError(
                f"{', '.join(sorted(pending))} did not become ready within {self.spec.ready_timeout:.0f}s ({details})"
            ) from None

    def _not_ready_reason(self, name: str) -> str:
        what = "no worker-online event" if name in self.workers else "/healthz did not answer 200"
        return f"running but {what}; its stderr ends: {self._stderr_gist(name) or '(empty)'}"

    def _stderr_gist(self, name: str) -> str:
        """The line that names the error (``SomethingError: ...``), else the last line of stderr."""
        lines = [line.strip() for line in self.supervisor.stderr_tail(name, 4000).splitlines() if line.strip()]
        starts = [i for i, line in enumerate(lines) if _ERROR_LINE.match(line)]
        if not starts:
            return lines[-1] if lines else ""
        # Click-style errors put the reason on the lines after "Error:".
        return " ".join(lines[starts[-1] : starts[-1] + 3])

    def _ready(self, name: str, since: float) -> bool:
        info = self.supervisor.info(name)
        if info["statename"] in STOPPED_STATES:
            why = self._stderr_gist(name) or "(no stderr)"
            raise HarnessError(
                f"{name} exited while starting (exit status {info['exitstatus']}): {why} - fix its command or module"
            )
        if name in self.workers:
            return self.ledger.worker_online_since(self.workers[name].hostname, since)
        return self.web is not None and self.web.healthy()

    # -- the operator's controls -------------------------------------------------------------
    def stop(self, name: str) -> None:
        """``supervisorctl stop NAME``: its stop signal (TERM), to the whole process group."""
        self.timeline.mark(f"{name} stopped")
        self.supervisor.stop_program(name)

    def start_program(self, name: str) -> None:
        """``supervisorctl start NAME``, returning once the program is ready."""
        since = time.time()
        self.timeline.mark(f"{name} started")
        self.supervisor.start_program(name)
        self.wait_ready([name], since)

    def restart(self, name: str) -> None:
        self.stop(name)
        self.start_program(name)

    def signal(self, name: str, signal: str) -> None:
        """Send TERM, QUIT, KILL... to the program's main process, as ``kill -SIG <pid>`` would."""
        self.timeline.mark(f"SIG{signal} to {name}")
        self.supervisor.signal_program(name, signal)

    def wait_worker_reconnected(self, name: str, timeout: float = 60.0) -> None:
        """Wait until a worker that lost the broker is connected again: an event from it after the
        broker last went down. Celery's own reconnect backs off (2, 4, 6... s): a generous bound."""
        hostname = self.workers[name].hostname
        since = self.timeline.last_mark_of(("broker stopped", "broker frozen"))
        eventually(
            lambda: [e for e in self.ledger.worker_events(hostname) if e.received_at >= since],
            timeout=timeout, what=f"{name} to reconnect to the broker (a worker event after the restart)",
        )  # fmt: skip

    def busy_worker(self, tasks: int, timeout: float = 10.0) -> tuple[list[str], str]:
        """Click ``tasks`` times and wait until the worker holds them all (running or prefetched) and
        runs one of them; return every id and the running one."""
        assert self.web is not None, "busy_worker clicks the web app's button"
        ids = [click.task_id for click in self.web.clicks(tasks)]
        self.ledger.wait_received(ids, timeout=timeout)
        return ids, self.ledger.wait_running(ids, timeout=timeout)

    def kill(self, name: str) -> None:
        """SIGKILL the program's whole process group: the machine or container under it died."""
        self.timeline.mark(f"{name} killed")
        self.supervisor.kill_group(name)
        self.wait_exited(name)

    def pool_pids(self, name: str) -> list[int]:
        """The worker's pool processes (prefork children of its main process)."""
        return sorted(child.pid for child in psutil.Process(self.supervisor.info(name)["pid"]).children())

    def kill_pool_process(self, name: str) -> int:
        """SIGKILL one pool process of a worker (as the kernel's OOM killer would); returns its pid."""
        pids = self.pool_pids(name)
        if not pids:
            raise HarnessError(f"{name} has no pool process to kill (is it running with -P prefork?)")
        self.timeline.mark(f"{name} pool process killed")
        psutil.Process(pids[0]).kill()
        return pids[0]

    def wait_exited(self, name: str, timeout: float = 30.0) -> str:
        return eventually(
            lambda: self.state(name), until=lambda s: s in STOPPED_STATES, timeout=timeout,
            what=f"{name} to exit",
        )  # fmt: skip

    def state(self, name: str) -> str:
        return self.supervisor.state(name)

    # -- observation -------------------------------------------------------------------------
    def verdict(self, queues: Iterable[str] | None = None) -> Verdict:
        """The fate of every task sent so far, with the queues peeked for tasks still waiting."""
        queued: list[str] = []
        unacked: int | None = 0
        for queue in queues if queues is not None else self.vhost.queues:
            depth = self.vhost.depth(queue)
            if depth.ready:
                queued.extend(self.vhost.peek_task_ids(queue))
            unacked = None if unacked is None or depth.unacked is None else unacked + depth.unacked
        return self.ledger.verdict(queued, unacked)

    def logs(self) -> dict[str, str]:
        """Each program's stderr tail, for a failed scenario's report."""
        return {name: self.supervisor.stderr_tail(name, 3000) for name in self.supervisor.programs}
