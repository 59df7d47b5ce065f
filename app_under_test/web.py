"""The web app: a page with a button, the slow work done inline, and the same work offloaded.

Served by gunicorn with one synchronous worker (``gunicorn -w 1 app_under_test.web:app``): while a
request does the slow work inline, the whole site waits, which is the point of offloading it.
"""

from __future__ import annotations

import os
import time
import uuid

from celery import Celery
from flask import Flask, jsonify, render_template, request

from app_under_test import producers, settings

app = Flask(__name__)

# The producer's own Celery object: it knows the task by name and route only, as a web app
# deployed separately from its workers does. (Under the harness, the launcher points it at the
# scenario's broker and turns its events on.)
celery = Celery("web")
celery.conf.update(settings.celery_config())
# Which version of the producer code this deploy runs (see producers.py).
make_call = producers.producer(os.environ.get("HELLO_PRODUCER", "v1"))


@app.get("/")
def index():
    return render_template("index.html")


@app.get("/healthz")
def healthz():
    return jsonify(ok=True)


@app.post("/hello/inline")
def hello_inline():
    """The slow work inside the request: the page spins and the server is stuck meanwhile."""
    started = time.monotonic()
    time.sleep(settings.seconds("INLINE_WORK_SECONDS", 2.0))
    return jsonify(done=True, seconds=round(time.monotonic() - started, 3))


@app.post("/hello")
def hello():
    """Offload the work: publish ``say_hello`` to hello_queue and answer at once with its id."""
    name = (request.get_json(silent=True) or {}).get("name") or request.form.get("name") or "world"
    # The id is chosen before publishing so that a failed publish can still be reported by id.
    task_id = str(uuid.uuid4())
    try:
        # Knobs of the quorum-queue scenarios: a countdown, and a big argument (HELLO_PADDING_BYTES more bytes).
        call = make_call(name + "." * int(settings.seconds("HELLO_PADDING_BYTES", 0)))
        countdown = settings.seconds("HELLO_COUNTDOWN", 0) or None
        celery.send_task(call.task, args=call.args, kwargs=call.kwargs, task_id=task_id, countdown=countdown)
    except Exception as exc:  # the broker is down or refused us: tell the user, don't hang
        app.logger.error("could not queue say_hello %s: %r", task_id, exc)
        return jsonify(task_id=task_id, queued=False, error=type(exc).__name__), 503
    return jsonify(task_id=task_id, queued=True), 202
