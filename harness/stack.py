"""The user's app, running: its web app and Celery workers as supervisord programs, in a scenario's vhost.

``AppStack`` turns a ``StackSpec`` into supervisord programs that run through the harness's launcher
(``harness.launcher``: the broker, task events, the scenario's settings and the journal are set on the
user's app there), waits until each is really ready (a worker has announced itself, the web app
answers), binds the spec's producer, and gives scenarios the operator's controls: ``stop`` / ``start``
a program as ``supervisorctl`` would, signal it, kill it, kill a pool process.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import port_for
import psutil

from harness.errors import HarnessError
from harness.faults import (
    BROKER_DOWN,
    ContainerStopped,
    Fault,
    PoolProcessKilled,
    ProgramDeployed,
    ProgramKilled,
    ProgramSignalled,
    ProgramStarted,
    ProgramStopped,
    ScheduleForgotten,
)
from harness.ledger import Ledger
from harness.netfaults import NetFaults
from harness.periodic import BeatSend, BeatSpan, PeriodicVerdict, judge_periodic
from harness.ports import free_ports
from harness.redeploy import deploy
from harness.sent import Sender
from harness.space import ScenarioSpace
from harness.spec import BeatSpec, StackSpec, WebSpec, WorkerSpec
from harness.stalls import STALL_AFTER_S, WorkerFacts, ready_since
from harness.stalls import stalled as stalled_workers
from harness.supervisor import STOPPED_STATES, Program, Supervisor
from harness.timeline import Timeline
from harness.verdict import Verdict
from harness.waiting import WaitTimeout, eventually
from harness.web import WebClient

# A worker is online in about 1 s on an idle machine, several on a loaded one (15 s seen at load 20 on 2
# cores); a program that exits while starting is reported at once, so only a hanging one waits this long.
DEFAULT_READY_TIMEOUT_S = 15.0
# How long the verdict keeps trying to read the queues (a broker that was just restarted may not answer yet).
VERDICT_READ_S = 30.0
# How long the verdict re-reads an unacknowledged count above the tasks in flight (only after a network fault):
# the management API's statistics refresh every 0.5 s on the harness's brokers, but an idle queue's count was
# seen stale for about 5 s.
ACK_COUNT_SETTLE_S = 10.0
SETTLE_POLL_S = 0.25  # how often a verdict in doubt is read again (the counts it waits on refresh every 0.5 s)
# A web app that answers its ready path with 5xx this long is not slow to start: it is failing.
WEB_ERRING_S = 5.0
# How often the web program is started again on a new port when another process took its port first.
PORT_TAKEN_RETRIES = 3

# "ModuleNotFoundError: No module named 'x'", "HarnessLaunchError: ...": the line that says why.
_ERROR_LINE = re.compile(r"^(\w[\w.]*(Error|Exception)\b|Error:)")
LAUNCHER_FILES = ("launcher.py", "forced_settings.py", "journal.py", "introspect.py", "probe.py", "beat_journal.py")
COPIED_PACKAGE = "_celery_harness"


def stderr_gist(text: str, limit: int = 400) -> str:
    """What a program's stderr says of why it stopped: Celery's "Unrecoverable error" line of a worker that gave up;
    else the line that names the error (``SomethingError: ...``, with the two after it, where click-style errors put
    the reason); else its last paragraphs, up to about
    ``limit`` characters, whole (Celery's refusal to run a pickle-accepting worker as root says why and the
    fix two paragraphs above its last line, "User information: uid=0 ...")."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    fatal = [line for line in lines if "Unrecoverable error:" in line]  # Celery's word for why a worker stopped
    if fatal:
        return fatal[-1].split("Unrecoverable error:", 1)[1].strip()
    starts = [i for i, line in enumerate(lines) if _ERROR_LINE.match(line)]
    if starts:
        return " ".join(lines[starts[-1] : starts[-1] + 3])
    chosen: list[str] = []
    for paragraph in reversed([p for p in re.split(r"\n\s*\n", text) if p.strip()]):
        words = [line.strip() for line in paragraph.splitlines() if line.strip()]
        if len(words) > 3:  # a block of log lines: its last ones only, and no further back
            chosen.insert(0, " ".join(words[-3:]) if not chosen else "")
            break
        chosen.insert(0, " ".join(words))
        if sum(map(len, chosen)) > limit:
            break
    return " ".join(c for c in chosen if c)


