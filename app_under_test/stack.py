"""The demo under the harness: its stack, its button as a producer, its versions as deploys.

Everything the harness needs to know about this app is here, not in ``harness/``: the Celery apps
(``app_under_test.tasks:app`` and its versions), the Flask app, the queue, the worker's name, the
button, and the knobs the demo reads from its environment (how long ``say_hello`` works...).
"""

from __future__ import annotations

from collections.abc import Mapping

from app_under_test.producers import PRODUCERS
from app_under_test.settings import HELLO_QUEUE
from harness.producers import HttpProducer, JsonField
from harness.spec import BeatSpec, StackSpec, WebSpec, WorkerSpec

__all__ = ["BEAT", "BUTTON", "HELLO_QUEUE", "PERIODIC", "WORKER", "demo", "fleet", "periodic"]

WORKER = "worker_hello"
BEAT = "beat"
PERIODIC = "hello-every-second"  # the entry the beat stories schedule
# The second catalogue's stacks wait longer for their programs: several workers, or a pool of ten, start
# slowly on a loaded two-core machine (seen: a worker online after 6 s while other suites ran).
PATIENT_READY_S = 20.0
# The worker's versions: each a tasks module with its own say_hello (see README, "The application under test").
WORKER_VERSIONS = ("tasks", "tasks_v2", "tasks_v2_default", "tasks_tolerant", "tasks_tolerant_v2")
# "Say hello (Celery)": POST /hello answers 202 with the task id, or 503 if the broker refused it.
BUTTON = HttpProducer(
    "/hello", json={"name": "world-{n}"}, accepted=(202,), refused=(503,), task_id=JsonField("task_id")
)


# What a person can deploy by hand under ``harness up`` (``python -m harness ctl deploy <program> ...``): the web
# app's producer versions (HELLO_PRODUCER), and the worker's tasks modules.
DEPLOYS = {
    "web": tuple(f"--env HELLO_PRODUCER={version}" for version in PRODUCERS),
    WORKER: tuple(f"--celery-app app_under_test.{version}:app" for version in WORKER_VERSIONS),
}


def worker(name: str = WORKER, version: str = "tasks", **options) -> WorkerSpec:
    """A worker running one version of the tasks module, on hello_queue (unless ``queues=`` says otherwise), with
    one pool process (unless ``concurrency=``): the catalogue's arrangement, said here so that the resilience
    audit of the demo runs it too (it runs an app's own worker_concurrency where the stack says nothing)."""
    options.setdefault("queues", (HELLO_QUEUE,))
    options.setdefault("concurrency", 1)
    return WorkerSpec(name=name, celery_app=f"app_under_test.{version}:app", **options)


def demo(
    producer: str = "v1",
    worker_version: str = "tasks",
    work_seconds: float = 0.05,
    inline_seconds: float = 2.0,
    workers: tuple[WorkerSpec, ...] | None = None,
    env: Mapping[str, str] | None = None,
    ready_timeout: float | None = None,
) -> StackSpec:
    """The demo's stack: the web app (its producer version: v1, v2, tolerant_v1, tolerant_v2, renamed), one
    worker (its tasks module), how long the work takes (short by default, so scenarios stay fast)."""
    return StackSpec(
        celery_app="app_under_test.tasks:app",
        web=WebSpec(app="app_under_test.web:app", ready_path="/healthz", env={"HELLO_PRODUCER": producer}),
        workers=workers or (worker(version=worker_version),),
        producer=BUTTON,
        env={"HELLO_WORK_SECONDS": str(work_seconds), "INLINE_WORK_SECONDS": str(inline_seconds), **(env or {})},
        deploys=DEPLOYS,
        ready_timeout=ready_timeout,
    )


def fleet(producer: str, **versions: str) -> StackSpec:
    """A mixed fleet mid-deploy: ``fleet("v2", worker_v1="tasks", worker_v2="tasks_v2")``."""
    return demo(producer, workers=tuple(worker(name, version) for name, version in versions.items()))


def periodic(
    every: float = 1.0,
    work_seconds: float = 0.05,
    expires: float | None = None,
    beats: tuple[str, ...] = (BEAT,),
    concurrency: int = 1,
) -> StackSpec:
    """The demo's worker and a ``celery beat`` sending say_hello every ``every`` seconds (the entry ``PERIODIC``;
    ``expires`` seconds to live, if given); no web app. Every beat after the first is left stopped, for a
    scenario to start (a second beat during a deploy)."""
    options = {"expires": expires} if expires is not None else {}
    schedule = {PERIODIC: {"task": "say_hello", "schedule": every, "args": ["beat"], "options": options}}
    return demo(work_seconds=work_seconds, workers=(worker(concurrency=concurrency),)).replace(
        web=None, producer=None,
        beats=tuple(BeatSpec(name, schedule=schedule, autostart=n == 0) for n, name in enumerate(beats)),
    )  # fmt: skip
