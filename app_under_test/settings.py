"""Settings from the environment, shared by the web app and the worker."""

from __future__ import annotations

import os
import time

from celery import Celery

HELLO_QUEUE = "hello_queue"


def broker_url() -> str:
    # No default on purpose: a process started without a broker must say so, not try localhost.
    try:
        return os.environ["CELERY_BROKER_URL"]
    except KeyError:
        raise RuntimeError("CELERY_BROKER_URL is not set; point it at the RabbitMQ broker") from None


def seconds(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes", "on")


def celery_config() -> dict:
    """What both sides agree on: where the broker is and that every step emits an event.

    The delivery settings a team tunes come from the environment (unset: Celery's defaults), so a
    deploy, or a scenario, chooses them per process.
    """
    return {
        "broker_url": broker_url(),
        "broker_connection_retry_on_startup": True,
        # The producer announces each task (task-sent) and the worker each step of it, so an
        # observer can account for every task from events alone.
        "task_send_sent_event": True,
        "worker_send_task_events": True,
        # Routing is configuration, by task name: the renamed task is routed like the old one.
        "task_routes": {"say_hello": {"queue": HELLO_QUEUE}, "send_greeting": {"queue": HELLO_QUEUE}},
        # Acknowledge after the task ran instead of before it starts, and requeue the task when
        # its pool process dies under it.
        "task_acks_late": flag("CELERY_ACKS_LATE"),
        "task_reject_on_worker_lost": flag("CELERY_REJECT_ON_WORKER_LOST"),
        "worker_prefetch_multiplier": int(os.environ.get("CELERY_PREFETCH_MULTIPLIER", 4)),
        # "persistent" (Celery's default) survives a broker restart in a durable queue; "transient" does not.
        "task_default_delivery_mode": os.environ.get("CELERY_DELIVERY_MODE", "persistent"),
        # How long a click may wait on a broker that is down before the app gives up and says so.
        "broker_connection_timeout": seconds("CELERY_CONNECT_TIMEOUT", 2.0),
        "task_publish_retry_policy": {
            "max_retries": int(os.environ.get("CELERY_PUBLISH_MAX_RETRIES", 2)),
            "interval_start": 0,
            "interval_step": 0.5,
            "interval_max": 0.5,
        },
    }


def worker_app() -> Celery:
    """The worker side's Celery app (each version of the tasks module makes its own, as a deploy would)."""
    app = Celery("app_under_test")
    app.conf.update(celery_config())
    return app


def do_the_work() -> None:
    """The slow part of every version of say_hello."""
    time.sleep(seconds("HELLO_WORK_SECONDS", 2.0))
