"""The first witness: Celery's own events, received in the test process through the broker.

Producers emit ``task-sent``; workers emit ``task-received`` / ``-started`` / ``-succeeded`` / ``-failed``
/ ``-retried`` / ``-rejected`` and ``worker-*`` (the launcher turns events on). Celery's
``EventReceiver`` consumes them in a background thread.

Why the queue is durable and named (issue: a broker restart lost events). Celery's receiver consumes
from an auto-delete, non-durable queue. It vanishes with the broker; a worker that reconnects first
flushes the events it buffered while the broker was away (``celery.worker.consumer.events.Events.start``:
``dis.extend_buffer(prev); dis.flush()``) into a ``celeryev`` exchange that, until the receiver has
declared its queue again, routes them nowhere, and they are gone. Here the queue is durable, not
auto-delete, bound before anything is sent and deleted with the scenario's vhost: events published while
the receiver reconnects wait for it. What remains blind is the broker's own down time (events are
published transient, so those still in the queue when the broker stops are dropped, and a worker that
dies while the broker is away takes its buffer with it): ``blind_spans`` reports those spans, and the
journal (``harness.journal``) covers them.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager

from celery import Celery
from celery.events.receiver import EventReceiver
from kombu import Queue

from harness.errors import HarnessError
from harness.verdict import Span
from harness.waiting import WaitTimeout, eventually

QUEUE_PREFIX = "harness.ledger."
# A queue left by a run that was killed (a url broker keeps it: its vhost is not ours to delete) goes
# by itself once nothing has consumed from it for this long.
LEFTOVER_EXPIRES_MS = 15 * 60 * 1000


class _Receiver(EventReceiver):
    """Celery's receiver on a durable named queue, telling the witness when it consumes and when it lost
    the connection."""

    def __init__(self, *args, on_ready: Callable[[], None], on_lost: Callable[[], None], gate=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._on_ready = on_ready
        self._on_lost = on_lost
        self._gate = gate
        self.queue = Queue(
            f"{QUEUE_PREFIX}{self.node_id}",
            exchange=self.exchange,
            routing_key=self.routing_key,
            durable=True,
            auto_delete=False,
            expires=LEFTOVER_EXPIRES_MS / 1000,
        )

    def on_consume_ready(self, connection, channel, consumers, **kwargs) -> None:
        super().on_consume_ready(connection, channel, consumers, **kwargs)
        self._on_ready()

    def event_from_message(self, body, localize=True, **kwargs):
        # Celery "localizes" each timestamp by the sender's and the receiver's UTC offsets
        # (``adjust_timestamp``), although it is already seconds since the epoch: a worker in another
        # time zone (Django sets TZ from TIME_ZONE) would appear hours off. Keep the epoch as sent; it is
        # what the journal and the timeline use.
        return super().event_from_message(body, localize=False, **kwargs)

    def on_connection_error(self, exc, interval) -> None:
        # The broker went away (a broker-fault scenario): kombu reconnects; note it and stay quiet.
        self._on_lost()

    @property
    def restart_limit(self):
        # kombu's mixin allows one consume restart a second; the witness comes back as fast as the broker.
        from kombu.utils.limits import TokenBucket

        return TokenBucket(20)

    def consume(self, *args, **kwargs):
        # The first sign of a lost connection is an error out of the consume loop, before any reconnect.
        try:
            yield from super().consume(*args, **kwargs)
        except Exception:
            self._on_lost()
            raise

    def on_connection_revived(self) -> None:
        if self._gate is not None:  # tests hold the reconnect here to reproduce the race
            self._gate()

    @contextmanager
    def establish_connection(self):
        # kombu's default reconnect backs off 2, 4, 6... s; the witness retries every few tenths.
        with self.create_connection() as connection:
            connection.ensure_connection(
                self.on_connection_error, max_retries=None, interval_start=0.1, interval_step=0.1, interval_max=0.3
            )
            yield connection


class EventWitness:
    """Celery events of one vhost, recorded with the time they arrived, and the spans it was deaf."""

    def __init__(self, amqp_url: str, on_event: Callable[[dict], None], reconnect_gate=None) -> None:
        self.amqp_url = amqp_url
        self._on_event = on_event
        self._gate = reconnect_gate
        self._app = Celery("harness-ledger", broker=amqp_url, set_as_current=False)
        self._app.conf.broker_connection_retry_on_startup = True
        if amqp_url.startswith("redis"):  # named: a fault that cuts the app's connections (CLIENT KILL) spares it
            self._app.conf.broker_transport_options = {"client_name": "harness-ledger"}
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self.listening_since = 0.0  # when the consumer was last (re)established
        self._deaf_since: float | None = None
        self._deaf: list[Span] = []
        self._receiver: _Receiver | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._connection = None
        self.queue_name: str | None = None

    def start(self, timeout: float = 10.0) -> EventWitness:
        self._connection = self._app.connection_for_read()
        self._receiver = _Receiver(
            self._connection, handlers={"*": self._on_event}, app=self._app, node_id=uuid.uuid4().hex,
            on_ready=self._on_listening, on_lost=self._on_lost, gate=self._gate,
        )  # fmt: skip
        self.queue_name = self._receiver.queue.name
        self._thread = threading.Thread(target=self._run, name="harness-events", daemon=True)
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
        now = time.time()
        with self._lock:
            if self._deaf_since is not None:
                self._deaf.append(Span(self._deaf_since, now, "the ledger's connection to the broker was down"))
                self._deaf_since = None
            self.listening_since = now
        self._ready.set()

    def _on_lost(self) -> None:
        with self._lock:
            if self._deaf_since is None and self._ready.is_set():
                self._deaf_since = time.time()

    def deaf_spans(self) -> list[Span]:
        with self._lock:
            open_span = [Span(self._deaf_since, None, "the ledger is not connected")] if self._deaf_since else []
            return [*self._deaf, *open_span]

    def listening_after(self, since: float) -> bool:
        """Connected now, and, if the connection was lost after ``since``, consuming again since."""
        with self._lock:
            if self._deaf_since is not None:
                return False
            return self.listening_since >= since or not any(span.start >= since for span in self._deaf)

    def wait_listening_since(self, since: float, timeout: float = 30.0) -> None:
        """Wait until the witness listens on a connection that outlived ``since`` or was made after it (a broker
        restart: from the moment it went down). The witness retries every few tenths of a second, so it may be
        back before the broker's start call returns (AMQP answers before the management API): that counts."""
        try:
            eventually(
                lambda: self.listening_after(since), timeout=timeout,
                what="the ledger to listen to Celery events again",
            )  # fmt: skip
        except WaitTimeout as timeout_error:
            raise WaitTimeout(f"{timeout_error}; the witness's last error: {self._error!r}") from None

    def _run(self) -> None:
        # kombu's consume loop recovers from the errors it lists as connection errors; a broker that goes
        # away mid-reply can raise others (a CloseOk written to a dead socket). The witness must outlive
        # them all: start the loop again until it is asked to stop.
        receiver = self._receiver
        while receiver is not None and not receiver.should_stop:
            try:
                # A short drain interval keeps close() quick; no wakeup broadcast is needed since the
                # witness listens before any worker starts.
                receiver.run(safety_interval=0.1, wakeup=False)
            except Exception as exc:
                self._error = exc
                self._on_lost()
                time.sleep(0.1)  # the broker is going or gone: the next connect attempt will say which
            except BaseException as exc:  # interpreter shutdown
                self._error = exc
                return

    def close(self, delete_queue: bool = True) -> None:
        if self._receiver is not None:
            self._receiver.should_stop = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        if delete_queue and self.queue_name and self._connection is not None:
            # Not auto-delete: on a shared (url) vhost it must be removed by hand. A broker that is down
            # by now takes it when it expires.
            try:
                with self._app.connection_for_write() as connection:
                    connection.ensure_connection(max_retries=1, timeout=2)
                    connection.default_channel.queue_delete(self.queue_name)
            except Exception:
                pass
        if self._connection is not None:
            self._connection.release()
        self._receiver = self._thread = self._connection = None