def harness_module(python: str, module: str, workdir: Path) -> tuple[list[str], dict[str, str]]:
    """How to run ``harness.<module>`` (the launcher, introspection) under ``python``: as the harness's own
    module; or, under another interpreter (an app with its own virtualenv), as a copy of the modules
    they need (standard library and Celery only) in ``workdir``, so the harness's dependencies stay out."""
    if python == sys.executable:
        return [python, "-m", f"harness.{module}"], {}
    folder = workdir / "launcher" / COPIED_PACKAGE
    if not folder.exists():
        folder.mkdir(parents=True)
        (folder / "__init__.py").write_text("")
        for name in LAUNCHER_FILES:
            shutil.copy(Path(__file__).parent / name, folder / name)
    return [python, "-m", f"{COPIED_PACKAGE}.{module}"], {"PYTHONPATH": str(folder.parent)}


class AppStack:
    """The ``stack`` fixture: the app's programs under supervisord, ready, and the operator's controls.

    Attributes a scenario uses: ``spec`` (the ``StackSpec`` it runs), ``vhost`` and ``ledger`` (the same
    objects as those fixtures), ``net`` (``NetFaults``: the network between each program and the broker),
    ``web`` (a ``WebClient`` on the web app, or None), ``producer`` (the bound producer, or None),
    ``timeline`` (every fault and operator action, and the queue depths sampled), ``workdir`` (the scenario's
    directory: supervisord's config and logs, the journal).
    """

    def __init__(
        self,
        spec: StackSpec,
        vhost: ScenarioSpace,
        ledger: Ledger,
        workdir: Path,
        timeline: Timeline | None = None,
        celery_config: Mapping[str, Any] | None = None,
        cwd: str | None = None,
    ) -> None:
        self.spec = spec
        self.vhost = vhost
        self.ledger = ledger
        self.workdir = workdir
        self.timeline = timeline or Timeline()
        self.scenario_config = dict(celery_config or {})
        self.cwd = str(Path(spec.cwd or cwd or Path.cwd()).resolve())
        self.journal_dir = workdir / "journal"
        self.python = spec.python or sys.executable
        self.workers = {w.name: w for w in spec.workers}
        self.beats = {b.name: b for b in spec.beats}
        self.web: WebClient | None = None
        self._rebinds = 0  # the web program's new ports (see _took_another_port)
        self.producer: Sender | None = None
        self.routed_queues: tuple[str, ...] = ()  # where the app's tasks go (its introspection, by the fixture)
        # Each program reaches the broker through a fault proxy of its own (harness.netfaults): ``stack.net``.
        endpoint = vhost.broker.endpoint
        self.net = NetFaults((endpoint.host, endpoint.port), self._record)
        try:
            for program in [*spec.workers, *spec.beats, *([spec.web] if spec.web is not None else [])]:
                self.net.add(program.name)
            programs = [self._program(w, self._worker_config(w)) for w in spec.workers]
            programs += [self._program(b, self._beat_config(b), autostart=b.autostart) for b in spec.beats]
            if spec.web is not None:
                port = free_ports(1)[0]
                programs.append(self._program(spec.web, self._web_config(spec.web, port)))
                self.web = WebClient(f"http://127.0.0.1:{port}")
        except BaseException:
            self.net.close()
            raise
        self.supervisor = Supervisor(workdir, programs)

    def broker_url_for(self, name: str) -> str:
        """The broker URL a program gets: the scenario's vhost, through the program's own fault proxy."""
        return self.vhost.url_via("127.0.0.1", self.net.port(name))

    # -- programs ------------------------------------------------------------------------------
    def settings_for(self, program: WorkerSpec | WebSpec | BeatSpec | None) -> dict[str, Any]:
        """The Celery settings a program gets: the spec's, then the scenario's marker, then its own."""
        own = dict(program.celery_config) if program is not None else {}
        return {**self.spec.celery_config, **self.scenario_config, **own}

    def program_cwd(self, program: WorkerSpec | WebSpec | BeatSpec) -> str:
        """The program's folder and import path: its own ``cwd`` (relative to the stack's), else the stack's."""
        return str((Path(self.cwd) / program.cwd).resolve()) if program.cwd else self.cwd

    def _base_config(self, name: str, program: WorkerSpec | WebSpec | BeatSpec) -> dict[str, Any]:
        settings = self.settings_for(program)
        if isinstance(program, BeatSpec) and program.schedule is not None:
            settings["beat_schedule"] = {name: dict(entry) for name, entry in program.schedule.items()}
        try:
            json.dumps(settings)
        except TypeError as exc:
            raise HarnessError(
                f"the Celery settings for {name} must be plain data (JSON) to reach the program: {exc}"
            ) from None
        return {
            "name": name,
            "broker_url": self.broker_url_for(name),
            "settings": settings,
            "journal_dir": str(self.journal_dir),
            "sys_path": [self.program_cwd(program)],
        }

    def _worker_config(self, worker: WorkerSpec) -> dict[str, Any]:
        app = worker.celery_app or self.spec.celery_app
        if not app:
            raise HarnessError(
                f"worker {worker.name} has no Celery app: pass --celery-app proj.celery:app (or the celery_app ini "
                "key), or give the StackSpec a celery_app"
            )
        return {
            **self._base_config(worker.name, worker),
            "role": "worker",
            "celery_app": app,
            "hostname": worker.nodename,
            "queues": list(worker.queues) if worker.queues else None,
            "concurrency": self.spec.concurrency_of(worker),  # None: no -c, the app's own
            "pool": self.spec.pool_of(worker),  # None: no -P, the app's own
            "fair": worker.fair,
            "max_tasks_per_child": worker.max_tasks_per_child,
            "extra_args": list(worker.extra_args),
            # The resilience audit's probe task, registered on the app by the launcher (harness.probe).
            **({"probe": {"like": self.spec.probe.like}} if self.spec.probe is not None else {}),
        }

    def schedule_file(self, name: str) -> Path:
        """Where a beat keeps its state (Celery's ``PersistentScheduler``: each entry's last run), as ``-s`` names
        it: shelve adds a suffix on some systems (``.db``), so match ``<path>*`` to find or remove it."""
        return self.workdir / "beat" / f"{self.spec.beat(name).name}-schedule"

    def forget_schedule(self, name: str) -> list[Path]:
        """Delete a stopped beat's schedule file, as a container without a volume loses it: at its next start it
        knows no last run. Returns the files removed."""
        if self.supervisor.info(self._known(name))["statename"] not in STOPPED_STATES:
            raise HarnessError(f"{name} is running: stop it before its schedule file goes (beat rewrites it)")
        path = self.schedule_file(name)
        removed = sorted(path.parent.glob(f"{path.name}*"))
        for each in removed:
            each.unlink()
        self._record(ScheduleForgotten(program=name, files=len(removed)))
        return removed

    def _beat_config(self, beat: BeatSpec) -> dict[str, Any]:
        app = beat.celery_app or self.spec.celery_app
        if not app:
            raise HarnessError(
                f"beat {beat.name} has no Celery app: pass --celery-app, or give the StackSpec a celery_app"
            )
        self.schedule_file(beat.name).parent.mkdir(parents=True, exist_ok=True)
        return {
            **self._base_config(beat.name, beat),
            "role": "beat",
            "celery_app": app,
            "scheduler": beat.scheduler,
            "schedule_file": str(self.schedule_file(beat.name)),
            "extra_args": list(beat.extra_args),
        }

    def _web_config(self, web: WebSpec, port: int) -> dict[str, Any]:
        if not web.app:
            raise HarnessError("the web program has no app: pass --web-app proj.wsgi:application or WebSpec(app=...)")
        return {
            **self._base_config(web.name, web),
            "role": "web",
            "web_app": web.app,
            "celery_app": web.celery_app or self.spec.celery_app,
            "server": web.server,
            "bind": f"127.0.0.1:{port}",
            "server_options": dict(web.server_options),
        }

    def _launcher(self) -> tuple[list[str], dict[str, str]]:
        return harness_module(self.python, "launcher", self.workdir)

    def _program(
        self, program: WorkerSpec | WebSpec | BeatSpec, config: dict[str, Any], autostart: bool = True
    ) -> Program:
        name, env = program.name, program.env
        path = self.workdir / "programs" / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config, indent=1))
        command, launcher_env = self._launcher()
        # TMPDIR: billiard (Celery's pool) leaves pymp-* directories behind a killed worker; keep them in the
        # scenario's directory, which goes at the end.
        environment = {
            **self.spec.env, **env, **launcher_env, "PYTHONUNBUFFERED": "1", "TMPDIR": str(self.workdir),
            "CELERY_BROKER_URL": self.broker_url_for(name),
        }  # fmt: skip
        return Program(
            name, [*command, "--config", str(path)], environment, self.program_cwd(program), autostart=autostart
        )

    # -- lifecycle ---------------------------------------------------------------------------
    def launch(self) -> AppStack:
        """Start supervisord (every program autostarts), wait until each program is ready, bind the producer;
        returns the stack. The ``stack`` fixture does this."""
        since = time.time()
        self.supervisor.start()  # every program autostarts, but a beat left for the scenario to start
        self.wait_ready([n for n, p in self.supervisor.programs.items() if p.autostart], since)
        if self.spec.producer is not None:
            self.producer = self.spec.producer.bind(self)
        return self

    def close(self) -> None:
        """Kill the programs (their state is thrown away with the vhost), then stop supervisord and the fault
        proxies; returns None. The ``stack`` fixture does this."""
        if self.producer is not None:
            self.producer.close()
        try:
            if self.supervisor.running:
                self.supervisor.kill_programs()
            self.supervisor.close()
            if self.web is not None:
                self.web.close()
        finally:
            self.net.close()  # every iptables rule of the stack goes, whatever failed above

    def wait_ready(self, names: Iterable[str], since: float) -> None:
        """Wait until each program is ready (a worker consumes its queues since ``since``, the web app answers);
        returns None, or raises at once, with its stderr, if one exits."""
        pending = set(names)

        def still_pending() -> set[str]:
            for name in sorted(pending):
                if self._ready(name, since):
                    pending.discard(name)
            return pending

        try:
            eventually(
                still_pending, until=lambda left: not left, timeout=self.ready_timeout,
                what="programs to be ready", progress=lambda left: f"waiting on {', '.join(sorted(left))}",
            )  # fmt: skip
        except WaitTimeout:
            details = "; ".join(f"{name}: {self._not_ready_reason(name)}" for name in sorted(pending))
            raise HarnessError(
                f"{', '.join(sorted(pending))} did not become ready within {self.ready_timeout:.0f}s ({details}); "
                "an app (or a machine) that needs longer: --harness-ready-timeout SECONDS, or "
                "StackSpec(ready_timeout=...)"
            ) from None

    @property
    def ready_timeout(self) -> float:
        """Seconds each program may take to be ready: the spec's ``ready_timeout``, else 15."""
        return self.spec.ready_timeout if self.spec.ready_timeout is not None else DEFAULT_READY_TIMEOUT_S

    def _not_ready_reason(self, name: str) -> str:
        if name in self.workers:
            what = "it never said it consumes its queues (Celery's worker_ready)"
        elif name in self.beats:
            what = "its scheduler never loaded its schedule"
        else:
            path = self.spec.web.ready_path if self.spec.web else None
            what = f"GET {path} did not answer below 500" if path else "its port accepted no connection"
        return f"running but {what}; its stderr ends: {self._stderr_gist(name) or '(empty)'}"

    def _stderr_gist(self, name: str) -> str:
        return stderr_gist(self.supervisor.stderr_tail(name, 4000))

    def _ready(self, name: str, since: float) -> bool:
        info = self.supervisor.info(name)
        if info["statename"] in STOPPED_STATES:
            if self.spec.web is not None and name == self.spec.web.name and self._took_another_port(name):
                return False
            why = self._stderr_gist(name) or "(no stderr)"
            raise HarnessError(
                f"{name} exited while starting (exit status {info['exitstatus']}): {why} - fix its app or settings"
            )
        if name in self.workers:
            return self.ledger.worker_consuming_since(self.workers[name].nodename, since)
        if name in self.beats:
            return any(e.t >= since for e in self.ledger.beat_steps("beat-ready", name))
        path = self.spec.web.ready_path if self.spec.web else None
        if self.web is None:
            return False
        if self.web.ready(path):
            return True
        if self.web.erring_since is not None and time.monotonic() - self.web.erring_since > WEB_ERRING_S:
            # Up and answering, with an error: that is the app's answer, not a slow start.
            raise HarnessError(
                f"{name} answers GET {path} with {self.web.last_error_status} (for {WEB_ERRING_S:.0f}s): "
                f"{self._stderr_gist(name) or 'its stderr is empty'} - fix the app, or its ready_path"
            )
        return False

    def _took_another_port(self, name: str) -> bool:
        """The web program exited because another process took its port between the harness's pick and the
        server's bind (another run on this machine: port-for's pick is a look, not a reservation). Then it is
        started again on a new port, at most ``PORT_TAKEN_RETRIES`` times; the WebClient every fixture shares
        follows. False when the port is free: the exit was the app's own."""
        assert self.web is not None and self.spec.web is not None
        port = urlsplit(self.web.base_url).port
        if port is None or not port_for.port_is_used(port) or self._rebinds >= PORT_TAKEN_RETRIES:
            return False
        self._rebinds += 1
        new_port = free_ports(1, exclude=[port])[0]
        path = self.workdir / "programs" / f"{name}.json"
        path.write_text(json.dumps(self._web_config(self.spec.web, new_port), indent=1))
        self.web.base_url = f"http://127.0.0.1:{new_port}"
        self.supervisor.start_program(name)
        return True

    # -- the operator's controls -------------------------------------------------------------
    def _record(self, fault: Fault) -> None:
        self.timeline.record(fault)

    def _known(self, name: str) -> str:
        if name not in self.supervisor.programs:
            raise HarnessError(f"the stack has no program {name!r}; its programs: {sorted(self.supervisor.programs)}")
        return name

    def stop(self, name: str) -> None:
        """``supervisorctl stop NAME``: its stop signal (TERM), to the whole process group; returns None once
        supervisord has stopped it (marked on the timeline)."""
        self._record(ProgramStopped(program=self._known(name)))
        self.supervisor.stop_program(name)

    def start(self, name: str, wait: bool = True) -> float:
        """``supervisorctl start NAME``, returning once the program is ready (``wait=False``: at once, for a
        program expected not to get ready, e.g. a worker started while the broker is down); returns when it
        was started (for ``wait_ready``)."""
        since = time.time()
        self._record(ProgramStarted(program=self._known(name)))
        self.supervisor.start_program(name)
        if wait:
            self.wait_ready([name], since)
        return since

    def deploy(self, name: str, env: Mapping[str, str] | None = None, app: str | None = None) -> str:
        """Roll out another version of one program (new environment variables, or another ``celery_app`` /
        ``web_app``) and restart it, returning once it is ready; returns what changed."""
        since = time.time()
        change = deploy(self.supervisor, self._known(name), env, app)
        self._record(ProgramDeployed(program=name, change=change, at=since))
        self.wait_ready([name], since)
        return change

    def restart(self, name: str) -> None:
        """``stop`` then ``start``: returns None once the program is ready again."""
        self.stop(name)
        self.start(name)

    def signal(self, name: str, signal: str) -> None:
        """Send TERM, QUIT, KILL... to the program's main process, as ``kill -SIG <pid>`` would; returns None at
        once (``wait_exited`` waits for the exit)."""
        self._record(ProgramSignalled(program=self._known(name), signal=signal))
        self.supervisor.signal_program(name, signal)

    def kill(self, name: str) -> None:
        """SIGKILL the program's whole process group: the machine or container under it died; returns None once
        it has exited (nothing restarts it: ``start`` does)."""
        self._record(ProgramKilled(program=self._known(name)))
        self.supervisor.kill_group(name)
        self.wait_exited(name)

    def broker_sockets(self, name: str) -> list[tuple[int, str]]:
        """The program's main process's TCP sockets to the broker (through its fault proxy), as (local port,
        state): ESTABLISHED while it believes it is connected, SYN_SENT while it tries to reconnect."""
        return self.net.sockets(self._known(name), self.supervisor.info(name)["pid"])

    def pool_of(self, name: str) -> str:
        """The pool the worker runs: its spec's, else (the app's own) what it said when it came online, else
        Celery's default, prefork."""
        worker = self.workers[self._known(name)]
        pool = self.spec.pool_of(worker)
        if pool is None:
            said = [
                e.fields.get("pool") for e in self.ledger.worker_events(worker.nodename, "worker-online", "journal")
            ]
            pool = next((p for p in reversed(said) if p), "prefork")
        return pool

    def pool_pids(self, name: str) -> list[int]:
        """The pids of the worker's pool processes (prefork children of its main process), sorted. Only prefork has
        them: another pool runs its tasks in the worker's own process, and is refused in one line."""
        pool = self.pool_of(name)
        if pool != "prefork":
            raise HarnessError(
                f"{name} runs the {pool} pool, which has no pool processes: its tasks run in the worker's main "
                "process, so the equivalent fault is the whole worker's (stack.kill)"
            )
        return sorted(child.pid for child in psutil.Process(self.supervisor.info(name)["pid"]).children())

    def kill_pool_process(self, name: str) -> int:
        """SIGKILL one pool process of a worker (as the kernel's OOM killer would); returns its pid."""
        pids = self.pool_pids(name)
        if not pids:
            raise HarnessError(f"{name} has no pool process to kill now (its pool processes are being replaced?)")
        self._record(PoolProcessKilled(program=name, pid=pids[0]))
        psutil.Process(pids[0]).kill()
        return pids[0]

    def container_stop(self, name: str, grace: float) -> str:
        """``docker stop -t GRACE`` (or Kubernetes' termination grace period): SIGTERM to the main process, and, if
        it has not exited within ``grace`` seconds, SIGKILL to every process left. Returns how it ended:
        ``"exited"`` (by itself within the grace) or ``"killed"``. Marked on the timeline."""
        self._record(ContainerStopped(program=self._known(name), grace=grace))
        self.supervisor.signal_program(name, "TERM")
        try:
            self.supervisor.wait_stopped(name, grace)
            return "exited"
        except WaitTimeout:
            self._record(ProgramKilled(program=name))
            self.supervisor.kill_group(name)
            self.wait_exited(name)
            return "killed"

    def wait_exited(self, name: str, timeout: float = 30.0) -> str:
        """Wait until the program has exited (stopped, exited or fatal, as supervisord says); returns that state."""
        return self.supervisor.wait_stopped(self._known(name), timeout)

    def state(self, name: str) -> str:
        """The program's state as supervisord says it now: ``RUNNING``, ``STOPPED``, ``EXITED``, ``STARTING``..."""
        return self.supervisor.state(self._known(name))

    def wait_worker_reconnected(self, name: str, timeout: float = 60.0) -> None:
        """Wait until a worker that lost the broker is connected again: an event from it after the broker
        last went down; returns None. Celery's own reconnect backs off (2, 4, 6... s): a generous bound."""
        hostname = self.workers[self._known(name)].nodename
        since = self.timeline.last(BROKER_DOWN)
        eventually(
            lambda: [e for e in self.ledger.worker_events(hostname, witness="events") if e.received_at >= since],
            timeout=timeout, what=f"{name} to reconnect to the broker (an event from it after the broker went down)",
        )  # fmt: skip

    def wait_every_copy_ran(self, ids: Iterable[str], quiet: float, timeout: float) -> None:
        """Wait until no queue of the space holds a message (ready or unacknowledged), every run of ``ids`` that
        started has ended (each task at least once), and no step of theirs came for ``quiet`` seconds: a copy still
        in flight (in a worker's socket, or about to be put back by a Redis restore) shows within that. Returns None.
        """
        ids = list(ids)

        def done() -> bool:
            runs = [self.ledger.history(i) for i in ids]
            if not all(h.count("task-started") == h.count("task-succeeded") + h.count("task-failed") > 0 for h in runs):
                return False
            last = max(e.timestamp for h in runs for e in h.events)
            idle = all(self.vhost.depth(q).total == 0 for q in self.vhost.queue_names())
            return idle and time.time() - last > quiet

        eventually(done, timeout=timeout, what=f"every copy of {len(ids)} tasks to have run, then {quiet:g} s quiet")

    def busy_worker(self, tasks: int, timeout: float = 10.0) -> tuple[list[str], str]:
        """Send ``tasks`` tasks and wait until the worker holds them all (running or prefetched) and runs one
        of them; return every id and the running one."""
        if self.producer is None:
            raise HarnessError("busy_worker sends tasks: give the stack a producer (StackSpec(producer=...))")
        ids = [sent.task_id for sent in self.producer.send_many(tasks)]
        self.ledger.wait_received(ids, timeout=timeout)
        return ids, self.ledger.wait_running(ids, timeout=timeout, accepted=True)

    # -- observation -------------------------------------------------------------------------
    def verdict(
        self,
        settle: float = ACK_COUNT_SETTLE_S,
        stall_after: float = STALL_AFTER_S,
        periodic_until: float | None = None,
    ) -> Verdict:
        """The fate of every task sent so far; every queue of the vhost is read for tasks still waiting.

        A reading that fails (the harness's connection died with a restarted broker) is made again on a
        fresh connection, for a while: the broker may still be coming back. After a network fault cut a
        connection, while RabbitMQ holds more unacknowledged messages than there are tasks in flight, ended
        tasks are ``unsettled`` (an ack was lost; a message will come back): the reading is repeated for up
        to ``settle`` seconds first. A ``settle`` long enough for RabbitMQ to drop the dead connection (and
        redeliver what it held) gives the final fates; it does not wait for tasks still running (``unsettled``, in
        flight): ``ledger.wait_settled`` does. ``verdict.stalled`` names the workers that live but have taken
        nothing from their queue's waiting tasks for ``stall_after`` seconds (``harness.stalls``).

        With a beat, ``verdict.periodic`` gives every due run a fate (``harness.periodic``) up to ``periodic_until``
        (default: now; a scenario that wants exact counts while beat keeps sending names a moment it waited for),
        and ``verdict.periodic_tasks`` the fates of the tasks the beats sent."""

        def read() -> tuple[dict[str, str], int | None, dict[str, str] | None]:
            queued: dict[str, str] = {}
            unacked: int | None = 0
            for queue in self.vhost.queue_names():
                depth = self.vhost.depth(queue)
                if depth.ready:
                    queued.update(dict.fromkeys(self.vhost.peek_task_ids(queue), queue))
                unacked = None if unacked is None or depth.unacked is None else unacked + depth.unacked
            held = getattr(self.vhost, "held", None)  # a broker that says whose each unacked message is (Redis)
            return queued, unacked, held() if held is not None else None

        def judged() -> Verdict:
            queued, unacked, unacked_ids = eventually(
                read, until=lambda _: True, timeout=VERDICT_READ_S,
                what="the vhost's queues to be read for the verdict (is the broker up?)",
            )  # fmt: skip
            verdict = self.ledger.verdict(
                queued, unacked, connections_cut=self.net.cut_connections, live=self.live_workers(),
                unacked_ids=unacked_ids,
            )  # fmt: skip
            verdict.stalled = self.stalled(stall_after)
            if self.beats:
                verdict.periodic = judge_periodic(
                    self.ledger.schedule(), self.ledger.beat_sends().values(), self.beat_spans(),
                    self.ledger.histories(), periodic_until or time.time(), verdict.periodic_tasks,
                )  # fmt: skip
            if verdict.stalled and unacked_ids is not None:
                # A Redis pop hands a message to the worker's connection before the worker records it anywhere:
                # a task in no list and in no hash may sit in a stalled worker's socket, to run when it wakes.
                for task_id in verdict.ids("lost"):
                    verdict.reclassify(
                        task_id, "unsettled",
                        "would be lost, but a worker is stalled: Redis may have handed it to that worker's connection",
                    )  # fmt: skip
            return verdict

        # Unacknowledged counts come from the management API's statistics, a refresh behind: an ack sent just
        # now may still be counted. Beyond the tasks in flight, they are read again for a few refreshes before
        # the ended tasks are called unsettled (a lost acknowledgement stays; a late count does not).
        # Read every SETTLE_POLL_S, not every 50 ms: a whole verdict (every queue read, both witnesses merged) costs
        # tens of CPU-ms, a settle can last tens of seconds, and the counts it waits on refresh every 0.5 s.
        try:
            return eventually(judged, until=lambda verdict: not verdict.doubt, timeout=settle, interval=SETTLE_POLL_S,
                              what="the unacknowledged count to match the tasks in flight")  # fmt: skip
        except WaitTimeout:
            return judged()

    def periodic_verdict(self, last: BeatSend, after: float | None = None, timeout: float = 30.0) -> PeriodicVerdict:
        """The due runs up to the send ``last`` (one a scenario waited for) and ``after`` seconds more (default: half
        its entry's interval, so the next send is not judged yet), once the tasks sent up to it have ended: exact
        counts while beat keeps sending. Returns ``verdict.periodic``."""
        self.ledger.wait_settled([s.task_id for s in self.ledger.beat_sends().values() if s.at <= last.at], timeout)
        if after is None:
            every = self.ledger.schedule().get(last.entry)
            after = every.every / 2 if every is not None and every.every else 0.0
        periodic = self.verdict(periodic_until=last.at + after).periodic
        assert periodic is not None  # a beat sent ``last``
        return periodic

    def beat_spans(self) -> list[BeatSpan]:
        """When each beat ran: from each load of its schedule to the next stop, kill, exit signal or deploy of it
        (on the timeline); the last one open while it runs."""
        ends = (ProgramStopped, ProgramKilled, ProgramDeployed, ProgramSignalled)
        spans = []
        for name in self.beats:
            faults = [f for f in self.timeline.faults if isinstance(f, ends) and f.program == name]
            for step in self.ledger.beat_steps("beat-ready", name):
                end = next((f for f in faults if f.at >= step.t), None)
                how = type(end).__name__.removeprefix("Program").lower() if end is not None else ""
                spans.append(BeatSpan(name, step.t, end.at if end is not None else None, how))
        return spans

    def consumers_of(self, queue: str) -> list[str]:
        """The running workers that consume ``queue`` (told so, or, told nothing, the app's queues): what a broker
        that cannot count consumers (Redis) is asked instead."""
        live = set(self.live_workers().values())
        return [n for n, w in self.workers.items() if n in live and queue in (w.queues or self.vhost.queues)]

    def stalled(self, after: float = STALL_AFTER_S) -> list[str]:
        """One line per worker that lives, holds no unfinished task, and has received nothing for ``after``
        seconds while its queues held ready tasks (see ``harness.stalls``)."""
        now = time.time()
        live = set(self.live_workers().values())
        histories = self.ledger.histories()
        facts, queues = [], set()
        for name, worker in self.workers.items():
            hostname = worker.nodename
            received = [e.timestamp for h in histories.values() for e in h.events
                        if e.type == "task-received" and e.hostname == hostname]  # fmt: skip
            online = [e.timestamp for e in self.ledger.worker_events(hostname, "worker-online")]
            holding = sum(
                1 for h in histories.values()
                if h.terminal is None and any(e.type == "task-received" and e.hostname == hostname for e in h.events)
            )  # fmt: skip
            consumes = tuple(worker.queues or self.vhost.queues)
            queues.update(consumes)
            last = max([*received, *online], default=None)
            facts.append(WorkerFacts(name, consumes, name in live, holding, last))
        samples = {q: [(s.at, s.ready) for s in list(self.timeline.samples) if s.queue == q] for q in queues}
        try:
            ready = {q: self.vhost.ready(q) for q in queues}
        except Exception:  # the broker is away: no worker can be told stalled now
            return []
        since = {q: ready_since(samples[q], now) if samples[q] else None for q in queues}
        return stalled_workers(facts, ready, since, now, after)

    def live_workers(self) -> dict[int, str]:
        """The worker processes running now: pid -> worker name (empty when supervisord is gone)."""
        live = {}
        for name in self.workers:
            try:
                info = self.supervisor.info(name)
            except Exception:  # supervisord stopped (a report made at tear-down): no worker holds anything
                return {}
            if info["statename"] == "RUNNING" and info.get("pid"):
                live[info["pid"]] = name
        return live

    def cpu_seconds(self) -> float | None:
        """CPU-seconds the programs and their supervisord spent so far: supervisord's and every live
        descendant's own time, plus what their exited children spent (counted when they were reaped); None
        once supervisord is gone. The broker's share is not in it (one broker serves many scenarios)."""
        try:
            root = psutil.Process(self.supervisor.pid or -1)
            processes = [root, *root.children(recursive=True)]
        except (psutil.Error, ValueError):
            return None
        spent = 0.0
        for process in processes:
            try:
                times = process.cpu_times()
            except psutil.Error:  # exited meanwhile: its time is in its parent's children's share once reaped
                continue
            spent += times.user + times.system + times.children_user + times.children_system
        return spent

    def not_running(self) -> list[str]:
        """One line per program that is not running now (stopped by the scenario, or exited by itself): its
        state, exit status and the line of its stderr that names the error."""
        lines = []
        for name in self.supervisor.programs:
            info = self.supervisor.info(name)
            if info["statename"] != "RUNNING":
                why = self._stderr_gist(name) or "(no stderr)"
                lines.append(f"{name} is {info['statename']} (exit status {info['exitstatus']}): {why}")
        return lines

    def unconsumed(self) -> list[str]:
        """One line per queue the app's tasks are routed to that has no consumer now (a passive declare
        each): its tasks wait there, which a wait for them meets as a timeout."""
        lines = []
        for queue in self.routed_queues:
            try:
                depth = self.vhost.depth(queue)
            except Exception:  # the broker away, or a queue the vhost cannot read: nothing to say
                continue
            if depth.consumers or depth.consumers is None:  # has one, or the broker cannot count them (Redis)
                continue
            told = [w.name for w in self.spec.workers if w.queues and queue in w.queues]
            why = (
                f"its worker {', '.join(told)} is not consuming now" if told
                else "no worker of the stack is told to consume it: add it to a WorkerSpec(queues=(...))"
            )  # fmt: skip
            waiting = f" ({depth.ready} ready)" if depth.ready else ""
            lines.append(f"queue {queue} has no consumer{waiting}: tasks routed there wait; {why}")
        return lines

    def logs(self) -> dict[str, str]:
        """Each program's stderr tail (program name -> text), for a failed scenario's report."""
        return {name: self.supervisor.stderr_tail(name, 3000) for name in self.supervisor.programs}

    def stacks(self) -> dict[str, str]:
        """Where each running program's Python threads are (``py-spy dump``, if installed): what a program
        that does not exit or answer is waiting on, for a failed scenario's report."""
        import shutil
        import subprocess

        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(spy).exists():
            return {}
        dumps = {}
        for name in self.supervisor.programs:
            try:
                info = self.supervisor.info(name)
            except Exception:  # supervisord itself is gone
                return dumps
            if info.get("statename") == "RUNNING" and info.get("pid"):
                done = subprocess.run(
                    [spy, "dump", "--pid", str(info["pid"])], capture_output=True, text=True, timeout=20
                )
                dumps[name] = (done.stdout or done.stderr)[-4000:]
        return dumps
