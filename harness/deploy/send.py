"""``python -m harness.deploy.send``: one version's producer, sending the deploy check's messages.

It runs in a process of its own per version (two versions never share an interpreter): it imports the
version's app with the version's folder first on the import path, points it at the run's broker (as
the launcher does: ``harness.launcher.configure``), connects the journal, and reads a JSON list of
messages on stdin, ``[{"id": ..., "task": ..., "args": [...], "kwargs": {...}}]``. Each is sent the way
that version's code sends it:

- ``--via apply_async`` (default): through the task object when the app registers the name, as
  ``task.delay()`` / ``apply_async`` does: the task's own routing and options (its queue, its time
  limits) go into the message; a name the app does not register is sent by name;
- ``--via send_task``: by name only, routed by the app's ``task_routes``, as a producer that does not
  import the worker's code does.

It writes one JSON line per message to ``--report FILE`` (a channel of its own: the app may print to
standard output when imported): ``{"id": ..., "ok": true}``, or ``"ok": false`` with the error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from harness.journal import JournalWriter, connect
from harness.launcher import LaunchError, configure_all, fail, load_celery_app

VIAS = ("apply_async", "send_task")


def send(app: Any, message: dict[str, Any], via: str) -> dict[str, Any]:
    args, kwargs = message.get("args") or [], message.get("kwargs") or {}
    try:
        if via == "apply_async" and message["task"] in app.tasks:
            app.tasks[message["task"]].apply_async(args, kwargs, task_id=message["id"], ignore_result=True)
        else:
            app.send_task(message["task"], args, kwargs, task_id=message["id"], ignore_result=True)
    except Exception as exc:  # the producer's own error: reported with the message, the others still go
        return {"id": message["id"], "ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"id": message["id"], "ok": True}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.deploy.send", description=__doc__.split("\n\n")[0])
    parser.add_argument("--celery-app", required=True)
    parser.add_argument("--path", required=True, help="the version's folder, first on sys.path")
    parser.add_argument("--broker-url", required=True)
    parser.add_argument("--journal-dir", required=True)
    parser.add_argument("--program", default="producer", help="the journal's name for this producer")
    parser.add_argument("--via", choices=VIAS, default="apply_async")
    parser.add_argument("--report", required=True, help="write one JSON line per message here (not stdout)")
    args = parser.parse_args(argv)
    if args.path not in sys.path:
        sys.path.insert(0, args.path)
    os.environ["CELERY_BROKER_URL"] = args.broker_url  # before the import: apps that read it at import
    connect(JournalWriter(args.journal_dir, args.program))
    try:
        app = load_celery_app(args.celery_app)
        app.loader.import_default_modules()
        configure_all(app, args.broker_url, {})
    except LaunchError as error:
        fail(str(error))
    messages = json.load(sys.stdin)
    try:
        with open(args.report, "w") as report:
            for message in messages:
                report.write(json.dumps(send(app, message, args.via)) + "\n")
                report.flush()
    finally:
        app.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
