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


def celery_config() -> dict:
    """What both sides agree on: where the broker is and that every step emits an event."""
    return {
        "broker_url": broker_url(),
        "broker_connection_retry_on_startup": True,
        # The producer announces each task (task-sent) and the worker each step of it, so an
        # observer can account for every task from events alone.
        "task_send_sent_event": True,
        "worker_send_task_events": True,
        # Routing is configuration, by task name: the renamed task is routed like the old one.
        "task_routes": {"say_hello": {"queue": HELLO_QUEUE}, "send_greeting": {"queue": HELLO_QUEUE}},
    }


def worker_app() -> Celery:
    """The worker side's Celery app (each version of the tasks module makes its own, as a deploy would)."""
    app = Celery("app_under_test")
    app.conf.update(celery_config())
    return app


def do_the_work() -> None:
    """The slow part of every version of say_hello."""
    time.sleep(seconds("HELLO_WORK_SECONDS", 2.0))
