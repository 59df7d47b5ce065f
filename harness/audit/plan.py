"""What the audit runs: the user's stack reduced to the worker that consumes the probe's queue, the probe
(or a real task), the settings over the app's, and what the team accepts. Built once per session from
the options (``--audit-*``, with ini twins) and what the app declares (``harness.introspect``).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from harness.audit.beat import BeatPlan, beat_plan
from harness.audit.expect import Expectations, parse
from harness.audit.failures import FAILURES
from harness.audit.producer import AuditProducer
from harness.brokers.redis.settings import PERSISTENCE
from harness.errors import HarnessError
from harness.probe import PROBE_NAME
from harness.spec import ProbeSpec, StackSpec, WorkerSpec

DEFAULT_WORK_S = 1.0
DEFAULT_POOL = "prefork"  # Celery's worker_pool
APP_LAYER = "the app's own"


@dataclass(frozen=True)
class AuditPlan:
    celery_app: str
    spec: StackSpec  # one worker, no web app, the audit's producer, the probe on the worker
    worker: WorkerSpec
    queue: str  # where the audited task goes
    like: str | None  # the real task the probe imitates
    task: str  # what is sent: the probe, or the real task of --audit-task
    args: tuple[Any, ...]
    work_s: float  # how long the probe works when a fault must land mid-task
    settings: dict[str, Any]  # --audit-config, over the app's own settings
    expectations: Expectations
    concurrency_from: str = "the stack's WorkerSpec"  # who decides the worker's -c (see concurrency_source)
    pool_from: str = "the stack's WorkerSpec"  # who decides the worker's -P (see pool_source)
    # The app's own broker_transport_options (--audit-config's if it sets them): what a row's transport settings
    # (a short visibility_timeout on Redis) are merged over, and what its notes compare with.
    transport_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    redis_persistence: str = "off"  # the Redis server's persistence for the broker-restart rows
    beat: BeatPlan | None = None  # the app's periodic tasks as the beat rows run them (None: not read)

    def not_for_app(self) -> dict[str, str]:
        """The failures that do not apply to this app, and why (the beat rows, for an app without periodic tasks)."""
        if self.beat is None:
            return {}
        return {f.key: why for f in FAILURES if f.periodic and (why := self.beat.not_applicable(f.key))}

    def cannot_judge(self, key: str) -> str | None:
        """Why the audit cannot judge this failure for this app, though it applies (None: it can)."""
        failure = next((f for f in FAILURES if f.key == key), None)
        if failure is None or not failure.periodic:
            return None
        if self.beat is None:
            return "cannot judge: the app's beat_schedule was not read"
        return self.beat.cannot_judge(key)

    @property
    def real_task(self) -> bool:
        return self.task != PROBE_NAME

    def describe(self) -> str:
        if self.real_task:
            what = f"the real task {self.task}{list(self.args)}"
        else:
            what = f"the probe, routed like {self.like}" if self.like else "the probe, with the app's defaults"
        return f"{what} (queue {self.queue})"

    def as_dict(self) -> dict[str, Any]:
        worker = self.worker
        return {
            "celery_app": self.celery_app,
            "task": self.task,
            "like": self.like,
            "args": list(self.args),
            "queue": self.queue,
            "work_s": self.work_s,
            "worker": {
                "name": worker.name,
                "queues": list(worker.queues or ()),
                "concurrency": worker.concurrency,  # None: the app's own (the run's meta says which it was)
                "concurrency_from": self.concurrency_from,
                "pool": worker.pool,  # None: the app's own (Celery's default, prefork), as pool_from says
                "pool_from": self.pool_from,
            },
            "audit_config": self.settings,
            "expect": self.expectations.describe(),
        }


def _json(option: str, text: str | None, kind: type, default: Any) -> Any:
    if not text:
        return default
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise HarnessError(f"--{option} {text!r} is not JSON: {exc}") from None
    if not isinstance(value, kind):
        raise HarnessError(f"--{option} {text!r} must be a JSON {'list' if kind is list else 'object'}")
    return value


def _task_queue(info: dict[str, Any], name: str | None, option: str) -> str:
    tasks = info.get("tasks", {})
    if name is None:
        return info.get("default_queue") or "celery"
    if name not in tasks:
        known = ", ".join(sorted(tasks)) or "none"
        raise HarnessError(f"--{option} {name}: the app has no such task; its tasks: {known}")
    return tasks[name]["options"].get("queue") or info.get("default_queue") or "celery"


def audited_worker(spec: StackSpec, queue: str) -> WorkerSpec:
    """The worker that consumes ``queue``: the first that names it, else the first that names no queue
    (it is given the queue, as a deployment runs a worker with -Q for it)."""
    for worker in spec.workers:
        if worker.queues and queue in worker.queues:
            return worker
    for worker in spec.workers:
        if not worker.queues:
            return dataclasses.replace(worker, queues=(queue,))
    consumed = "; ".join(f"{w.name}: {', '.join(w.queues or ())}" for w in spec.workers)
    raise HarnessError(
        f"the audited task goes to queue {queue!r}, which no worker of the stack consumes ({consumed}); "
        "pass --audit-like a task that one of them runs"
    )


def concurrency_source(worker: WorkerSpec, layers: list[tuple[str, dict[str, Any]]]) -> str:
    """Who decides the audited worker's concurrency: its WorkerSpec if it gives one, else the last of the
    settings ``layers`` (the app's own, the stack's celery_config, --audit-config, the worker's) that sets
    ``worker_concurrency``, else Celery's default."""
    if worker.concurrency is not None:
        return f"the stack's WorkerSpec(concurrency={worker.concurrency})"
    for name, settings in reversed(layers):
        if settings.get("worker_concurrency"):
            return f"{name} (worker_concurrency={settings['worker_concurrency']!r})"
    return "Celery's default (worker_concurrency unset: the CPUs the worker may use)"


def pool_source(worker: WorkerSpec, layers: list[tuple[str, dict[str, Any]]]) -> tuple[str | None, str]:
    """The audited worker's pool and who decides it: its WorkerSpec if it gives one, else the last of the settings
    ``layers`` that sets ``worker_pool``, else Celery's default (None: no -P, prefork). A pool found in the settings
    is passed as -P too: a green pool (gevent) must be known before the app is imported, to patch first."""
    if worker.pool is not None:
        return worker.pool, f"the stack's WorkerSpec(pool={worker.pool!r})"
    for name, settings in reversed(layers):
        pool = settings.get("worker_pool")
        if pool == DEFAULT_POOL and name == APP_LAYER:  # the app's settings read back hold Celery's default too
            break
        if isinstance(pool, str) and pool:
            return pool, f"{name} (worker_pool={pool!r})"
    return None, f"Celery's default (worker_pool={DEFAULT_POOL!r})"


def make_plan(
    base: StackSpec,
    info: dict[str, Any],
    like: str | None = None,
    task: str | None = None,
    args: str | None = None,
    work_s: float | None = None,
    config: str | None = None,
    expect: str | None = None,
    persistence: str | None = None,
) -> AuditPlan:
    """The audit's plan from the default stack, what its app declares, and the ``--audit-*`` options."""
    if not base.celery_app:
        raise HarnessError("the audit needs your Celery app: --celery-app proj.celery:app (or the celery_app ini key)")
    like, task = like or None, task or None
    like_queue = _task_queue(info, like, "audit-like")  # an unknown task: one sentence, before anything starts
    queue = _task_queue(info, task, "audit-task") if task else like_queue
    worker = audited_worker(base, queue)
    settings = _json("audit-config", config, dict, {})
    call_args = tuple(_json("audit-args", args, list, []))
    work = DEFAULT_WORK_S if work_s is None else float(work_s)
    if work <= 0:
        raise HarnessError(f"--audit-work {work_s} must be a positive number of seconds")
    persistence = persistence or "off"
    if persistence not in PERSISTENCE:
        raise HarnessError(f"--audit-redis-persistence {persistence!r} is not one of {', '.join(PERSISTENCE)}")
    own_options = settings.get("broker_transport_options", (info.get("settings") or {}).get("broker_transport_options"))
    sent = task or PROBE_NAME
    probe_like = like or task
    spec = base.replace(
        web=None,
        workers=(worker,),
        beats=(),  # the beat rows add the audit's own beats on the app's entries (harness.audit.beat)
        producer=AuditProducer(base.celery_app, probe_like, sent, call_args),
        probe=ProbeSpec(like=probe_like),
        celery_config={**base.celery_config, **settings},
        worker_concurrency=None,  # what the app runs with, unless the stack's WorkerSpec says otherwise
        worker_pool=None,  # the same for the pool
    )
    layers = [
        (APP_LAYER, info.get("settings") or {}), ("the stack's celery_config", dict(base.celery_config)),
        ("--audit-config", settings), ("the worker's celery_config", dict(worker.celery_config)),
    ]  # fmt: skip
    pool, pool_from = pool_source(worker, layers)
    if pool is not None and pool != worker.pool:
        try:
            worker = worker.replace(pool=pool)
        except HarnessError:
            raise HarnessError(
                f"the audited worker's pool comes from {pool_from}, which the harness cannot run"
            ) from None
        spec = spec.replace(workers=(worker,))
    return AuditPlan(
        base.celery_app, spec, worker, queue, probe_like, sent, call_args, work, settings,
        parse(expect, [f.key for f in FAILURES]), concurrency_source(worker, layers), pool_from,
        dict(own_options or {}), persistence, beat_plan(info, sent, settings),
    )  # fmt: skip
