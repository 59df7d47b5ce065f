"""How a scenario sends tasks: through the web app over HTTP, or straight from the test process.

A producer spec is data on the ``StackSpec`` (``producer=``); the stack binds it when it starts, and
the ``producer`` fixture is the bound sender. Every send is recorded in the ledger with its task id and
whether the send reported success, so the verdict covers exactly what the scenario asked for; a send
is never recorded without an id, and an answer the spec did not expect is an error, not a silent miss.

- ``HttpProducer``: a route of the user's web app (method, path, JSON or form body, the statuses that
  mean "queued" and "refused", and where the task id is: a JSON field, a header matched by a regex, or,
  by default, the ids the request published, which the launcher's middleware reports);
- ``DirectProducer``: ``apply_async`` (or ``send_task``) of the app's own task, from the test process,
  for teams that test the worker alone.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import requests

from harness.errors import HarnessError
from harness.forced_settings import NotForced, check, forget_backend
from harness.launcher import PUBLISHED_HEADER, TASK_IDS_HEADER
from harness.sent import Sent

if TYPE_CHECKING:
    from harness.stack import AppStack


def _render(template: Any, n: int) -> Any:
    """``"{n}"`` in any string of a body template becomes the send's number."""
    if isinstance(template, str):
        return template.replace("{n}", str(n))
    if isinstance(template, Mapping):
        return {k: _render(v, n) for k, v in template.items()}
    if isinstance(template, list | tuple):
        return type(template)(_render(v, n) for v in template)
    return template


# -- where a web answer puts the task id ----------------------------------------------------------


@dataclass(frozen=True)
class Published:
    """The ids of the tasks the request published, reported by the launcher's middleware (any app)."""

    def ids(self, response: requests.Response) -> list[str]:
        return [i for i in response.headers.get(TASK_IDS_HEADER, "").split(",") if i]

    def describe(self) -> str:
        return "the tasks the request published"


@dataclass(frozen=True)
class JsonField:
    """A field of the JSON answer (dotted for nested objects: ``"result.id"``)."""

    name: str

    def ids(self, response: requests.Response) -> list[str]:
        try:
            value: Any = response.json()
        except ValueError:
            return []
        for part in self.name.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        return [str(value)] if value else []

    def describe(self) -> str:
        return f"JSON field {self.name!r}"


@dataclass(frozen=True)
class Header:
    """A header, e.g. ``Header("Location", r"/tasks/(?P<id>[^/]+)")``; the ``id`` group (or the whole match)."""

    name: str
    pattern: str = r"(?P<id>[0-9a-fA-F-]{36})"

    def ids(self, response: requests.Response) -> list[str]:
        match = re.search(self.pattern, response.headers.get(self.name, ""))
        if not match:
            return []
        return [match.groupdict().get("id") or match.group(0)]

    def describe(self) -> str:
        return f"header {self.name} matched by {self.pattern!r}"


# -- over HTTP --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpProducer:
    """A route of the web app that enqueues a task, e.g.
    ``HttpProducer("/signup", form={"email": "user-{n}@example.com"})``.

    ``accepted``: statuses meaning "queued"; ``refused``: statuses meaning the app knew it could not queue
    (recorded as a failed send); anything else raises with the start of the answer's body.
    """

    path: str = "/"
    method: str = "POST"
    json: Mapping[str, Any] | None = None
    form: Mapping[str, Any] | None = None
    accepted: tuple[int, ...] = (200, 201, 202, 204, 302, 303)
    refused: tuple[int, ...] = (503,)
    task_id: Published | JsonField | Header = field(default_factory=Published)
    timeout: float = 15.0

    def bind(self, stack: AppStack) -> HttpSender:
        if stack.web is None:
            raise HarnessError(
                f"HttpProducer({self.path!r}) needs a web app: give the stack a web= (or --web-app), or use a "
                "DirectProducer"
            )
        return HttpSender(self, stack.web.base_url, stack.ledger)


