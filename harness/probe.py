"""The resilience audit's probe: a harmless task registered on the user's own app, delivered like a real one.

``register_probe(app, like="proj.tasks.send_email")`` adds the task ``harness.probe`` to the app object
(same app, same configuration, same broker connection) with the real task's delivery options, and the
route the app's router gives the real task (its queue, exchange, routing key, priority), so a probe
message lands where the real task's would and the worker treats it as it would treat the real task:
acknowledged early or late, rejected or failed when its process is lost, cut by its time limits, held
back by its rate limit. Its work is a sleep of the length it is sent (``probe(seconds)``), so a fault can
land mid-task, or a wait until the audit releases it (``probe(seconds, hold=path)``); it sends no email
and writes no row. Without ``like`` it has the app's defaults and the
app's default route.

The launcher registers it in each worker when the stack asks for it (its ``probe`` config key), and the
audit's producer registers it on the app in the test process, so both sides agree. This module runs in
the user's environment (copied next to the launcher): it depends on the standard library and Celery only.
"""

from __future__ import annotations

import os
import time
from typing import Any

PROBE_NAME = "harness.probe"

# The real task's options that decide what happens to its deliveries (Celery's Task attributes); the
# probe gets each one as the real task has it (its own, else the app's task_* setting).
COPIED_OPTIONS = (
    "acks_late",
    "acks_on_failure_or_timeout",
    "acks_on_failure",
    "acks_on_timeout",
    "reject_on_worker_lost",
    "retry_on_worker_lost",
    "max_retries",
    "default_retry_delay",
    "time_limit",
    "soft_time_limit",
    "rate_limit",
    "ignore_result",
    "serializer",
    "track_started",
    "expires",
    "priority",
    "delivery_mode",
    "compression",
)
# Publishing options a route may give (Celery's extract_exec_options): the probe's apply_async carries
# them, as the real task's routed call does.
ROUTE_OPTIONS = ("queue", "exchange", "routing_key", "priority", "delivery_mode", "serializer", "compression")


class ProbeError(Exception):
    """The task the probe should imitate is not one of the app's (one sentence)."""


def probe(seconds: float = 0.0, hold: str | None = None, *args: Any, **kwargs: Any) -> str:
    """The probe's work: sleep ``seconds``; or, given ``hold`` (a file path), until that file exists, at most
    ``seconds`` (the audit releases a run at the moment it chooses). Extra arguments are ignored."""
    deadline = time.monotonic() + max(0.0, float(seconds))
    if hold is None:
        time.sleep(max(0.0, float(seconds)))
    while hold is not None and not os.path.exists(hold) and time.monotonic() < deadline:
        time.sleep(0.02)
    return "probe"


def user_tasks(app: Any) -> list[str]:
    return sorted(name for name in app.tasks if not name.startswith("celery.") and name != PROBE_NAME)


def find_task(app: Any, name: str) -> Any:
    """The app's task ``name``, importing the modules a worker imports at start if it is not there yet."""
    if name not in app.tasks:
        app.loader.import_default_modules()  # tasks in include= / imports / autodiscovered modules
    if name not in app.tasks:
        raise ProbeError(f"the app has no task {name!r} to imitate; its tasks: {', '.join(user_tasks(app)) or 'none'}")
    return app.tasks[name]


def route_of(app: Any, task: Any) -> dict[str, Any]:
    """Where the app's router sends ``task`` (no arguments): queue (a kombu Queue), exchange, routing key..."""
    return app.amqp.router.route(dict(task._get_exec_options()), task.name, args=(), kwargs={}, task_type=task)


def probe_options(app: Any, like: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The probe's task options (the real task's delivery options) and its route (where the app's router
    sends the real task); both empty without ``like``."""
    if like is None:
        return {}, {}
    task = find_task(app, like)
    options = {key: getattr(task, key) for key in COPIED_OPTIONS if getattr(task, key, None) is not None}
    route = route_of(app, task)
    return options, {key: route[key] for key in ROUTE_OPTIONS if route.get(key) is not None}


def register_probe(app: Any, like: str | None = None) -> Any:
    """Register ``harness.probe`` on ``app``, imitating the task ``like`` (a name the app knows); return it.

    Registering again replaces the probe (another ``like``)."""
    options, route = probe_options(app, like)

    class Probe(app.Task):  # the app's own task base class
        imitates = like

        def _get_exec_options(self) -> dict[str, Any]:
            # The real task's route joins the options every apply_async (and retry) starts from. Celery
            # deprecates routing attributes on a task class (queue=...), so the route is not one.
            return {**super()._get_exec_options(), **route}

    if PROBE_NAME in app.tasks:
        del app.tasks[PROBE_NAME]
    app.task(name=PROBE_NAME, base=Probe, shared=False, **options)(probe)
    return app.tasks[PROBE_NAME]
