"""The journal: the second witness of every task, written by the programs themselves, read by the harness.

Celery events travel through the broker, so a fault that cuts the broker off can lose some of them
(see ``harness.events``). The journal needs no broker: the harness's launcher connects Celery signal
handlers in every program it starts (``connect``), and each handler appends one JSON line per step to
a file of the scenario's directory, one file per process (``<program>.<pid>.jsonl``), with a single
``os.write`` on an ``O_APPEND`` descriptor and no buffering. A SIGKILL can therefore cut short at most
the line being written; the reader keeps such a partial last line aside and reports it as a ``Cut``.

Steps use the names of Celery's events, so the two witnesses can be merged (``harness.evidence``):

=====================  ==================  =========================================
signal                 step                where it fires
=====================  ==================  =========================================
before_task_publish    task-sent           the producer (web app, or a retrying task)
after_task_publish     task-published      the producer, once the broker took it
task_received          task-received       the worker's main process
task_prerun            task-started        the pool process (with the bound arguments)
task_success           task-succeeded      the pool process
task_failure           task-failed         the pool process, or the main one (lost pool process)
task_retry             task-retried        the pool process
task_unknown           task-failed         the main process (``NotRegistered``)
task_rejected          task-rejected       the main process (a message it cannot use)
task_revoked           task-revoked        the main process
task_postrun           task-postrun        the pool process (journal only)
worker_ready           worker-online       the main process
worker_shutting_down   worker-stopping     the main process (a shutdown signal was handled)
worker_shutdown        worker-offline      the main process
=====================  ==================  =========================================

This module is imported by the launcher inside the user's programs: it depends on the standard
library and Celery only.
"""

from __future__ import annotations

import contextvars
import inspect
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SUFFIX = ".jsonl"

# Task ids published during the current web request (see the launcher's middleware): each entry is
# [task id, published?]. A context variable, so concurrent requests (threads, asyncio) do not mix.
request_publishes: contextvars.ContextVar[list[list[Any]] | None] = contextvars.ContextVar(
    "harness_request_publishes", default=None
)


def _short_repr(value: object, limit: int = 300) -> str:
    try:
        text = repr(value)
    except Exception:  # an exception whose repr raises: its type is what matters
        text = f"<{type(value).__name__}>"
    return text[:limit]


class JournalWriter:
    """Appends steps for one program; after a fork, the child writes to a file of its own."""

    def __init__(self, folder: str | Path, program: str, hostname: str | None = None) -> None:
        self.folder = Path(folder)
        self.program = program
        self.hostname = hostname  # the worker's node name, for steps whose request does not say
        self._fd: int | None = None
        self._pid: int | None = None

    def _descriptor(self) -> int:
        pid = os.getpid()
        if self._fd is None or self._pid != pid:
            self.folder.mkdir(parents=True, exist_ok=True)
            path = self.folder / f"{self.program}.{pid}{SUFFIX}"
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            self._pid = pid
        return self._fd

    def write(self, type: str, uuid: str | None = None, hostname: str | None = None, **fields: Any) -> None:
        line = {"type": type, "uuid": uuid, "hostname": hostname or self.hostname, "t": time.time()}
        line.update(fields)
        data = (json.dumps(line, default=_short_repr, separators=(",", ":")) + "\n").encode()
        os.write(self._descriptor(), data)  # one write: a kill cuts at most this line


def error_fields(exception: BaseException | None) -> dict[str, str]:
    """The exception's real type and message (``str(exc)``), for the harness to show as ``ValueError: bad input``:
    unwrapped from billiard's ``ExceptionWithTraceback`` (whose repr names neither) and from Celery's
    ``UnpickleableExceptionWrapper`` (an exception that could not cross the pool's pipe)."""
    if exception is None:
        return {}
    inner = getattr(exception, "exc", None)
    if type(exception).__name__ == "ExceptionWithTraceback" and isinstance(inner, BaseException):
        exception = inner
    if type(exception).__name__ == "UnpickleableExceptionWrapper":
        args = tuple(getattr(exception, "exc_args", ()) or ())
        message = str(args[0]) if len(args) == 1 else str(args) if args else ""
        return {"error_type": str(getattr(exception, "exc_cls_name", "?")), "error_message": message[:300]}
    try:
        message = str(exception)
    except Exception:  # an exception whose __str__ raises: its type is what matters
        message = ""
    return {"error_type": type(exception).__name__, "error_message": message[:300]}


def _id_from(headers: dict | None, body: Any) -> str | None:
    if headers and headers.get("id"):
        return str(headers["id"])
    if isinstance(body, dict) and body.get("id"):  # Celery message protocol 1
        return str(body["id"])
    return None


