"""``python -m harness.introspect --celery-app proj.celery:app``: what a Celery app declares, as JSON.

Run in a process of its own (in the app's working directory and interpreter), so the test process
never imports the user's app to learn about it, and two versions of an app never share an interpreter
(the deploy check compares them). It prints one JSON document:

- ``app``: the app's main name; ``settings``: the settings that decide what happens under faults;
- ``queues``: every queue the app can publish to or consume from: its declared queues
  (``task_queues``, else ``task_default_queue``), the queues of its routes, and each task's ``queue``;
- ``tasks``: per registered task, its parameters (name, kind, default), whether it is bound, its
  delivery options (``acks_late``, retries, time limits, rate limit, the queue ``apply_async`` routes it
  to), the queue a by-name ``send_task`` routes it to (``queue_by_name``), and a hash of its body, for
  the deploy check's rename heuristic.

Each task also says which file its module was imported from (``file``), and the document the import path
(``sys_path``), so the deploy check can tell a version's own code from a copy standing in front of it.
With ``--report FILE`` the document goes to that file, not to standard output, which the app may print
to. On an app that does not import it writes ``{"error": ...}`` there, prints ``HarnessLaunchError: ...``
(one line) on stderr and exits 3.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import sys
import textwrap
from typing import Any

from .launcher import LaunchError, describe_settings, describe_tasks, fail, load_celery_app

KINDS = {
    inspect.Parameter.POSITIONAL_ONLY: "positional_only",
    inspect.Parameter.POSITIONAL_OR_KEYWORD: "positional_or_keyword",
    inspect.Parameter.VAR_POSITIONAL: "var_positional",
    inspect.Parameter.KEYWORD_ONLY: "keyword_only",
    inspect.Parameter.VAR_KEYWORD: "var_keyword",
}


def _function(task: Any) -> Any:
    run = type(task).__dict__.get("run")
    if isinstance(run, staticmethod):
        return run.__func__
    return run if run is not None else task.run


def is_bound(task: Any) -> bool:
    """``@app.task(bind=True)``: Celery stores ``run`` as a plain function (a method of the task)."""
    return inspect.isfunction(type(task).__dict__.get("run"))


def _annotation(annotation: Any) -> str | None:
    """``int`` for ``int`` or ``"int"`` (postponed annotations are strings); None if there is none."""
    if annotation is inspect.Parameter.empty:
        return None
    return annotation.__name__ if isinstance(annotation, type) else str(annotation)[:80]


def parameters(task: Any) -> list[dict[str, Any]]:
    function = _function(task)
    signature = inspect.signature(function)
    params = list(signature.parameters.values())
    if is_bound(task) and params:
        params = params[1:]  # the task itself
    return [
        {
            "name": p.name,
            "kind": KINDS[p.kind],
            "has_default": p.default is not inspect.Parameter.empty,
            "default": None if p.default is inspect.Parameter.empty else repr(p.default)[:80],
            "annotation": _annotation(p.annotation),
        }
        for p in params
    ]


def body_hash(task: Any) -> str | None:
    """A hash of the task's code without its ``def`` line, so a renamed task with the same body matches."""
    try:
        source = textwrap.dedent(inspect.getsource(_function(task)))
    except (OSError, TypeError):
        return None
    lines = [line for line in source.splitlines() if not line.lstrip().startswith("@")]
    while lines and not lines[0].rstrip().endswith(":"):  # a def spread over several lines
        lines.pop(0)
    body = "\n".join(lines[1:]).strip()
    return hashlib.sha256(body.encode()).hexdigest()[:16] if body else None


def queues(app: Any, tasks: dict[str, dict[str, Any]]) -> list[str]:
    names = set(app.amqp.queues.keys()) or {app.conf.task_default_queue}
    for options in tasks.values():
        if options.get("queue"):
            names.add(options["queue"])
    routes = app.conf.task_routes or {}
    if isinstance(routes, dict):
        for route in routes.values():
            if isinstance(route, dict) and isinstance(route.get("queue"), str):
                names.add(route["queue"])
    return sorted(names)


