"""Worker version for the quorum-queue scenarios: say_hello as in version 1, except that with
``HELLO_CRASH_POOL=1`` it kills the pool process running it (SIGKILL), every time: a poison task, like
one that runs the process out of memory or hits a segfault in a C extension. The task named
``HELLO_LONG_NAME`` works ``HELLO_LONG_SECONDS`` instead (one long task among short ones)."""

from __future__ import annotations

import os
import signal
import time

from app_under_test import settings

app = settings.worker_app()


@app.task(bind=True, name="say_hello")
def say_hello(self, name: str) -> str:
    if settings.flag("HELLO_CRASH_POOL"):
        os.kill(os.getpid(), signal.SIGKILL)
    if name == os.environ.get("HELLO_LONG_NAME"):
        time.sleep(settings.seconds("HELLO_LONG_SECONDS", 4.0))
    else:
        settings.do_the_work()
    return f"hello {name[:40]}"
