"""Celery task messages made by hand, for scenarios that feed the worker what a buggy or foreign
producer would send. The headers follow Celery's message protocol version 2."""

from __future__ import annotations

import uuid


def task_headers(task: str, task_id: str | None = None) -> dict:
    task_id = task_id or str(uuid.uuid4())
    return {
        "lang": "py",
        "task": task,
        "id": task_id,
        "root_id": task_id,
        "parent_id": None,
        "group": None,
        "argsrepr": "",
        "kwargsrepr": "",
        "origin": "harness",
        "retries": 0,
        "eta": None,
        "expires": None,
        "timelimit": [None, None],
    }