class HttpSender:
    """The bound ``HttpProducer`` (the ``producer`` fixture of a stack with a web route): each send is a request
    to the web app, recorded in the ledger with the task id(s) it published."""

    def __init__(self, spec: HttpProducer, base_url: str, ledger) -> None:
        self.spec = spec
        self.base_url = base_url.rstrip("/")
        self.ledger = ledger
        self._session = requests.Session()

    def _where(self) -> str:
        return f"{self.spec.method} {self.spec.path}"

    def send(self, n: int = 0) -> Sent:
        """One request (``"{n}"`` in its body becomes ``n``); returns its ``Sent``: the task id(s), whether the
        app accepted it (``ok``), how long the request took, the HTTP status. An answer neither accepted nor
        refused raises, with the start of its body."""
        spec = self.spec
        started = time.monotonic()
        try:
            response = self._session.request(
                spec.method, f"{self.base_url}{spec.path}", json=_render(spec.json, n) if spec.json else None,
                data=_render(spec.form, n) if spec.form else None, timeout=spec.timeout, allow_redirects=False,
            )  # fmt: skip
        except requests.RequestException as exc:
            return Sent(None, False, time.monotonic() - started, None, type(exc).__name__)
        seconds = time.monotonic() - started
        status = response.status_code
        ids = spec.task_id.ids(response)
        attempted = Published().ids(response)
        published = set(response.headers.get(PUBLISHED_HEADER, "").split(",")) - {""}
        if status in spec.accepted:
            if not ids:
                raise HarnessError(
                    f"{self._where()} answered {status} but {spec.task_id.describe()} gave no task id "
                    f"(body starts {response.text[:120]!r}); set HttpProducer(task_id=...) to where the app "
                    "puts it, or check that the route enqueues a task"
                )
            # The middleware knows whether each publish returned; for an id it did not see, trust the status.
            oks = [task_id in published if task_id in attempted else True for task_id in ids]
            for task_id, ok in zip(ids, oks, strict=True):
                self.ledger.record_send(task_id, ok=ok, error=None if ok else "the publish raised")
            return Sent(ids[0], all(oks), seconds, status, None, tuple(ids))
        if status in spec.refused:
            refused = ids or attempted
            error = _error_of(response) or f"HTTP {status}"
            for task_id in refused:
                self.ledger.record_send(task_id, ok=False, error=error)
            return Sent(refused[0] if refused else None, False, seconds, status, error, tuple(refused))
        raise HarnessError(
            f"{self._where()} answered {status}, which the producer neither accepts {spec.accepted} nor expects as "
            f"a refusal {spec.refused}; the body starts {response.text[:200]!r}; fix the path or body, or list "
            "the status in HttpProducer(accepted=...) or (refused=...)"
        )

    def send_many(self, count: int) -> list[Sent]:
        """``count`` sends, numbered 0.. in turn; returns their ``Sent``s in order (what every wait takes)."""
        return [self.send(n) for n in range(count)]

    def close(self) -> None:
        """Close the HTTP session; returns None. The stack does this."""
        self._session.close()


def _error_of(response: requests.Response) -> str | None:
    with suppress(ValueError):
        body = response.json()
        if isinstance(body, Mapping) and body.get("error"):
            return str(body["error"])
    return None


# -- from the test process --------------------------------------------------------------------------


@dataclass(frozen=True)
class DirectProducer:
    """The app's own task, sent from the test process: ``DirectProducer("proj.tasks.add", args=(2, 3))``.

    ``via="apply_async"`` (default) sends through the task object, with its routing and options, as the
    app's own code would; ``via="send_task"`` sends by name only, as a producer that does not import the
    worker's code does. ``"{n}"`` in string arguments becomes the send's number. The scenario's Celery
    settings are applied to the app in the test process while the scenario runs, and restored after.
    """

    task: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    celery_app: str | None = None  # default: the stack's
    via: str = "apply_async"
    options: Mapping[str, Any] = field(default_factory=dict)  # apply_async options: countdown, queue...

    def __post_init__(self) -> None:
        if self.via not in ("apply_async", "send_task"):
            raise HarnessError(f"DirectProducer(via={self.via!r}) is not apply_async or send_task")

    def bind(self, stack: AppStack) -> DirectSender:
        path = self.celery_app or stack.spec.celery_app
        if not path:
            raise HarnessError("DirectProducer needs a Celery app: pass celery_app= or --celery-app")
        return DirectSender(self, load_app(path, stack.cwd, stack.vhost.url), stack)


def load_app(path: str, cwd: str, broker_url: str) -> Any:
    """The user's Celery app, imported into the test process (its folder first on the import path), with
    ``CELERY_BROKER_URL`` set while it imports, as the launcher sets it in the programs."""
    from harness.launcher import LaunchError, load_celery_app

    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    before = os.environ.get("CELERY_BROKER_URL")
    os.environ["CELERY_BROKER_URL"] = broker_url
    try:
        return load_celery_app(path)
    except LaunchError as error:
        raise HarnessError(str(error)) from None
    finally:
        if before is None:
            del os.environ["CELERY_BROKER_URL"]
        else:
            os.environ["CELERY_BROKER_URL"] = before


