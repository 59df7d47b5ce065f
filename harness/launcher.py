"""``python -m harness.launcher --config FILE``: one program of the stack, run on the user's own app.

supervisord starts every web and worker program through this launcher instead of ``celery -A`` or
``gunicorn`` directly, so the harness, not the app, decides what a scenario needs:

1. the broker: ``CELERY_BROKER_URL`` is set before the app is imported (apps that read it get the
   scenario's vhost) and ``broker_url`` is set on every Celery app of the process afterwards, so it works
   whatever name the app reads its own URL from; a URL that did not take is an error, not a surprise;
2. task events on both sides (``worker_send_task_events``, ``task_send_sent_event``), no result
   backend unless the scenario asks for one, never ``task_always_eager``: each forced at every layer that
   can win (the environment, a Django settings object...) and read back (``harness.forced_settings``);
3. the scenario's Celery settings (``@pytest.mark.celery_config(...)``), on every app of the process;
4. the journal (``harness.journal``): signal handlers that write every step to a file, the witness that
   needs no broker; and, in a web program, a middleware that tells the harness which task ids each
   request published (``X-Harness-Task-Ids``);
   in a worker asked to (config key ``probe``), the resilience audit's probe task (``harness.probe``);
5. then it runs the program in this same process: the Celery worker (``app.worker_main``), ``celery beat``
   (``app.start``, its scheduler journaled: ``harness.beat_journal``), or the WSGI app under gunicorn, or an
   ASGI app under uvicorn.

A problem the user must fix ends the program with one line on stderr, ``HarnessLaunchError: ...``,
which the stack quotes. The configuration file is written by ``harness.stack``; this module depends
only on the standard library, Celery and the web server, because it runs in the user's environment.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

from .forced_settings import FORCED, NotForced, check, effective, force, hide_cli_overrides
from .journal import JournalWriter, connect, request_publishes

TASK_IDS_HEADER = "X-Harness-Task-Ids"
PUBLISHED_HEADER = "X-Harness-Task-Published"

# Settings that decide what happens to tasks under faults: written to the journal as the program saw
# them, for the report and the resilience audit.
REPORTED_SETTINGS = (
    "task_acks_late",
    "task_acks_on_failure_or_timeout",
    "task_acks_on_failure",
    "task_acks_on_timeout",
    "task_reject_on_worker_lost",
    "task_retry_on_worker_lost",
    "worker_prefetch_multiplier",
    "task_default_delivery_mode",
    "task_default_queue",
    "task_default_queue_type",
    "task_default_exchange",
    "task_create_missing_queues",
    "task_routes",
    "broker_heartbeat",
    "broker_connection_timeout",
    "broker_connection_retry_on_startup",
    "broker_transport_options",
    "broker_pool_limit",
    "task_publish_retry",
    "task_publish_retry_policy",
    "task_time_limit",
    "task_soft_time_limit",
    "task_serializer",
    "accept_content",
    "result_backend",
    "worker_cancel_long_running_tasks_on_connection_loss",
    "worker_enable_prefetch_count_reduction",
    "worker_detect_quorum_queues",
    "worker_max_tasks_per_child",
    "worker_concurrency",
    "worker_pool",
    "worker_soft_shutdown_timeout",
    "worker_enable_soft_shutdown_on_idle",
    "task_default_rate_limit",
)
TASK_OPTIONS = (
    "acks_late",
    "acks_on_failure_or_timeout",
    "reject_on_worker_lost",
    "retry_on_worker_lost",
    "max_retries",
    "default_retry_delay",
    "time_limit",
    "soft_time_limit",
    "rate_limit",
    "ignore_result",
    "queue",
    "serializer",
    "delivery_mode",
    "priority",
    "autoretry_for",
    "dont_autoretry_for",
    "retry_kwargs",
    "retry_backoff",
    "retry_backoff_max",
    "retry_jitter",
)


class LaunchError(Exception):
    """A problem with the user's app or the harness's settings, told in one line."""


def fail(message: str) -> None:
    print(f"HarnessLaunchError: {message}", file=sys.stderr, flush=True)
    raise SystemExit(3)


def _last_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


def load_object(path: str, what: str) -> Any:
    """``module:attribute`` (``module:factory()`` calls a factory), imported from the working directory."""
    module_name, _, attribute = path.partition(":")
    call = attribute.endswith("()")
    attribute = attribute.removesuffix("()")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise LaunchError(f"{what} {path} does not import: {_last_line(exc)}") from None
    if not attribute:
        return module
    obj: Any = module
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise LaunchError(f"{what} {path}: module {module_name} has no attribute {attribute!r}") from None
    if call:
        try:
            obj = obj()
        except Exception as exc:
            raise LaunchError(f"{what} {path}: calling the factory raised {_last_line(exc)}") from None
    return obj


def load_celery_app(path: str, named_by: str = "--celery-app") -> Any:
    """The Celery app at ``path``, found as ``celery -A`` finds it (``proj`` finds ``proj.celery:app``);
    ``named_by`` is where the user named it (``--celery-app``, ``ini celery_app``...), for the errors."""
    from celery import Celery, Task
    from celery.app.utils import find_app

    module_name, _, attribute = path.partition(":")
    if attribute:  # name the missing attribute, not "No module named 'proj.celery:app'" as find_app would
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise LaunchError(f"{named_by} {path} does not import: {_last_line(exc)}") from None
        if not hasattr(module, attribute.split(".")[0]):
            raise LaunchError(f"{named_by} {path}: module {module_name} has no attribute {attribute!r}")
    try:
        app = find_app(path)
    except ModuleNotFoundError as exc:
        raise LaunchError(f"{named_by} {path} does not import: {_last_line(exc)}") from None
    except AttributeError as exc:
        raise LaunchError(f"{named_by} {path} names no Celery app ({exc}); write it as module:attribute") from None
    except Exception as exc:
        raise LaunchError(f"{named_by} {path} does not import: {_last_line(exc)}") from None
    if not isinstance(app, Celery):
        # A task reads as Celery's PromiseProxy (or its Task class): say what it is in the user's words.
        task = type(app).__name__ == "PromiseProxy" or isinstance(app, Task)  # the proxy is not touched: no evaluation
        what = "a task" if task else f"a {type(app).__name__}"
        raise LaunchError(f"{named_by} {path} is {what}, not a Celery app; point it at the Celery() instance")
    return app


def active_apps() -> list[Any]:
    """Every Celery app created in this process so far (apps made by the user's imports)."""
    from celery import _state

    return [app for app in list(_state._get_active_apps()) if app is not _state.default_app]


def configure(app: Any, broker_url: str, settings: dict[str, Any]) -> None:
    """Set what the harness needs, then the scenario's settings, on one app, at every layer that can win
    (``harness.forced_settings``); check each took, and that the app connects to ``broker_url``."""
    try:
        force(app, {**FORCED, "broker_url": broker_url, **settings})
    except NotForced as error:
        raise LaunchError(str(error)) from None
    actual = app.connection_for_write().as_uri(include_password=True)
    from kombu import Connection

    wanted = Connection(broker_url).as_uri(include_password=True)
    if actual != wanted:
        raise LaunchError(
            f"the Celery app {app.main!r} still connects to {app.connection_for_write().as_uri()} after the harness "
            "set broker_url; remove what overrides it (a broker_write_url, a custom connection) for the test run"
        )


def recheck_after_command_line(app: Any, wanted: dict[str, Any], signal: str = "worker_init") -> None:
    """``app.worker_main`` runs Celery's command line, which reads the app, the broker and the result backend
    from the environment too: hide those variables from it, then, once it has run (``worker_init``, in
    the worker's main process before any pool process forks), give them back and read the forced settings
    again. Only those: the worker rewrites some of the scenario's on purpose (``include`` gains the module of
    every registered task), and those were read back before the command line ran."""
    from celery import signals

    hidden = hide_cli_overrides()

    def after(**_: Any) -> None:
        os.environ.update(hidden)
        try:
            check(app, wanted)
        except NotForced as error:
            fail(str(error))

    getattr(signals, signal).connect(after, weak=False)


def configure_all(app: Any, broker_url: str, settings: dict[str, Any]) -> None:
    """``configure`` on ``app`` and every other Celery app the user's imports created (a task bound to another
    app would otherwise run eagerly, or publish elsewhere)."""
    for each in {id(a): a for a in [app, *active_apps()]}.values():
        configure(each, broker_url, settings)


def describe_settings(app: Any) -> dict[str, Any]:
    """The settings as Celery uses them (``result_backend`` from the environment first, as Celery reads it)."""
    return {key: effective(app, key) for key in REPORTED_SETTINGS}


def _plain(value: Any) -> Any:
    """A task option as data: exception classes (``autoretry_for``) by their qualified names."""
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def describe_tasks(app: Any) -> dict[str, dict[str, Any]]:
    router = app.amqp.router
    tasks = {}
    for name, task in sorted(app.tasks.items()):
        if name.startswith("celery."):
            continue
        options = {key: _plain(getattr(task, key, None)) for key in TASK_OPTIONS}
        try:  # routed as apply_async routes it: the task's own options (queue=...), then the app's routes
            route = router.route(dict(task._get_exec_options()), name, args=(), kwargs={}, task_type=task)
            options["queue"] = route["queue"].name if route.get("queue") is not None else options["queue"]
        except Exception:  # an unusual router: the task's own option stays
            pass
        tasks[name] = options
    return tasks


def add_probe(app: Any, probe: dict[str, Any]) -> None:
    """The resilience audit's hook (config key ``probe``): register its probe task on the user's app,
    imitating the task ``probe["like"]`` (see ``harness.probe``)."""
    from .probe import ProbeError, register_probe

    try:
        register_probe(app, probe.get("like"))
    except ProbeError as error:
        raise LaunchError(f"--audit-like: {error}") from None


# -- web programs ------------------------------------------------------------------------------


def _header_values(collected: list[list[Any]]) -> list[tuple[str, str]]:
    ids = ",".join(str(task_id) for task_id, _ in collected)
    published = ",".join(str(task_id) for task_id, done in collected if done)
    return [(TASK_IDS_HEADER, ids), (PUBLISHED_HEADER, published)]


class WsgiTaskIds:
    """WSGI middleware: the response carries the ids of the tasks its request published."""

    def __init__(self, app: Callable) -> None:
        self.app = app

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        collected: list[list[Any]] = []
        token = request_publishes.set(collected)

        def start(status: str, headers: list, exc_info: Any = None) -> Any:
            return start_response(status, [*headers, *_header_values(collected)], exc_info)

        try:
            return self.app(environ, start)
        finally:
            request_publishes.reset(token)


class AsgiTaskIds:
    """ASGI middleware doing the same as ``WsgiTaskIds``."""

    def __init__(self, app: Callable) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        collected: list[list[Any]] = []
        token = request_publishes.set(collected)

        async def tagged(message: dict) -> None:
            if message.get("type") == "http.response.start":
                extra = [(k.lower().encode(), v.encode()) for k, v in _header_values(collected)]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        try:
            await self.app(scope, receive, tagged)
        finally:
            request_publishes.reset(token)


def not_a_web_app(app: Any) -> str | None:
    """Why ``app`` cannot be a WSGI or ASGI application, or None if it can."""
    from celery import Task

    if isinstance(app, Task):
        return f"is the Celery task {app.name!r}"
    if not callable(app):
        return f"is a {type(app).__name__}"
    if is_asgi(app):
        return None
    try:
        inspect.signature(app).bind(None, None)  # WSGI: app(environ, start_response)
    except TypeError:
        return f"is a {type(app).__name__} that cannot be called as app(environ, start_response)"
    except ValueError:  # no readable signature (a builtin): let the server find out
        return None
    return None


def is_asgi(app: Any) -> bool:
    call = app if inspect.isfunction(app) or inspect.ismethod(app) else getattr(app, "__call__", None)  # noqa: B004
    return inspect.iscoroutinefunction(call)


def run_gunicorn(app: Callable, config: dict[str, Any]) -> None:
    from gunicorn.app.base import BaseApplication

    options = {
        "bind": config["bind"],
        "workers": 1,
        "worker_class": "sync",  # one synchronous worker, as in the classic demo: slow work blocks the site
        "graceful_timeout": 3,
        "accesslog": "-",
        "control_socket_disable": True,  # gunicorn >= 24 opens a control socket in $HOME otherwise
        **config.get("server_options", {}),
    }

    class Server(BaseApplication):
        def load_config(self) -> None:
            for key, value in options.items():
                if key in self.cfg.settings:
                    self.cfg.set(key, value)

        def load(self) -> Callable:
            return app

    Server().run()


def run_uvicorn(app: Callable, config: dict[str, Any]) -> None:
    try:
        import uvicorn
    except ImportError:
        raise LaunchError("an ASGI app is served by uvicorn, which is not installed: pip install uvicorn") from None

    host, _, port = config["bind"].rpartition(":")
    uvicorn.run(app, host=host, port=int(port), log_level="info", **config.get("server_options", {}))


def worker_argv(config: dict[str, Any]) -> list[str]:
    argv = ["worker", "-n", config["hostname"], "-E", "--without-gossip", "--without-mingle", "--loglevel", "INFO"]
    if config.get("concurrency") is not None:  # else the app's own worker_concurrency (Celery's default: the CPUs)
        argv += ["-c", str(config["concurrency"])]
    if config.get("pool") is not None:  # else the app's own worker_pool (Celery's default: prefork)
        argv += ["-P", config["pool"]]
    if config.get("queues"):
        argv += ["-Q", ",".join(config["queues"])]
    if config.get("fair"):
        argv += ["-O", "fair"]
    if config.get("max_tasks_per_child"):
        argv += ["--max-tasks-per-child", str(config["max_tasks_per_child"])]
    return argv + list(config.get("extra_args", []))


def beat_argv(config: dict[str, Any]) -> list[str]:
    return ["beat", "-s", config["schedule_file"], "--loglevel", "INFO", *config.get("extra_args", [])]


def run_beat(app: Any, config: dict[str, Any], writer: JournalWriter) -> int:
    """``celery beat`` on the app, with its own scheduler (or the spec's) journaled (``harness.beat_journal``)."""
    from celery.beat import PersistentScheduler
    from celery.utils.imports import load_extension_class_names, symbol_by_name

    from .beat_journal import journaled

    name = config.get("scheduler") or app.conf.beat_scheduler
    default = name is PersistentScheduler or str(name).replace(":", ".") == "celery.beat.PersistentScheduler"
    if default and not app.conf.beat_schedule:  # a database scheduler keeps its entries elsewhere
        raise LaunchError(
            f"the Celery app {app.main!r} has no beat_schedule: give the BeatSpec a schedule, or the app one"
        )
    made: dict[str, type] = {}

    def scheduler(**options: Any) -> Any:
        # Resolved when beat asks for it, after its loader set the app up (Django's setup: django-celery-beat's
        # models import only then), as `celery beat -S` resolves it; then journaled.
        if "class" not in made:
            try:
                found = symbol_by_name(name, aliases=dict(load_extension_class_names("celery.beat_schedulers")))
            except Exception as exc:
                fail(f"the beat scheduler {name} does not import: {_last_line(exc)}")
            made["class"] = journaled(found, writer)
        return made["class"](**options)

    app.conf.beat_scheduler = scheduler  # -S not given: beat calls the app's, this factory
    return app.start(beat_argv(config)) or 0


def patch_concurrency(pool: str | None) -> None:
    """A green pool (gevent, eventlet) patches the standard library's sockets, threads and sleeps, as Celery's own
    ``celery`` command does (``maybe_patch_concurrency``): before the user's app and kombu are imported, or their
    sockets block the whole process. A pool whose package is missing is said in one line."""
    if pool not in ("gevent", "eventlet"):
        return
    try:
        importlib.import_module(pool)
    except ImportError:
        raise LaunchError(f"the worker's pool is {pool}, which is not installed: pip install {pool}") from None
    from celery import maybe_patch_concurrency

    maybe_patch_concurrency(["-P", pool])


def launch(config: dict[str, Any]) -> int:
    if config["role"] == "worker":
        patch_concurrency(config.get("pool"))  # first: nothing of the app or kombu may be imported before it
    for path in reversed(config.get("sys_path", [])):
        if path not in sys.path:
            sys.path.insert(0, path)
    os.environ["CELERY_BROKER_URL"] = config["broker_url"]  # before the import: apps that read it at import
    writer = JournalWriter(config["journal_dir"], config["name"], config.get("hostname"))
    connect(writer)
    settings = config.get("settings", {})
    if config["role"] == "beat":
        app = load_celery_app(config["celery_app"])
        configure_all(app, config["broker_url"], settings)
        writer.write("config", None, app=app.main, settings=describe_settings(app))
        wanted = {**FORCED, **settings}
        recheck_after_command_line(app, {key: wanted[key] for key in FORCED}, signal="beat_init")
        return run_beat(app, config, writer)
    if config["role"] == "worker":
        app = load_celery_app(config["celery_app"])
        configure_all(app, config["broker_url"], settings)
        if config.get("probe") is not None:
            add_probe(app, config["probe"])
        writer.write("config", None, app=app.main, settings=describe_settings(app), tasks=describe_tasks(app))
        wanted = {**FORCED, **settings}
        recheck_after_command_line(app, {key: wanted[key] for key in FORCED})  # as the scenario may have changed them
        return app.worker_main(worker_argv(config)) or 0
    web = load_object(config["web_app"], "--web-app")
    apps = active_apps()
    if not apps and config.get("celery_app"):
        apps = [load_celery_app(config["celery_app"])]
    for each in apps:
        configure(each, config["broker_url"], settings)
    writer.write("config", None, apps=[a.main for a in apps], settings=describe_settings(apps[0]) if apps else {})
    problem = not_a_web_app(web)
    if problem:
        raise LaunchError(
            f"--web-app {config['web_app']} {problem}, not a WSGI or ASGI application; "
            "point it at the app object (module:app) or its factory (module:create_app())"
        )
    if is_asgi(web):
        run_uvicorn(AsgiTaskIds(web), config)
    else:
        run_gunicorn(WsgiTaskIds(web), config)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.launcher", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="the program's JSON configuration, written by the harness")
    args = parser.parse_args(argv)
    with open(args.config) as handle:
        config = json.load(handle)
    try:
        return launch(config)
    except LaunchError as error:
        fail(str(error))
    return 3


if __name__ == "__main__":
    raise SystemExit(main())
