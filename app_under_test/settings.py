"""Settings shared by the web app and the worker: what the team chose for its own app."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

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


LAB_TASKS = ("nap", "add", "boom", "total", "fan_out")  # app_under_test.tasks_lab's


def celery_config() -> dict:
    """What both sides agree on: where the broker is, how tasks are routed, how long a click may wait.

    Delivery settings (``task_acks_late``...) are Celery's defaults; a scenario changes them with
    ``@pytest.mark.celery_config(...)``, which the harness applies to this app in every program.
    """
    return {
        "broker_url": broker_url(),
        "broker_connection_retry_on_startup": True,
        # Routing is configuration, by task name: the renamed task is routed like the old one, and the second
        # catalogue's small tasks (tasks_lab) like say_hello. (Here, not added by tasks_lab at its import: Celery
        # builds its routing table once, so a process that sent a task before importing tasks_lab would send
        # its tasks to the default queue: seen as 20 tasks waiting in "celery" in a parallel run.)
        "task_routes": {
            name: {"queue": HELLO_QUEUE}
            for name in ("say_hello", "send_greeting", "nap", "add", "boom", "total", "fan_out")
        },
        # The team's periodic task, for ``celery -A app_under_test.tasks beat``: a greeting every minute (the
        # catalogue's beat stories give their own schedule, seconds apart).
        "beat_schedule": {"hello-every-minute": {"task": "say_hello", "schedule": 60.0, "args": ("beat",)}},
        # How long a click may wait on a broker that is down before the app gives up and says so.
        "broker_connection_timeout": seconds("CELERY_CONNECT_TIMEOUT", 2.0),
        "task_publish_retry_policy": {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 0.5},
        **quorum_topic_queue(),
        **socket_settings(),
    }


def quorum_topic_queue() -> dict:
    """With ``HELLO_QUORUM_TOPIC=1``: hello_queue declared as a quorum queue bound to a topic exchange, which
    Celery's native delayed delivery needs (a queue made from a route gets a direct exchange)."""
    if not flag("HELLO_QUORUM_TOPIC"):
        return {}
    from kombu import Exchange, Queue

    exchange = Exchange(HELLO_QUEUE, type="topic")
    queue = Queue(HELLO_QUEUE, exchange, routing_key=HELLO_QUEUE, queue_arguments={"x-queue-type": "quorum"})
    return {"task_queues": [queue], "task_default_queue": HELLO_QUEUE}


def socket_settings() -> dict:
    """``AMQP_TCP_USER_TIMEOUT_MS``: py-amqp's TCP_USER_TIMEOUT (1000 ms unless set; 0 is the kernel's own,
    minutes of retransmits). Socket options are keyed by integer, which the harness's JSON settings cannot
    carry, so the app reads it from its environment."""
    value = os.environ.get("AMQP_TCP_USER_TIMEOUT_MS")
    if value is None:
        return {}
    import socket

    return {"broker_transport_options": {"socket_settings": {socket.TCP_USER_TIMEOUT: int(value)}}}


def worker_app() -> Celery:
    """The worker side's Celery app (each version of the tasks module makes its own, as a deploy would)."""
    app = Celery("app_under_test")
    app.conf.update(celery_config())
    return app


def do_the_work() -> None:
    """The slow part of every version of say_hello: ``HELLO_WORK_SECONDS`` of it; or, with
    ``HELLO_HOLD_UNTIL`` (a file name in the program's temporary folder), until that file exists, so that a
    scenario ends the task at the moment it chooses (while the broker is away, say)."""
    hold = os.environ.get("HELLO_HOLD_UNTIL")
    if not hold:
        time.sleep(seconds("HELLO_WORK_SECONDS", 2.0))
        return
    release, deadline = Path(tempfile.gettempdir()) / hold, time.monotonic() + 60
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
