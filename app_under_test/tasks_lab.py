"""The worker's code for the second catalogue: ``say_hello`` plus small tasks the scenarios compose.

``nap`` works for as long as it is told (a long task among short ones), ``add`` / ``boom`` / ``total`` make a
chord whose member can fail. All on hello_queue, like ``say_hello``.
"""

from __future__ import annotations

import time

from app_under_test import settings
from app_under_test.tasks import app, say_hello

__all__ = ["add", "app", "boom", "nap", "say_hello", "total"]


@app.task(name="nap", queue=settings.HELLO_QUEUE)
def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@app.task(name="add", queue=settings.HELLO_QUEUE)
def add(x: int, y: int) -> int:
    settings.do_the_work()
    return x + y


@app.task(name="boom", queue=settings.HELLO_QUEUE)
def boom(x: int) -> int:
    raise ValueError(f"member {x} failed")


@app.task(name="total", queue=settings.HELLO_QUEUE)
def total(values: list[int]) -> int:
    return sum(values)
