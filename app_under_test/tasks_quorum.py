"""Worker version for the quorum-queue scenarios: say_hello as in version 1, except that with
``HELLO_CRASH_POOL=1`` it kills the pool process running it (SIGKILL), every time: a poison task, like
one that runs the process out of memory or hits a segfault in a C extension."""

from __future__ import annotations

import os
import signal

from app_under_test import settings

app = settings.worker_app()


@app.task(bind=True, name="say_hello")
def say_hello(self, name: str) -> str:
    if settings.flag("HELLO_CRASH_POOL"):
        os.kill(os.getpid(), signal.SIGKILL)
    settings.do_the_work()
    return f"hello {name[:40]}"
