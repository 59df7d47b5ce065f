"""Worker version with time limits on say_hello (``HELLO_SOFT_LIMIT`` / ``HELLO_HARD_LIMIT`` seconds).

At the soft limit Celery raises ``SoftTimeLimitExceeded`` inside the task: this version cleans up
(announcing it with a ``task-cleanup`` event) and gives up. With ``HELLO_IGNORES_SOFT_LIMIT`` set it
swallows the soft limit and keeps working, until the hard limit kills its pool process.
"""

from __future__ import annotations

from celery.exceptions import SoftTimeLimitExceeded

from app_under_test import settings

app = settings.worker_app()


@app.task(
    bind=True,
    name="say_hello",
    soft_time_limit=settings.seconds("HELLO_SOFT_LIMIT", 1.0),
    time_limit=settings.seconds("HELLO_HARD_LIMIT", 2.0),
)
def say_hello(self, name: str) -> str:
    try:
        settings.do_the_work()
    except SoftTimeLimitExceeded:
        if settings.flag("HELLO_IGNORES_SOFT_LIMIT"):
            settings.do_the_work()  # carries on regardless
        else:
            self.send_event("task-cleanup", reason="soft time limit")  # releases what it holds, says so
            raise
    return f"hello {name}"