def queue_by_name(app: Any, name: str) -> str | None:
    """The queue a by-name ``send_task`` routes to: ``task_routes`` and the default only (the task's own
    ``queue`` option is applied by ``apply_async`` alone)."""
    try:
        route = app.amqp.router.route({}, name, args=(), kwargs={})
    except Exception:  # an unusual router: unknown
        return None
    return route["queue"].name if route.get("queue") is not None else None


def describe(app: Any) -> dict[str, Any]:
    tasks = describe_tasks(app)
    details = {}
    for name, options in tasks.items():
        task = app.tasks[name]
        function = _function(task)
        details[name] = {
            "module": getattr(function, "__module__", None),
            "file": module_file(getattr(function, "__module__", None)),
            "function": getattr(function, "__qualname__", None),
            "bound": is_bound(task),
            "parameters": parameters(task),
            "options": options,
            "queue_by_name": queue_by_name(app, name),
            "body_hash": body_hash(task),
        }
    return {
        "app": app.main,
        "default_queue": app.conf.task_default_queue,
        "queues": queues(app, tasks),
        "settings": describe_settings(app),
        "tasks": details,
        # The scheme of the broker the app configures itself (its own setting, not the URL the harness gave it
        # through CELERY_BROKER_URL): redis, amqp... The harness tests the app on that family by default.
        "own_broker_scheme": own_broker_scheme(app),
        # Its periodic tasks (``beat_schedule``) and the scheduler beat would run them with (the audit's beat rows).
        "beat": beat_info(app),
    }


def _data(value: Any) -> Any:
    """``value`` as JSON data; what JSON cannot hold (a datetime, a crontab) as its repr."""
    return json.loads(json.dumps(value, default=repr))


def _scheduler_name(scheduler: Any) -> str:
    if isinstance(scheduler, str):
        return scheduler
    return f"{getattr(scheduler, '__module__', '?')}:{getattr(scheduler, '__qualname__', repr(scheduler))}"


def beat_entry(app: Any, entry: Any) -> dict[str, Any]:
    """One ``beat_schedule`` entry as data: its task, its period (``every``, seconds, for an interval schedule;
    None for crontab, solar or a custom schedule, ``kind`` says which), its arguments and options, the task's own
    ``expires`` (beat's ``apply_async`` falls back on it) and the queue the send is routed to."""
    from celery.schedules import maybe_schedule

    from .beat_journal import every_of

    entry = dict(entry) if isinstance(entry, dict) else {}
    name = str(entry.get("task"))
    try:
        sched = maybe_schedule(entry.get("schedule"), entry.get("relative", False), app)
        every = every_of(type("Entry", (), {"schedule": sched}))
        kind = "interval" if every is not None else type(sched).__name__  # crontab, solar, a custom schedule
    except Exception as exc:  # a schedule Celery itself would refuse: said, not audited
        sched, every, kind = None, None, f"unreadable ({type(exc).__name__}: {exc})"[:200]
    options = dict(entry.get("options") or {})
    task = app.tasks.get(name)
    queue = None
    try:  # routed as beat routes it: the task's own options (if the app has it), the entry's, then the routes
        own = dict(task._get_exec_options()) if task is not None else {}
        route = app.amqp.router.route({**own, **options}, name, args=(), kwargs={}, task_type=task)
        queue = route["queue"].name if route.get("queue") is not None else None
    except Exception:  # an unusual router: unknown
        pass
    return {
        "task": name, "known_task": task is not None, "every": every, "kind": kind,
        "schedule": repr(sched if sched is not None else entry.get("schedule"))[:200],
        "args": _data(list(entry.get("args") or ())), "kwargs": _data(dict(entry.get("kwargs") or {})),
        "options": _data(options), "task_expires": _data(getattr(task, "expires", None)), "queue": queue,
    }  # fmt: skip


