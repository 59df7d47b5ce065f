"""Worker version 3: ``say_hello`` renamed ``send_greeting`` (the same function body), as the web app's
``renamed`` producer sends it. Deployed before the web app, it refuses every v1 click; the other way
round, v1 workers refuse every v3 click (``scenarios/test_renamed_task.py``)."""

from __future__ import annotations

import logging

from app_under_test import settings

app = settings.worker_app()
log = logging.getLogger(__name__)


@app.task(bind=True, name="send_greeting")
def send_greeting(self, name: str) -> str:
    """The slow work: bound, so ``self`` is the task and its request (id, retries) is at hand."""
    settings.do_the_work()
    log.info("hello %s (task %s)", name, self.request.id)
    return f"hello {name}"
