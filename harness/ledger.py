"""The task ledger: every task's history, from Celery's own events, received in the test process.

The app emits ``task-sent`` when it publishes, workers emit ``task-received`` / ``-started`` /
``-succeeded`` / ``-failed`` / ``-retried`` / ``-rejected`` (they run with events on). Celery's own
EventReceiver consumes them in a background thread; ``start`` returns only once its queue is bound,
so no event of the scenario can be missed. Scenarios also record what they themselves sent
(``record_send``): the verdict is judged over those ids.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field

from celery import Celery
from celery.events.receiver import EventReceiver

from harness.errors import HarnessError
from harness.verdict import Send, TaskEvent, TaskHistory, Verdict, judge
from harness.waiting import eventually, never


@dataclass(frozen=True)
class WorkerEvent:
    type: str  # worker-online, worker-heartbeat, worker-offline
    hostname: str
    timestamp: float
    received_at: float
    fields: dict = field(default_factory=dict, compare=False, repr=False)


class _Receiver(EventReceiver):
    """Celery's receiver, telling us when its consumer is in place."""

    def __init__(self, *args, on_ready: Callable[[], None], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._on_ready = on_ready

    def on_consume_ready(self, connection, channel, consumers, **kwargs) -> None:
        super().on_consume_ready(connection, channel, consumers, **kwargs)
        self._on_ready()

    def on_connection_error(self, exc, interval) -> None:
        # The broker went away (a broker-fault scenario): kombu reconnects; stay quiet meanwhile.
        pass

    @contextmanager
    def establish_connection(self):
        # kombu's default reconnect backs off 2, 4, 6... s; after a broker restart the ledger must be
        # listening again before the scenario goes on, so retry every few tenths of a second.
        with self.create_connection() as connection:
            connection.ensure_connection(
                self.on_connection_error, max_retries=None, interval_start=0.1, interval_step=0.1, interval_max=0.3
            )
            yield connection


class Ledger:
    def __init__(self, amqp_url: str) -> None:
        self.amqp_url = amqp_url
        self._app = Celery("harness-ledger", broker=amqp_url, set_as_current=False)
        self._app.conf.broker_connection_retry_on_startup = True
        self._lock = threading.Lock()
        self._tasks: dict[str, TaskHistory] = {}
        self._workers: list[WorkerEvent] = []
        self._sends: dict[str, Send] = {}
        self._ready = threading.Event()
        self._listening_since = 0.0  # when the event consumer was last (re)established
        self._receiver: _Receiver | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._connection = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> Ledger:
        self._connection = self._app.connection_for_read()
        self._receiver = _Receiver(
            self._connection, handlers={"*": self._on_event}, app=self._app, on_ready=self._on_listening
        )
        self._thread = threading.Thread(target=self._run, name="harness-ledger", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            self.close()
            cause = f": {self._error!r}" if self._error else ""
            raise HarnessError(
                f"the task ledger could not start listening to Celery events within {timeout:.0f}s{cause}; "
                "check the broker is reachable"
            )
        return self

    def _on_listening(self) -> None:
        self._listening_since = time.time()
        self._ready.set()

    def wait_listening_since(self, since: float, timeout: float = 30.0) -> None:
        """Wait until the event consumer was (re)established after ``since`` (a broker restart, say)."""
        eventually(
            lambda: self._listening_since, until=lambda t: t >= since, timeout=timeout,
            what="the ledger to listen to Celery events again",
        )  # fmt: skip

    def _run(self) -> None:
        try:
            # A short drain interval keeps close() quick; no wakeup broadcast is needed since
            # the ledger is listening before any worker starts.
            self._receiver.run(safety_interval=0.1, wakeup=False)
        except BaseException as exc:
            self._error = exc

    def close(self) -> None:
        if self._receiver is not None:
            self._receiver.should_stop = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._connection is not None:
            self._connection.release()
        self._receiver = self._thread = self._connection = None

    # -- recording -------------------------------------------------------------------------
    def _on_event(self, event: dict) -> None:
        kind = event.get("type", "")
        received_at = event.get("local_received", time.time())
        timestamp = float(event.get("timestamp", received_at))
        with self._lock:
            if kind.startswith("task-"):
                task_id = event.get("uuid", "")
                history = self._tasks.setdefault(task_id, TaskHistory(task_id))
                # Events from the producer and from workers can arrive out of order: keep each
                # history in the order the events happened.
                bisect.insort(
                    history.events,
                    TaskEvent(kind, task_id, event.get("hostname", "?"), timestamp, received_at, event),
                    key=lambda e: e.timestamp,
                )
            elif kind.startswith("worker-"):
                self._workers.append(WorkerEvent(kind, event.get("hostname", "?"), timestamp, received_at, event))

    def record_send(self, task_id: str, ok: bool = True, error: str | None = None) -> Send:
        send = Send(task_id, ok, time.time(), error)
        with self._lock:
            self._sends[task_id] = send
        return send

    # -- reading ---------------------------------------------------------------------------
    @property
    def sent_ids(self) -> list[str]:
        with self._lock:
            return list(self._sends)

    def history(self, task_id: str) -> TaskHistory:
        with self._lock:
            history = self._tasks.get(task_id, TaskHistory(task_id))
            return TaskHistory(task_id, list(history.events))

    def histories(self) -> dict[str, TaskHistory]:
        with self._lock:
            return {i: TaskHistory(i, list(h.events)) for i, h in self._tasks.items()}

    def count(self, event_type: str, ids: Iterable[str] | None = None) -> int:
        """How many of ``ids`` (default: every task seen) have at least one such event."""
        histories = self.histories()
        chosen = histories.values() if ids is None else (histories.get(i) for i in ids)
        return sum(1 for h in chosen if h is not None and h.count(event_type) > 0)

    def retry_waits(self, task_id: str) -> list[float]:
        """Seconds from each ``task-retried`` to the next ``task-started`` of the same task."""
        events = self.history(task_id).events
        return [
            next(s.timestamp for s in events[n:] if s.type == "task-started") - e.timestamp
            for n, e in enumerate(events)
            if e.type == "task-retried" and any(s.type == "task-started" for s in events[n:])
        ]

    def worker_events(self, hostname: str | None = None, type: str | None = None) -> list[WorkerEvent]:
        with self._lock:
            return [
                e
                for e in self._workers
                if (hostname is None or e.hostname == hostname) and (type is None or e.type == type)
            ]

    def worker_online_since(self, hostname: str, since: float) -> bool:
        return any(e.received_at >= since for e in self.worker_events(hostname, "worker-online"))

    def settled(self, ids: Iterable[str]) -> int:
        """How many of ``ids`` have ended (succeeded, failed, or were rejected for good)."""
        histories = self.histories()
        return sum(1 for i in ids if i in histories and histories[i].terminal is not None)

    def wait_received(self, ids: Iterable[str], timeout: float = 10.0) -> None:
        """Wait until a worker has received each of ``ids`` (running or prefetched)."""
        ids = list(ids)
        eventually(
            lambda: self.count("task-received", ids), until=lambda n: n == len(ids), timeout=timeout,
            what=f"a worker to receive all {len(ids)} tasks",
        )  # fmt: skip

    def wait_running(self, ids: Iterable[str], timeout: float = 10.0) -> str:
        """Wait until one of ``ids`` has started and has not ended; return its id."""
        ids = list(ids)

        def running() -> list[str]:
            histories = self.histories()
            return [
                i for i in ids if i in histories and histories[i].count("task-started") and not histories[i].terminal
            ]

        return eventually(running, timeout=timeout, what=f"one of {len(ids)} tasks to be running")[0]

    def wait_started(self, task_id: str, timeout: float = 10.0) -> None:
        eventually(
            lambda: self.history(task_id).count("task-started"), timeout=timeout,
            what=f"task {task_id} to start on a worker",
        )  # fmt: skip

    def wait_settled(self, ids: Iterable[str] | None = None, timeout: float = 30.0) -> None:
        ids = list(self.sent_ids if ids is None else ids)
        eventually(
            lambda: self.settled(ids),
            until=lambda n: n == len(ids),
            timeout=timeout,
            what=f"all {len(ids)} tasks to end (succeeded or failed), counted from Celery events",
            progress=lambda n: f"{n}/{len(ids)} ended",
        )

    def event_count(self, ids: Iterable[str]) -> int:
        histories = self.histories()
        return sum(len(histories[i].events) for i in ids if i in histories)

    def assert_quiet(self, ids: Iterable[str], for_: float, why: str) -> None:
        """Watch for ``for_`` seconds: no new event for any of ``ids`` (nothing redelivers or reruns them)."""
        ids = list(ids)
        baseline = self.event_count(ids)
        never(
            lambda: self.event_count(ids), until=lambda n: n != baseline, for_=for_,
            what=f"a new event arrived for one of {len(ids)} tasks although {why}",
        )  # fmt: skip

    def verdict(self, queued: Iterable[str] = (), unacked: int | None = 0) -> Verdict:
        with self._lock:
            sends = dict(self._sends)
        return judge(sends, self.histories(), queued, unacked)