class DirectSender:
    """The bound ``DirectProducer``: sends the app's task from the test process, each send recorded in the
    ledger. While it is bound the app has the scenario's settings and no result backend but the one the
    scenario asks for; ``close`` gives the app back as it was."""

    def __init__(self, spec: DirectProducer, app: Any, stack: AppStack) -> None:
        self.spec = spec
        self.app = app
        self.ledger = stack.ledger
        # Never eager: a project's test set-up (a conftest's pytest_configure, test settings) may have turned it
        # on, and the tasks would then run here, never reaching a worker (a trial's audit said "lost 20").
        settings = {"task_send_sent_event": True, "task_always_eager": False, **stack.settings_for(None)}
        self._saved = {key: app.conf.get(key) for key in settings}
        self._backend = ResultBackend(app, settings.get("result_backend"))
        app.conf.update(settings)  # before the task modules are imported: the scenario's include= and imports=
        try:  # read back: the backend is pinned apart (ResultBackend), the broker by the connection below
            check(app, {key: value for key, value in settings.items() if key != "result_backend"})
        except NotForced as error:
            self.close()
            raise HarnessError(f"DirectProducer: {error}") from None
        if spec.via == "apply_async":
            import_task_modules(app, spec.task)
        # The app's own connection settings (connect timeout, transport options), to the scenario's vhost.
        self._connection = app.connection_for_write(stack.vhost.url)

    def send(self, n: int = 0) -> Sent:
        """One send of the task (``"{n}"`` in string arguments becomes ``n``); returns its ``Sent``: the task id,
        whether the broker took it (``ok``; a refusal or a broker that is down is ``ok=False`` with the error),
        how long it took."""
        return self.send_call(_render(tuple(self.spec.args), n), _render(dict(self.spec.kwargs), n))

    def send_call(self, args: tuple[Any, ...], kwargs: Mapping[str, Any], connection: Any = None) -> Sent:
        """One send of the task with these arguments, recorded in the ledger with its task id; on another
        connection than the sender's own if given (sends from several threads at once); returns its ``Sent``."""
        import uuid

        spec = self.spec
        task_id = str(uuid.uuid4())
        options = {**spec.options, "task_id": task_id, "ignore_result": True}
        started = time.monotonic()
        try:
            producer = self.app.amqp.Producer(connection or self._connection)
            if spec.via == "apply_async":
                result = self.app.tasks[spec.task].apply_async(args, kwargs, producer=producer, **options)
            else:
                result = self.app.send_task(spec.task, args, kwargs, producer=producer, **options)
        except Exception as exc:  # the broker refused or is down: a send that reported an error
            self.ledger.record_send(task_id, ok=False, error=f"{type(exc).__name__}: {exc}"[:200])
            return Sent(task_id, False, time.monotonic() - started, None, type(exc).__name__, (task_id,))
        if type(result).__name__ == "EagerResult":  # ran here, sent nowhere: never a verdict on it
            raise HarnessError(
                f"DirectProducer: the app ran {spec.task} in the test process instead of sending it (eager mode, "
                "set after the harness turned it off, or a task class that runs itself); remove that for the run"
            )
        self.ledger.record_send(task_id)
        return Sent(task_id, True, time.monotonic() - started, None, None, (task_id,))

    def send_many(self, count: int) -> list[Sent]:
        """``count`` sends, numbered 0.. in turn; returns their ``Sent``s in order (what every wait takes)."""
        return [self.send(n) for n in range(count)]

    def connection(self) -> Any:
        """A connection of the app's own settings to the scenario's vhost (release it after use)."""
        return self.app.connection_for_write(self._connection.as_uri(include_password=True))

    def close(self) -> None:
        """Give the app back its own settings and result backend, and release the sender's connection."""
        self.app.conf.update(self._saved)
        self._backend.restore()
        with suppress(Exception):
            self._connection.release()


def import_task_modules(app: Any, task: str) -> None:
    """Import the task modules a worker of this app imports (its ``include`` and ``imports``, the scenario's
    included, and what it autodiscovers), then check the task is registered; else one sentence saying how."""
    try:
        app.loader.import_default_modules()
    except Exception as exc:
        modules = ", ".join(map(str, app.loader.default_modules)) or "none"
        raise HarnessError(
            f"DirectProducer: the app's task modules ({modules}) do not import in the test process: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    if task not in app.tasks:
        known = ", ".join(sorted(n for n in app.tasks if not n.startswith("celery."))) or "none"
        raise HarnessError(
            f"DirectProducer: the app has no task {task!r}; its tasks: {known}; if a module the worker is given "
            "registers it, name that module in the app's include= or the scenario's celery_config(include=[...]) "
            "(the test process imports those too), or import it in the test"
        )


class ResultBackend:
    """The result backend of the app in the test process: the one the scenario asks for (its ``result_backend``
    setting), else none, as in the programs. Set on the app object (``backend_cls``, which Celery reads before
    any setting), not through ``result_backend``: Celery takes ``CELERY_RESULT_BACKEND`` from the environment
    before any setting, and keeps a backend it built already whatever the settings say. So the app's own
    backend is never built here (a ``db+sqlite:///results.sqlite`` one creates its file in the working
    directory when built, which every send did: its ``AsyncResult`` asks the app for its backend).
    ``restore`` gives the app back its own (built when next needed, by whatever needs it)."""

    def __init__(self, app: Any, asked: str | None) -> None:
        self.app = app
        self._own = app.__dict__.get("backend_cls", _UNSET)
        app.backend_cls = asked or "disabled"
        self._forget()

    def _forget(self) -> None:
        forget_backend(self.app)

    def restore(self) -> None:
        if self._own is _UNSET:
            self.app.__dict__.pop("backend_cls", None)
        else:
            self.app.backend_cls = self._own
        self._forget()


_UNSET = object()


def assert_all_queued(sends: list[Sent], within: float) -> None:
    """Every send was accepted (queued), each within ``within`` seconds."""
    refused = [s for s in sends if not s.ok]
    assert not refused, f"{len(refused)} of {len(sends)} sends were not queued: {refused[:5]}"
    slowest = max(s.seconds for s in sends)
    assert slowest < within, f"the slowest send took {slowest:.2f}s; offloaded work must answer within {within}s"