def bound_arguments(task: Any, args: Any, kwargs: Any) -> dict[str, str] | None:
    """What each parameter of the task's function receives from the message (reprs), as Python binds it:
    the deploy check reads it to see a value land in another parameter. None if they do not bind (the
    call is about to raise TypeError) or the function has no readable signature."""
    try:
        bound = inspect.signature(task.run).bind(*(args or ()), **(kwargs or {}))
    except (TypeError, ValueError):
        return None
    return {name: _short_repr(value, 120) for name, value in bound.arguments.items()}


def pool_name(pool: Any) -> str | None:
    """The pool a worker runs, as ``-P`` names it (Celery's ``celery.concurrency.thread`` is ``threads``); None
    when there is none to read."""
    if pool is None:
        return None
    module = type(pool).__module__
    name = module.rsplit(".", 1)[-1]
    return "threads" if name == "thread" else name if module.startswith("celery.concurrency.") else module


def connect(writer: JournalWriter) -> None:
    """Connect the journal's handlers to Celery's signals (strong references: they live as long as the
    process)."""
    from celery import signals

    def before_publish(sender=None, headers=None, body=None, routing_key=None, exchange=None, **_: Any) -> None:
        task_id = _id_from(headers, body)
        headers = headers or {}
        writer.write(
            "task-sent", task_id, name=sender, routing_key=routing_key, exchange=exchange,
            retries=headers.get("retries") or 0, parent_id=headers.get("parent_id"), root_id=headers.get("root_id"),
        )  # fmt: skip
        collected = request_publishes.get()
        if collected is not None and task_id:
            collected.append([task_id, False])

    def after_publish(sender=None, headers=None, body=None, routing_key=None, **_: Any) -> None:
        task_id = _id_from(headers, body)
        writer.write("task-published", task_id, name=sender, routing_key=routing_key)
        for entry in request_publishes.get() or ():
            if entry[0] == task_id:
                entry[1] = True

    def received(sender=None, request=None, **_: Any) -> None:
        delivery = getattr(request, "delivery_info", None) or {}
        writer.write(
            "task-received", request.id, getattr(sender, "hostname", None), name=request.name,
            redelivered=bool(delivery.get("redelivered")),
        )  # fmt: skip

    def prerun(sender=None, task_id=None, task=None, args=None, kwargs=None, **_: Any) -> None:
        request = getattr(task, "request", None)
        writer.write(
            "task-started", task_id, getattr(request, "hostname", None), name=getattr(task, "name", None),
            retries=getattr(request, "retries", 0), arguments=bound_arguments(task, args, kwargs),
        )  # fmt: skip

    def postrun(sender=None, task_id=None, task=None, state=None, **_: Any) -> None:
        writer.write("task-postrun", task_id, getattr(getattr(task, "request", None), "hostname", None), state=state)

    def success(sender=None, **_: Any) -> None:
        request = getattr(sender, "request", None)
        writer.write("task-succeeded", getattr(request, "id", None), getattr(request, "hostname", None))

    def failure(sender=None, task_id=None, exception=None, **_: Any) -> None:
        request = getattr(sender, "request", None)
        hostname = getattr(request, "hostname", None) if getattr(request, "id", None) == task_id else None
        writer.write("task-failed", task_id, hostname, exception=_short_repr(exception), **error_fields(exception))

    def retry(sender=None, request=None, reason=None, **_: Any) -> None:
        # Celery sends task_retry without a reason for one case only: it cancelled the run itself (a lost
        # connection with worker_cancel_long_running_tasks_on_connection_loss, a cold shutdown), marking it
        # Retry("cancelled by Celery"); the message comes back to run again.
        why = "cancelled by Celery" if reason is None else _short_repr(reason)
        writer.write("task-retried", getattr(request, "id", None), getattr(request, "hostname", None), exception=why)

    def unknown(sender=None, name=None, id=None, **_: Any) -> None:
        writer.write("task-failed", id, getattr(sender, "hostname", None), exception=f"NotRegistered({name!r})")

    def rejected(sender=None, message=None, exc=None, **_: Any) -> None:
        headers = getattr(message, "headers", None) or {}
        writer.write(
            "task-rejected", _id_from(headers, None), getattr(sender, "hostname", None), requeue=False,
            reason=_short_repr(exc) if exc is not None else "unknown message", content_type=getattr(
                message, "content_type", None
            ),
        )  # fmt: skip

    def revoked(sender=None, request=None, terminated=None, signum=None, expired=None, **_: Any) -> None:
        writer.write(
            "task-revoked", getattr(request, "id", None), getattr(request, "hostname", None),
            terminated=bool(terminated), signum=_short_repr(signum) if signum else None, expired=bool(expired),
        )  # fmt: skip

    def ready(sender=None, **_: Any) -> None:
        # The pool size the worker settled on (-c, else the app's worker_concurrency, else Celery's default).
        concurrency = getattr(getattr(sender, "controller", None), "concurrency", None)
        # The queues it consumes (-Q, else the app's): what a status says of a queue on a broker that counts no
        # consumers (Redis).
        try:
            queues = sorted(sender.app.amqp.queues.consume_from)
        except Exception:  # another sender than Celery's consumer: unknown
            queues = None
        writer.write(
            "worker-online", None, getattr(sender, "hostname", None), concurrency=concurrency, queues=queues,
            pool=pool_name(getattr(getattr(sender, "controller", None), "pool", None)),
        )  # fmt: skip

    def stopping(sender=None, sig=None, how=None, **_: Any) -> None:
        writer.write("worker-stopping", None, signal=sig, how=how)

    def shutdown(sender=None, **_: Any) -> None:
        writer.write("worker-offline", None)

    def process_shutdown(pid=None, exitcode=None, **_: Any) -> None:
        writer.write("worker-process-shutdown", None, exitcode=exitcode)

    for signal, handler in (
        (signals.before_task_publish, before_publish),
        (signals.after_task_publish, after_publish),
        (signals.task_received, received),
        (signals.task_prerun, prerun),
        (signals.task_postrun, postrun),
        (signals.task_success, success),
        (signals.task_failure, failure),
        (signals.task_retry, retry),
        (signals.task_unknown, unknown),
        (signals.task_rejected, rejected),
        (signals.task_revoked, revoked),
        (signals.worker_ready, ready),
        (signals.worker_shutting_down, stopping),
        (signals.worker_shutdown, shutdown),
        (signals.worker_process_shutdown, process_shutdown),
    ):
        signal.connect(handler, weak=False)


