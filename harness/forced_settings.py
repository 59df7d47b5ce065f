"""The Celery settings the harness forces on the user's app, set at every layer that can win, then read back.

``app.conf.update`` alone does not always take. Measured on Celery 5.7 (tests/test_forced_settings.py):

- Celery reads ``CELERY_BROKER_URL``, ``CELERY_RESULT_BACKEND``, ``CELERY_BROKER_READ_URL`` and
  ``CELERY_BROKER_WRITE_URL`` from the environment before its own settings (``celery.app.utils.Settings``):
  a project that loads a ``.env`` file into ``os.environ`` at import beats what the harness sets;
- ``conf.result_backend`` is the first *non-None* of ``result_backend`` and ``CELERY_RESULT_BACKEND``: with
  ``namespace="CELERY"`` (Django's ``config_from_object("django.conf:settings", namespace="CELERY")``), a
  forced ``None`` falls through to the project's ``CELERY_RESULT_BACKEND``, and the worker connects to it;
- projects read their own settings object too: pretalx, for one, runs tasks in the request when
  ``settings.CELERY_TASK_ALWAYS_EAGER`` is true, whatever Celery's ``task_always_eager`` says.

So each forced setting is written to the app's configuration, to the environment variable Celery reads
for it, and to the app's own configuration source (the Django settings, the module or class given to
``config_from_object``) under the names the app uses there; then each one is read back as Celery and
the project read it. One that still differs is an error naming the setting and where the app sets it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

# What the harness always sets, before the scenario's own settings.
FORCED: dict[str, Any] = {
    "worker_send_task_events": True,
    "task_send_sent_event": True,
    "task_always_eager": False,
    "broker_read_url": None,
    "broker_write_url": None,
    "result_backend": None,
}
# Settings Celery reads from these environment variables before anything else.
ENVIRONMENT = {
    "broker_url": "CELERY_BROKER_URL",
    "result_backend": "CELERY_RESULT_BACKEND",
    "broker_read_url": "CELERY_BROKER_READ_URL",
    "broker_write_url": "CELERY_BROKER_WRITE_URL",
}


class NotForced(Exception):
    """A forced setting that did not take, told in one sentence."""


def source_of(app: Any) -> Any:
    """The object the app's configuration was loaded from (Django's settings, a module, a class, a dict), or
    None. Read from the loader after the configuration is loaded (Celery loads it on first access)."""
    app.conf.get("task_always_eager")  # loads a pending configuration
    loaded = getattr(app.loader, "_conf", None)  # Celery's DictAttribute around the object, or a mapping
    return getattr(loaded, "obj", loaded)


def where_set(app: Any) -> str:
    given = getattr(app, "_config_source", None)
    if isinstance(given, str) and given.startswith("django.conf"):
        module = os.environ.get("DJANGO_SETTINGS_MODULE")
        return f"in the Django settings{f' ({module})' if module else ''}"
    if given is not None:
        name = given if isinstance(given, str) else getattr(given, "__name__", type(given).__name__)
        return f"in its config_from_object({name})"
    return "in its configuration"


def source_names(app: Any, key: str) -> list[str]:
    """The names under which the app's configuration source may hold ``key``: with a namespace,
    ``CELERY_TASK_ALWAYS_EAGER``; the plain key; Celery's old name (``CELERY_ALWAYS_EAGER``)."""
    from celery.app.defaults import _TO_OLD_KEY

    names = []
    namespace = getattr(app, "namespace", None)
    if namespace:
        prefix = namespace.rstrip("_") + "_"
        names.append((prefix + key).upper() if prefix.isupper() else prefix + key)
    names.append(key)
    if key in _TO_OLD_KEY:
        names.append(_TO_OLD_KEY[key])
    return list(dict.fromkeys(names))


def _holds(source: Any, name: str) -> bool:
    if isinstance(source, Mapping):
        return name in source
    try:
        getattr(source, name)
    except Exception:  # AttributeError, or a lazy settings object that cannot answer
        return False
    return True


def _put(source: Any, name: str, value: Any) -> None:
    if isinstance(source, Mapping):
        source[name] = value  # type: ignore[index]
    else:
        setattr(source, name, value)


def _read(source: Any, name: str) -> Any:
    return source[name] if isinstance(source, Mapping) else getattr(source, name)


