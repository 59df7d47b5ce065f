"""ScenarioVhost against the session's real broker: depth, peeking, isolation, clean-up."""

import uuid

import pytest
from kombu import Connection, Exchange, Queue

from harness.brokers.rabbitmq.vhost import ScenarioVhost, SharedVhostTurn
from harness.errors import HarnessError


def publish(amqp_url: str, queue: str, count: int) -> list[str]:
    """Publish ``count`` Celery-shaped messages (task id in the ``id`` header) to a durable queue."""
    ids = [str(uuid.uuid4()) for _ in range(count)]
    with Connection(amqp_url) as connection:
        producer = connection.Producer()
        target = Queue(queue, Exchange(queue), routing_key=queue, durable=True)
        for task_id in ids:
            producer.publish(
                {"n": 1}, exchange=target.exchange, routing_key=queue, declare=[target], headers={"id": task_id}
            )
    return ids


def test_ready_depth_is_exact_and_peeking_leaves_messages_in_place(vhost):
    ids = publish(vhost.amqp_url, "hello_queue", 3)

    depth = vhost.depth("hello_queue")
    assert (depth.ready, depth.consumers, depth.exists) == (3, 0, True)
    assert vhost.peek_task_ids("hello_queue") == ids
    assert vhost.ready("hello_queue") == 3, "peeking must return the messages to the queue"


def test_a_queue_the_app_declares_but_nobody_made_yet_has_depth_zero(vhost):
    depth = vhost.depth("celery")  # the demo's default queue: declared by its config, used by no one
    assert (depth.ready, depth.exists) == (0, False)
    assert vhost.ready("celery") == 0  # and the channel still works after the failed declare


def test_a_queue_that_neither_exists_nor_is_declared_by_the_app_is_a_clear_error(vhost):
    typo = f"hello_queeu{uuid.uuid4().hex[:4]}"  # unique: on a shared (url) vhost anyone may have made one
    with pytest.raises(HarnessError, match=f"names queue '{typo}', which the app does not declare"):
        vhost.depth(typo)
    assert vhost.ready("hello_queue") == 0  # the channel still works


def test_a_raw_message_to_a_queue_that_does_not_exist_is_an_error_not_a_silent_drop(vhost):
    missing = f"not_declared_{uuid.uuid4().hex[:6]}"
    with pytest.raises(HarnessError, match=f"published to queue '{missing}' .* returned unroutable"):
        vhost.publish_raw(missing, b"{}", "application/json", {"id": "x"})
    with Connection(vhost.amqp_url) as connection:
        Queue("hello_queue", durable=True)(connection.default_channel).declare()
    vhost.publish_raw("hello_queue", b"{}", "application/json", {"id": "y"})
    assert vhost.peek_task_ids("hello_queue") == ["y"]


def test_each_scenario_has_its_own_vhost_and_it_is_deleted_after(broker, vhost):
    if broker.management is None:
        pytest.skip("this broker has no management API: scenarios share the URL's vhost")
    publish(vhost.amqp_url, "hello_queue", 2)
    other = ScenarioVhost.open(broker, "other", ("hello_queue",))
    try:
        assert other.name != vhost.name
        assert other.ready("hello_queue") == 0, "a fresh vhost must not see another scenario's messages"
    finally:
        other.close()
    assert other.name not in broker.management.vhosts()


def test_shared_vhost_is_purged_when_opened(broker, vhost):
    if broker.management is not None:
        pytest.skip("with a management API each scenario has a fresh vhost; nothing is shared to purge")
    vhost.close()  # this scenario's turn on the shared vhost given back
    publish(vhost.amqp_url, "hello_queue", 2)  # left behind by someone between two scenarios
    again = ScenarioVhost.open(broker, "again", ("hello_queue",))
    try:
        assert again.ready("hello_queue") == 0
    finally:
        again.close()


def test_scenarios_on_a_shared_vhost_take_turns_across_connections(broker):
    """Two turns on one vhost: the second waits for the first, and says why when it gives up."""
    url = broker.endpoint.amqp_url(broker.endpoint.vhost)
    queue = f"harness.turn.test-{uuid.uuid4().hex[:8]}"  # not the real turn: another run may hold that
    first = SharedVhostTurn(url, "shared")
    first.QUEUE = queue
    second = SharedVhostTurn(url, "shared")
    second.QUEUE = queue
    first.take(timeout=5)
    try:
        with pytest.raises(HarnessError, match="turn on vhost 'shared', which another harness run"):
            second.take(timeout=0.6)
    finally:
        first.give_back()
    second.take(timeout=5)  # the broker dropped the first turn's queue with its connection
    second.give_back()


def test_unacked_within_reuses_a_recent_management_reading_and_reads_again_after(vhost, monkeypatch):
    """The sampler's reading: a consumed queue's unacknowledged count from the management API at most every
    ``unacked_within`` seconds; plain ``depth()`` (what scenarios assert on) reads it every time."""
    if vhost._management is None:
        pytest.skip("unacknowledged counts need the management API")
    publish(vhost.amqp_url, "hello_queue", 1)
    calls = []
    real = vhost._management.queue_stats
    monkeypatch.setattr(vhost._management, "queue_stats", lambda *args: calls.append(args) or real(*args))
    with Connection(vhost.amqp_url) as connection:
        connection.channel().basic_consume("hello_queue", callback=lambda message: None)  # a consumer, no ack
        for _ in range(3):
            vhost.depth("hello_queue", unacked_within=60)
        assert len(calls) == 1, "two of three readings reused the first"
        vhost.depth("hello_queue")
        assert len(calls) == 2, "a plain reading asks the management API"
