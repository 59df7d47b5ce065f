"""A small app with a real task routed by configuration, for the probe's tests (not the demo)."""

from __future__ import annotations

import os

from celery import Celery
from kombu import Queue

app = Celery("mail", broker=os.environ.get("CELERY_BROKER_URL", "amqp://guest:guest@127.0.0.1:1//"))
app.conf.update(
    task_queues=[Queue("emails", routing_key="emails"), Queue("celery")],
    task_routes={"mail.send": {"queue": "emails", "routing_key": "emails", "priority": 3}},
)

SENT: list[str] = []  # what a real send would do; the probe never touches it


@app.task(
    name="mail.send", acks_late=True, reject_on_worker_lost=True, time_limit=30, soft_time_limit=20, max_retries=7,
    rate_limit="100/s",
)  # fmt: skip
def send(address: str) -> None:
    SENT.append(address)
