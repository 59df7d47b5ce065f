"""Worker version 2: say_hello gained a required ``greeting`` parameter (a breaking change)."""

from __future__ import annotations

from app_under_test import settings

app = settings.worker_app()


@app.task(bind=True, name="say_hello")
def say_hello(self, name: str, greeting: str) -> str:
    settings.do_the_work()
    return f"{greeting} {name}"
