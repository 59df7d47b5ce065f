"""The fault calls against the session's real broker (local or docker; skipped on a url broker)."""

from __future__ import annotations

import re
import socket
import time

import amqp
import pytest

from harness.brokers.base import Broker
from harness.faults import BrokerFrozen, BrokerReconfigured, BrokerResumed, Fault


def handshake(broker: Broker, timeout: float) -> None:
    e = broker.endpoint
    connection = amqp.Connection(host=f"{e.host}:{e.port}", userid=e.user, password=e.password, connect_timeout=timeout)
    try:
        connection.connect()
    finally:
        connection.collect()


def test_an_unreachable_broker_accepts_connections_but_answers_nothing_until_resumed(owned_broker: Broker) -> None:
    faults: list[Fault] = []
    with owned_broker.faults.subscribed(faults.append):
        with owned_broker.unreachable():
            started = time.monotonic()
            with pytest.raises((TimeoutError, socket.timeout, OSError)):
                handshake(owned_broker, timeout=1.0)
            assert time.monotonic() - started < 5, "a frozen broker makes clients time out, not fail at once"
        handshake(owned_broker, timeout=5.0)  # and it answers again
    assert [type(f) for f in faults] == [BrokerFrozen, BrokerResumed]


def consumer_timeout(broker: Broker) -> str:
    output = broker.rabbitmqctl("eval", "application:get_env(rabbit, consumer_timeout).")
    return re.sub(r"\s+", "", output)


def test_rabbit_settings_apply_inside_the_block_and_are_restored_after(owned_broker: Broker) -> None:
    before = consumer_timeout(owned_broker)
    faults: list[Fault] = []
    with owned_broker.faults.subscribed(faults.append), owned_broker.rabbit_settings(consumer_timeout=1234):
        assert consumer_timeout(owned_broker) == "{ok,1234}"
    assert consumer_timeout(owned_broker) == before
    assert [f.label for f in faults if isinstance(f, BrokerReconfigured)] == ["broker settings: consumer_timeout=1234"]
