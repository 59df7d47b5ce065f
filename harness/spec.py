"""What a scenario runs: the user's Celery app, its web app, its workers, its producer, its settings.

Pure data. ``StackSpec`` is built by the ``stack_spec`` fixture from ``--celery-app`` / ``--web-app``
(or their ini keys) and can be replaced per module, or per test with indirect parametrization.
The settings a scenario needs come from ``@pytest.mark.celery_config(...)`` and are applied to the
app by the launcher in every program; ``env`` is for what the app itself reads from its environment.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.errors import HarnessError

# gevent needs its monkey patches before the app and kombu are imported: the launcher applies them.
POOLS = ("prefork", "threads", "solo", "gevent")
SERVERS = ("auto", "gunicorn", "uvicorn")


@dataclass(frozen=True)
class WorkerSpec:
    """A Celery worker of the user's app: what ``celery -A <app> worker`` options a team tunes.

    ``celery_app`` defaults to the stack's; ``queues`` to the app's own (no ``-Q``: the worker consumes
    what the app declares); ``concurrency`` to the stack's ``worker_concurrency`` (1 in a scenario, the app's
    own ``worker_concurrency`` in the resilience audit); ``pool`` to the stack's ``worker_pool`` (prefork in a
    scenario, the app's own ``worker_pool`` in the audit); ``hostname`` to ``<name>@harness``; ``cwd`` (the
    program's folder and import path) to the stack's: give a worker another checkout to run another release of
    the code beside it.
    """

    name: str = "worker"
    celery_app: str | None = None
    queues: tuple[str, ...] | None = None
    concurrency: int | None = None  # -c; None: the stack's worker_concurrency
    pool: str | None = None  # -P; None: the stack's worker_pool
    fair: bool = False  # -O fair
    max_tasks_per_child: int | None = None
    hostname: str | None = None
    cwd: str | None = None
    celery_config: Mapping[str, Any] = field(default_factory=dict)  # over the scenario's, for this worker only
    env: Mapping[str, str] = field(default_factory=dict)
    extra_args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.pool is not None and self.pool not in POOLS:
            raise HarnessError(f"WorkerSpec(pool={self.pool!r}) is not one of {', '.join(POOLS)}")
        if self.concurrency is not None and self.concurrency < 1:
            raise HarnessError(f"WorkerSpec(concurrency={self.concurrency}) must be at least 1")

    @property
    def nodename(self) -> str:
        return self.hostname or f"{self.name}@harness"

    def replace(self, **changes: Any) -> WorkerSpec:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class WebSpec:
    """The web app (a WSGI app under gunicorn with one synchronous worker, or an ASGI app under uvicorn).

    ``ready_path``: a path that answers below 500 once the app is up; None waits for the port only.
    ``cwd``: the program's folder and import path (default: the stack's).
    """

    name: str = "web"
    app: str | None = None
    celery_app: str | None = None  # only if importing the web app creates no Celery app by itself
    server: str = "auto"
    ready_path: str | None = None
    cwd: str | None = None
    celery_config: Mapping[str, Any] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    server_options: Mapping[str, Any] = field(default_factory=dict)  # gunicorn/uvicorn settings

    def __post_init__(self) -> None:
        if self.server not in SERVERS:
            raise HarnessError(f"WebSpec(server={self.server!r}) is not one of {', '.join(SERVERS)}")

    def replace(self, **changes: Any) -> WebSpec:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class BeatSpec:
    """A ``celery beat`` of the user's app: the process that sends its periodic tasks.

    ``schedule``: the entries to send, as Celery's ``beat_schedule`` with the schedule in seconds (plain data, e.g.
    ``{"report": {"task": "proj.tasks.report", "schedule": 2.0, "options": {"expires": 1.5}}}``); None runs the
    app's own ``beat_schedule``. ``scheduler``: Celery's ``-S`` (``django_celery_beat.schedulers:DatabaseScheduler``);
    None: the app's ``beat_scheduler`` (Celery's default keeps its state in a schedule file, ``stack.schedule_file``;
    a database scheduler adds ``schedule`` to the entries of its database, and keeps them there).
    ``autostart=False`` leaves it stopped until ``stack.start(name)`` (a second beat started during a deploy).
    """

    name: str = "beat"
    celery_app: str | None = None
    schedule: Mapping[str, Mapping[str, Any]] | None = None
    scheduler: str | None = None
    autostart: bool = True
    cwd: str | None = None
    celery_config: Mapping[str, Any] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    extra_args: tuple[str, ...] = ()

    def replace(self, **changes: Any) -> BeatSpec:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class ProbeSpec:
    """The resilience audit's probe task (``harness.probe``), registered on the app by every worker's
    launcher: routed like the app's task ``like`` and given its delivery options (None: the app's defaults)."""

    like: str | None = None


@dataclass(frozen=True)
class StackSpec:
    """A scenario's stack: the web app (or None), its workers, how tasks are sent, and shared settings.

    ``producer`` is a producer spec from ``harness.producers`` (``HttpProducer``, ``DirectProducer``);
    ``cwd`` is the programs' working directory and import path (default: the pytest rootdir);
    ``python`` their interpreter (default: the one running pytest); ``beats`` its ``celery beat`` programs
    (``BeatSpec``); ``deploys`` the versions ``harness up``
    offers to deploy by hand; ``probe`` registers the resilience audit's probe task on every worker
    (``ProbeSpec``).
    """

    celery_app: str | None = None
    web: WebSpec | None = None
    workers: tuple[WorkerSpec, ...] = (WorkerSpec(),)
    beats: tuple[BeatSpec, ...] = ()
    producer: Any = None
    celery_config: Mapping[str, Any] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    python: str | None = None
    # Seconds each program may take to be ready; None: the run's --harness-ready-timeout (default 15 s). A
    # program that exits while starting is reported at once, whatever this says.
    ready_timeout: float | None = None
    # The versions a person may deploy by hand (``harness up`` lists them): program -> ``harness ctl deploy``
    # arguments, e.g. {"web": ("--env PRODUCER=v2",), "worker": ("--celery-app proj.tasks_v2:app",)}.
    deploys: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    probe: ProbeSpec | None = None  # the audit's probe task on every worker (harness.probe)
    # The concurrency of a worker whose WorkerSpec gives none: 1 in a scenario (one pool process, so a fault lands
    # on one known running task, as the catalogue arranges it); None for the app's own (no -c: its
    # worker_concurrency, else Celery's default, the CPUs it may use), which the resilience audit runs.
    worker_concurrency: int | None = 1
    # The pool of a worker whose WorkerSpec gives none: prefork in a scenario (the catalogue's stories are told for
    # it); None for the app's own (no -P: its worker_pool, else Celery's default, prefork), which the audit runs.
    worker_pool: str | None = "prefork"

    def __post_init__(self) -> None:
        names = [w.name for w in self.workers] + [b.name for b in self.beats] + ([self.web.name] if self.web else [])
        if len(set(names)) != len(names):
            raise HarnessError(f"the stack's programs need distinct names; got {names}")

    def replace(self, **changes: Any) -> StackSpec:
        return dataclasses.replace(self, **changes)

    def with_worker_app(self, celery_app: str) -> StackSpec:
        """The same stack with every worker running another version of the app (a deploy)."""
        return self.replace(workers=tuple(dataclasses.replace(w, celery_app=celery_app) for w in self.workers))

    def with_env(self, **env: str) -> StackSpec:
        return self.replace(env={**self.env, **env})

    def with_config(self, **settings: Any) -> StackSpec:
        return self.replace(celery_config={**self.celery_config, **settings})

    def concurrency_of(self, worker: WorkerSpec) -> int | None:
        """The ``-c`` a worker runs with: its own, else the stack's ``worker_concurrency``; None: the app's own."""
        return worker.concurrency if worker.concurrency is not None else self.worker_concurrency

    def beat(self, name: str) -> BeatSpec:
        for beat in self.beats:
            if beat.name == name:
                return beat
        raise HarnessError(f"the stack has no beat named {name!r}; its beats: {[b.name for b in self.beats]}")

    def pool_of(self, worker: WorkerSpec) -> str | None:
        """The ``-P`` a worker runs with: its own, else the stack's ``worker_pool``; None: the app's own."""
        return worker.pool if worker.pool is not None else self.worker_pool

    def worker(self, name: str) -> WorkerSpec:
        for worker in self.workers:
            if worker.name == name:
                return worker
        raise HarnessError(f"the stack has no worker named {name!r}; its workers: {[w.name for w in self.workers]}")