# -- reading (the test process) ------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One step a program wrote."""

    type: str
    uuid: str | None
    hostname: str | None
    t: float
    program: str
    pid: int
    fields: dict = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class Cut:
    """A journal file whose last line is incomplete: its process died while writing it."""

    program: str
    pid: int
    after: float  # the time of the last complete line (or the file's creation)
    text: str

    def describe(self) -> str:
        return (
            f"the journal of {self.program} (pid {self.pid}) ends mid-line: a step after {self.after:.3f} is unreadable"
        )


@dataclass
class _File:
    offset: int = 0
    partial: bytes = b""
    last_t: float = 0.0


class JournalReader:
    """Reads every program's journal in a folder, incrementally (each call reads only what is new)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._files: dict[Path, _File] = {}
        self._entries: list[Entry] = []

    def _read_new(self) -> None:
        if not self.folder.is_dir():
            return
        for path in sorted(self.folder.glob(f"*{SUFFIX}")):
            state = self._files.setdefault(path, _File(last_t=path.stat().st_mtime))
            with path.open("rb") as handle:
                handle.seek(state.offset)
                data = handle.read()
            if not data:
                continue
            state.offset += len(data)
            data = state.partial + data
            *lines, state.partial = data.split(b"\n")
            program, _, pid = path.name[: -len(SUFFIX)].rpartition(".")
            for raw in lines:
                if not raw.strip():
                    continue
                try:
                    line = json.loads(raw)
                except ValueError:  # a torn line inside the file: cannot happen with one write per line
                    continue
                state.last_t = float(line.get("t", state.last_t))
                self._entries.append(
                    Entry(
                        line.get("type", "?"), line.get("uuid"), line.get("hostname"), state.last_t, program,
                        int(pid) if pid.isdigit() else 0, line,
                    )
                )  # fmt: skip

    def entries(self) -> list[Entry]:
        self._read_new()
        return list(self._entries)

    def cuts(self) -> list[Cut]:
        """Files that end in an incomplete line (read the files first)."""
        self._read_new()
        cuts = []
        for path, state in self._files.items():
            if state.partial:
                program, _, pid = path.name[: -len(SUFFIX)].rpartition(".")
                cuts.append(
                    Cut(
                        program,
                        int(pid) if pid.isdigit() else 0,
                        state.last_t,
                        state.partial[:200].decode(errors="replace"),
                    )
                )
        return cuts

    def programs(self) -> set[str]:
        self._read_new()
        return {e.program for e in self._entries}

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries())
