"""The worker's code: run with ``celery -A app_under_test.tasks worker -Q hello_queue``."""

from __future__ import annotations

import logging
import time

from celery import Celery

from app_under_test import settings

app = Celery("app_under_test")
app.conf.update(settings.celery_config())

log = logging.getLogger(__name__)


@app.task(bind=True, name="say_hello")
def say_hello(self, name: str) -> str:
    """The slow work: bound, so ``self`` is the task and its request (id, retries) is at hand."""
    time.sleep(settings.seconds("HELLO_WORK_SECONDS", 2.0))
    log.info("hello %s (task %s)", name, self.request.id)
    return f"hello {name}"
