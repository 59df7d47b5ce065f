"""Worker version 1 with a future-proof signature: keyword data only, extra fields ignored.

Producers send ``say_hello(name=..., greeting=...)`` as keywords; this version knows ``name`` only
and ignores whatever newer producers add, and a missing field takes its default.
"""

from __future__ import annotations

from typing import Any

from app_under_test import settings

app = settings.worker_app()


@app.task(bind=True, name="say_hello")
def say_hello(self, name: str = "world", **_newer_fields: Any) -> str:
    settings.do_the_work()
    return f"hello {name}"