def effective(app: Any, key: str) -> Any:
    """The value Celery uses: for the settings it reads from the environment first, the property Celery's own
    code reads (``conf.result_backend``); for the others, the configuration's lookup (a property such as
    ``task_default_exchange``, which falls back to the queue's name, derives a value, it does not override)."""
    if key in ENVIRONMENT:
        return getattr(app.conf, key)
    return app.conf.get(key)


def forget_backend(app: Any) -> None:
    """Drop the result backend the app built already (per thread, or shared when thread-safe): Celery keeps a
    built backend whatever the settings say next."""
    if getattr(app, "_backend_cache", None) is not None:
        app._backend_cache = None
    vars(app._local).pop("backend", None)


def force(app: Any, wanted: Mapping[str, Any]) -> None:
    """Set ``wanted`` on the app at every layer that can win over ``app.conf.update``, then read each back;
    raise ``NotForced`` naming the first one that did not take and where the app sets it."""
    for key, variable in ENVIRONMENT.items():
        if key in wanted:
            if wanted[key] is None:
                os.environ.pop(variable, None)
            else:
                os.environ[variable] = str(wanted[key])
    app.conf.update(dict(wanted))
    if "result_backend" in wanted:
        forget_backend(app)  # one built at import (an AsyncResult made then) would outlive the setting
    source = source_of(app)
    mirrored: dict[str, list[str]] = {}
    if source is not None:
        for key, value in wanted.items():
            for name in source_names(app, key):
                if _holds(source, name):
                    try:
                        _put(source, name, value)
                    except Exception as exc:  # a read-only source: the read-back below says so
                        raise NotForced(
                            f"the Celery app {app.main!r} sets {name} {where_set(app)}, which the harness cannot "
                            f"override ({type(exc).__name__}: {exc}); remove it for the test run"
                        ) from None
                    mirrored.setdefault(key, []).append(name)
    check(app, wanted)
    for key, value in wanted.items():
        for name in mirrored.get(key, ()):
            if _read(source, name) != value:
                raise NotForced(
                    f"the Celery app {app.main!r} reads {name}={_read(source, name)!r} {where_set(app)} after the "
                    f"harness set it to {value!r}; remove what overrides it for the test run"
                )


def _why(app: Any, key: str, value: Any, actual: Any, source: Any) -> str:
    variable = ENVIRONMENT.get(key)
    if variable and os.environ.get(variable):
        where = f"from the environment variable {variable}"
    else:
        names = [n for n in source_names(app, key) if source is not None and _holds(source, n)]
        where = f"as {names[0]} {where_set(app)}" if names else where_set(app)
    return (
        f"the Celery app {app.main!r} still has {key}={actual!r} after the harness set it to {value!r} (it is set "
        f"{where}); remove what overrides it for the test run"
    )


def check(app: Any, wanted: Mapping[str, Any]) -> None:
    """Read back ``wanted`` as Celery reads it: ``NotForced`` for the first that differs. The broker URLs are
    left to the connection's own check (``harness.launcher.configure``)."""
    for key, value in wanted.items():
        if key in ("broker_url", "broker_read_url", "broker_write_url"):
            continue
        actual = effective(app, key)
        if actual != value:
            raise NotForced(_why(app, key, value, actual, source_of(app)))


# The options of Celery's command line (``celery.bin.celery``) that replace the app, its broker or its result
# backend from the environment: ``APP``, ``BROKER_URL``, ``RESULT_BACKEND`` and, through click's automatic
# prefix, ``CELERY_APP``, ``CELERY_BROKER``, ``CELERY_RESULT_BACKEND``. ``app.worker_main`` runs that command
# line, so a variable of the user's environment would undo what the harness forced.
CLI_OPTIONS = ("app", "broker", "result_backend")


def hide_cli_overrides() -> dict[str, str]:
    """Remove from the environment the variables through which Celery's command line would replace the app,
    the broker or the result backend; return them, to be put back once the command line has run."""
    from celery.bin.celery import celery

    names: list[str] = []
    for param in celery.params:
        if param.name in CLI_OPTIONS:
            names += [n for n in ([param.envvar] if isinstance(param.envvar, str) else param.envvar or [])]
            names.append(f"CELERY_{param.name.upper()}")
    hidden = {name: os.environ.pop(name) for name in dict.fromkeys(names) if name in os.environ}
    # What the harness set itself stays hidden: Celery's settings read these at every access.
    return {name: value for name, value in hidden.items() if name not in ENVIRONMENT.values()}
