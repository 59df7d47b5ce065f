"""Worker version whose say_hello depends on a flaky service: it fails ``HELLO_FAILURES`` times and
retries with exponential backoff (``HELLO_RETRY_BACKOFF`` seconds, doubled each time), at most
``HELLO_MAX_RETRIES`` times."""

from __future__ import annotations

import os

from app_under_test import settings

app = settings.worker_app()

BACKOFF = settings.seconds("HELLO_RETRY_BACKOFF", 0.2)


@app.task(bind=True, name="say_hello", max_retries=int(os.environ.get("HELLO_MAX_RETRIES", 3)))
def say_hello(self, name: str) -> str:
    if self.request.retries < int(os.environ.get("HELLO_FAILURES", 2)):
        error = ConnectionError("the greeting service is unavailable")
        # The same task id is sent again with a countdown; past max_retries, retry() raises ``error``.
        raise self.retry(exc=error, countdown=BACKOFF * 2**self.request.retries)
    settings.do_the_work()
    return f"hello {name}"
