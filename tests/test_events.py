"""The events witness across a broker restart: why Celery's own receiver loses events, and why the
harness's does not.

The race (seen in CI): a worker reconnects to a restarted broker before the observer has declared its
event queue again, and at once flushes the events it buffered while the broker was away. Celery's
``EventReceiver`` consumes from an auto-delete, non-durable queue that died with the broker, so those
events are routed nowhere. These tests force exactly that order: the observer's reconnect is held (a
gate in ``on_connection_revived``, after the connection is back and before the queue is declared)
while a "worker" (Celery's own ``EventDispatcher``) publishes; then the observer is let go.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from celery import Celery
from celery.events.receiver import EventReceiver

from harness.events import EventWitness
from harness.waiting import WaitTimeout, eventually, never

EVENTS = 5
WATCH_S = 2.0  # a consumer in place receives a published event within milliseconds


class Gate:
    """Holds the observer in its reconnect, once the broker has been restarted."""

    def __init__(self) -> None:
        self.armed = False
        self.held = threading.Event()
        self.release = threading.Event()

    def __call__(self) -> None:
        if self.armed:
            self.held.set()
            self.release.wait(30)


def flush_as_a_reconnecting_worker(amqp_url: str) -> list[str]:
    """What a worker does on reconnect: publish the task events it buffered while the broker was down."""
    app = Celery("worker", broker=amqp_url, set_as_current=False)
    ids = [str(uuid.uuid4()) for _ in range(EVENTS)]
    with app.connection_for_write() as connection:
        dispatcher = app.events.Dispatcher(connection, hostname="worker@restart")
        for task_id in ids:
            dispatcher.send("task-succeeded", uuid=task_id)
        dispatcher.close()
    return ids


class CeleryReceiver(EventReceiver):
    """Celery's own receiver (auto-delete queue), with the same gate."""

    def __init__(self, *args, gate: Gate, ready: threading.Event, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._gate, self._ready = gate, ready

    def on_connection_revived(self) -> None:
        self._gate()

    def on_consume_ready(self, connection, channel, consumers, **kwargs) -> None:
        super().on_consume_ready(connection, channel, consumers, **kwargs)
        self._ready.set()


def restart_with_the_observer_held(owned_broker, gate: Gate) -> None:
    gate.armed = True
    owned_broker.restart_broker()
    assert gate.held.wait(30), "the observer never came back to reconnect"


def test_celerys_receiver_loses_the_events_a_worker_flushes_before_it_reconnects(owned_broker, vhost):
    """The cause, reproduced: nothing arrives, although the observer is connected and listening after."""
    seen: list[dict] = []
    gate, ready = Gate(), threading.Event()
    app = Celery("observer", broker=vhost.amqp_url, set_as_current=False)
    connection = app.connection_for_read()
    receiver = CeleryReceiver(connection, handlers={"*": seen.append}, app=app, gate=gate, ready=ready)
    thread = threading.Thread(target=receiver.run, kwargs={"wakeup": False}, daemon=True)
    thread.start()
    try:
        assert ready.wait(10)
        restart_with_the_observer_held(owned_broker, gate)
        ids = flush_as_a_reconnecting_worker(vhost.amqp_url)
        ready.clear()
        gate.release.set()
        assert ready.wait(10), "the receiver did not consume again after the restart"
        never(
            lambda: {e.get("uuid") for e in seen} & set(ids), for_=WATCH_S,
            what="an event flushed before Celery's receiver re-declared its queue arrived",
        )  # fmt: skip
    finally:
        receiver.should_stop = True
        gate.release.set()
        thread.join(5)
        connection.release()


def test_the_harness_witness_keeps_the_events_a_worker_flushes_before_it_reconnects(owned_broker, vhost):
    """The fix: the witness's queue is durable and outlives the restart, so the flushed events wait for it."""
    seen: list[dict] = []
    gate = Gate()
    witness = EventWitness(vhost.amqp_url, seen.append, reconnect_gate=gate).start()
    try:
        restart_with_the_observer_held(owned_broker, gate)
        ids = flush_as_a_reconnecting_worker(vhost.amqp_url)
        gate.release.set()
        eventually(
            lambda: {e.get("uuid") for e in seen} >= set(ids), timeout=10,
            what="every event flushed during the observer's reconnect",
        )  # fmt: skip
        assert witness.deaf_spans() and witness.deaf_spans()[-1].end is not None, "the deaf span is on record"
    finally:
        gate.release.set()
        witness.close()


@pytest.mark.usefixtures("vhost")
def test_the_witness_removes_its_queue_when_it_closes(vhost):
    witness = EventWitness(vhost.amqp_url, lambda event: None).start()
    queue = witness.queue_name
    assert vhost.depth(queue).exists
    witness.close()
    assert not vhost.depth(queue).exists, "a durable queue must not outlive its ledger"


def test_a_witness_back_before_the_brokers_start_call_returned_counts_as_listening_again() -> None:
    """The race behind a 30 s wait: the witness retries every few tenths of a second, so it consumes again as
    soon as the restarted node's AMQP port answers, before the start call returns (it also waits for the
    management API). Listening again means: reconnected after the broker went down, whenever that was."""
    witness = EventWitness("amqp://guest:guest@127.0.0.1:1//", lambda event: None)
    witness._on_listening()  # consuming, as after start()
    went_down = time.time()
    witness._on_lost()  # the node stopped: the consume loop failed
    assert not witness.listening_after(went_down)
    witness._on_listening()  # reconnected to the restarted node ...
    assert witness.listening_after(went_down)  # ... which counts, though the "broker back" mark comes later
    with pytest.raises(WaitTimeout):  # and a witness that has not reconnected is not taken for listening
        witness._on_lost()
        witness.wait_listening_since(went_down, timeout=0.3)


def test_a_witness_that_never_lost_its_connection_is_listening() -> None:
    # A frozen broker keeps its connections: the witness never reconnects, and needs not.
    witness = EventWitness("amqp://guest:guest@127.0.0.1:1//", lambda event: None)
    witness._on_listening()
    assert witness.listening_after(time.time() + 1)