def beat_info(app: Any) -> dict[str, Any]:
    """The app's ``beat_schedule`` (each entry: ``beat_entry``) and its ``beat_scheduler``."""
    schedule = app.conf.beat_schedule or {}
    return {
        "scheduler": _scheduler_name(app.conf.beat_scheduler),
        "entries": {str(name): beat_entry(app, entry) for name, entry in schedule.items()},
    }


def own_broker_scheme(app) -> str | None:
    """The scheme of the app's own broker setting; ``"env"`` when the app took it from ``CELERY_BROKER_URL`` (which
    the harness sets here to a placeholder: the user's environment decides, read by the harness itself)."""
    raw = app.conf.get("broker_url") or app.conf.get("broker_host")
    if isinstance(raw, (list, tuple)):  # failover URLs: the first is the broker
        raw = raw[0] if raw else None
    raw = str(raw).split(";", 1)[0].strip() if raw else None  # "url1;url2": failover too
    if raw and raw == os.environ.get("CELERY_BROKER_URL"):
        return "env"
    return raw.split("://", 1)[0].lower() if raw and "://" in raw else None


def routed_queues(info: dict) -> tuple[str, ...]:
    """The queues the app's tasks are sent to, through the task (its ``queue`` option and the routes) or by
    name (the routes and the default): Celery's own tasks aside, as ``describe`` gives them."""
    found = set()
    for task in (info.get("tasks") or {}).values():
        found |= {q for q in ((task.get("options") or {}).get("queue"), task.get("queue_by_name")) if q}
    return tuple(sorted(found))


def module_file(name: str | None) -> str | None:
    """The file a module was imported from (where a task's code really came from), or None."""
    module = sys.modules.get(name or "")
    path = getattr(module, "__file__", None)
    return os.path.realpath(path) if path else None


def modules_under(folder: str) -> list[list[str]]:
    """``[module, file]`` for each module of this process imported from a file under ``folder`` (another
    version's tree, where none should come from)."""
    root = os.path.realpath(folder)
    return sorted(
        [name, os.path.realpath(path)] for name, module in list(sys.modules.items())
        if (path := getattr(module, "__file__", None)) and _under(os.path.realpath(path), root)
    )  # fmt: skip


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder + os.sep)


def report(path: str | None, document: dict[str, Any]) -> None:
    """The result on a channel of its own (a file), never standard output, where the app may print."""
    text = json.dumps(document, default=repr)
    if path is None:
        print(text)
        return
    with open(path, "w") as handle:
        handle.write(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.introspect", description=__doc__.split("\n\n")[0])
    parser.add_argument("--celery-app", required=True)
    parser.add_argument("--named-by", default="--celery-app", help="where the user named the app, for the errors")
    parser.add_argument("--path", action="append", default=[], help="put this folder first on sys.path")
    parser.add_argument("--report", help="write the JSON document here (default: standard output)")
    parser.add_argument(
        "--foreign-tree", help="a folder no module may come from: off the import path, and the modules that came "
        "from it all the same (an import hook) listed"
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.foreign_tree:  # nothing may be imported from there: not even a module this version lacks
        foreign = os.path.realpath(args.foreign_tree)
        sys.path[:] = [p for p in sys.path if not _under(os.path.realpath(p or os.curdir), foreign)]
    for path in reversed([*args.path, os.getcwd()]):
        if path not in sys.path:
            sys.path.insert(0, path)
    try:
        app = load_celery_app(args.celery_app, args.named_by)
        try:
            app.loader.import_default_modules()  # what a worker imports at start (autodiscovered tasks)
        except Exception as exc:
            why = f"{type(exc).__name__}: {exc}".splitlines()[0]
            raise LaunchError(
                f"{args.named_by} {args.celery_app} imports, but importing its task modules raised {why}"
            ) from None
        info = describe(app)
    except LaunchError as error:
        if args.report:
            report(args.report, {"error": str(error)})
        fail(str(error))
    info["sys_path"] = [os.path.realpath(p) for p in sys.path if p]
    if args.foreign_tree:
        info["foreign_modules"] = modules_under(args.foreign_tree)
    report(args.report, info)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
