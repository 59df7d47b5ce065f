"""The worker's code, version 1: ``celery -A app_under_test.tasks worker -Q hello_queue``."""

from __future__ import annotations

import logging

from app_under_test import settings

app = settings.worker_app()
log = logging.getLogger(__name__)


@app.task(bind=True, name="say_hello")
def say_hello(self, name: str) -> str:
    """The slow work: bound, so ``self`` is the task and its request (id, retries) is at hand."""
    settings.do_the_work()
    log.info("hello %s (task %s)", name, self.request.id)
    return f"hello {name}"
