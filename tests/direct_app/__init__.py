"""A worker-only app for the DirectProducer's tests: a result backend of its own that says when it is built,
and a task module it does not include (``direct_app.extra_tasks``: a scenario includes it)."""

from __future__ import annotations

import os

from celery import Celery
from celery.backends.base import DisabledBackend

BUILT: list[str] = []  # which backend classes were built in this process, in order

app = Celery("direct", broker=os.environ.get("CELERY_BROKER_URL", "amqp://guest:guest@127.0.0.1:1//"))
# As a Django or Flask app sets a database backend ("db+sqlite:///results.sqlite", whose file appears in the
# working directory when the backend is built): one that records being built instead.
app.conf.result_backend = "direct_app:AppsOwnBackend"


class AppsOwnBackend(DisabledBackend):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        BUILT.append(type(self).__name__)


class ScenariosBackend(AppsOwnBackend):
    """A backend a scenario asks for (``celery_config(result_backend="direct_app:ScenariosBackend")``)."""


@app.task(name="direct.ping", shared=False)  # not added to every app the test process finalizes later
def ping(n: int) -> int:
    return n
