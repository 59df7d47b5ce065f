"""Worker version 2 with the future-proof signature: knows ``greeting``, defaults it when an older
producer leaves it out, and still ignores fields it does not know."""

from __future__ import annotations

from typing import Any

from app_under_test import settings

app = settings.worker_app()


@app.task(bind=True, name="say_hello")
def say_hello(self, name: str = "world", greeting: str = "hello", **_newer_fields: Any) -> str:
    settings.do_the_work()
    return f"{greeting} {name}"
