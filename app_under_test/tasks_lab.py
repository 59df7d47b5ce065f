"""The worker's code for the second catalogue: ``say_hello`` plus small tasks the scenarios compose.

``nap`` works for as long as it is told (a long task among short ones), ``add`` / ``boom`` / ``total`` make a
chord whose member can fail. All on hello_queue, like ``say_hello``: routed by name in ``settings.task_routes``
(a task's own ``queue=`` is deprecated, to go in Celery 6).
"""

from __future__ import annotations

import time

from app_under_test import settings
from app_under_test.tasks import app, say_hello

__all__ = ["add", "app", "boom", "fan_out", "nap", "say_hello", "total"]


@app.task(name="nap")
def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@app.task(name="add")
def add(x: int, y: int) -> int:
    settings.do_the_work()
    return x + y


@app.task(name="boom")
def boom(x: int) -> int:
    raise ValueError(f"member {x} failed")


@app.task(name="total")
def total(values: list[int]) -> int:
    return sum(values)


@app.task(name="fan_out")
def fan_out(members: int, failing: int, callback_id: str) -> str:
    """A chord: ``members`` additions (``failing`` of them raise), then ``total`` of their results, whose task id
    is ``callback_id`` (so the caller can look its result up). Needs a result backend."""
    from celery import chord

    header = [add.s(i, i) for i in range(members - failing)] + [boom.s(i) for i in range(failing)]
    chord(header)(total.s().set(task_id=callback_id))
    return callback_id
