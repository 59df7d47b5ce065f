"""harness.brokers.redis.space on a real private redis-server: a database per scenario, the queues read from
kombu's keys (ready lists, the unacked hash), and the turns scenarios take on a server the harness does not own."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from harness.brokers.redis.base import parse_redis_url
from harness.brokers.redis.local import LocalRedis
from harness.brokers.redis.space import RedisSpace, RedisTurn, lists_of, task_id_of
from harness.brokers.redis.url import UrlRedis
from harness.errors import HarnessError


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedis]:
    broker = LocalRedis(work_root=str(tmp_path_factory.mktemp("redis")))
    broker.start()
    try:
        yield broker
    finally:
        broker.close()


def message(task_id: str, queue: str = "hello_queue") -> str:
    """A task message as kombu's Redis transport keeps it (protocol 2: the id in the headers)."""
    return json.dumps({
        "body": "", "content-type": "application/json", "headers": {"id": task_id, "task": "say_hello"},
        "properties": {"delivery_info": {"exchange": "", "routing_key": queue}, "delivery_tag": task_id},
    })  # fmt: skip


def test_each_scenario_gets_a_database_of_its_own_emptied_when_it_closes(server: LocalRedis) -> None:
    first, second = RedisSpace.open(server, "a", ("hello_queue",)), RedisSpace.open(server, "b", ("hello_queue",))
    assert first.db != second.db and first.isolated
    first.client.lpush("hello_queue", message("t1"))
    assert second.ready("hello_queue") == 0
    first.close()
    second.close()
    with server.client(first.db) as client:
        assert client.dbsize() == 0


def test_depth_reads_the_lists_and_the_unacked_hash_and_cannot_count_consumers(server: LocalRedis) -> None:
    space = RedisSpace.open(server, "depth", ("hello_queue",))
    try:
        space.client.sadd("_kombu.binding.hello_queue", "hello_queue\x06\x16\x06\x16hello_queue")
        space.client.lpush("hello_queue", message("ready-1"), message("ready-2"))
        space.client.lpush(lists_of("hello_queue")[1], message("ready-priority"))
        space.client.hset("unacked", "tag-1", json.dumps([json.loads(message("held-1")), "hello_queue", "hello_queue"]))
        depth = space.depth("hello_queue")
        assert (depth.ready, depth.unacked, depth.consumers) == (3, 1, None)
        assert space.queue_names() == ["hello_queue"]
        assert space.held() == {"held-1": "hello_queue"}
        assert space.peek_task_ids("hello_queue") == ["ready-1", "ready-2", "ready-priority"]
        assert space.ready("hello_queue") == 3, "peeking leaves the messages in place"
        with pytest.raises(HarnessError, match="cannot count a queue's consumers"):
            space.wait_for_consumers("hello_queue", 1)
    finally:
        space.close()


def test_a_raw_message_is_published_as_kombu_would_keep_it(server: LocalRedis) -> None:
    space = RedisSpace.open(server, "raw", ("hello_queue",))
    try:
        space.publish_raw("hello_queue", b'{"not": "a task"}', "application/json", headers={"id": "raw-1"})
        assert space.peek_task_ids("hello_queue") == ["raw-1"]
        with pytest.raises(HarnessError, match="does not declare"):
            space.publish_raw("elsewhere", b"", "application/json")
    finally:
        space.close()


def test_protocol_one_keeps_the_id_in_the_body() -> None:
    body = json.dumps({"id": "p1", "task": "say_hello"})
    assert task_id_of({"body": body, "properties": {}}) == "p1"


def test_scenarios_on_a_shared_database_take_turns_and_a_dead_holders_turn_is_taken_over(server: LocalRedis) -> None:
    shared = UrlRedis(server.endpoint.url(9))

    def connection() -> redis.Redis:
        pool = shared.endpoint.client(9).connection_pool
        return redis.Redis(connection_pool=pool, single_connection_client=True)

    holder = RedisTurn(connection(), "db 9").take(timeout=1)
    waiting = RedisTurn(connection(), "db 9")
    with pytest.raises(HarnessError, match="this scenario's turn on db 9"):
        waiting.take(timeout=0.5)
    holder._client.connection_pool.disconnect()  # the holder's run dies: its connection goes, and its claim
    waiting.take(timeout=5)
    waiting.give_back()


def test_a_shared_database_is_purged_and_left_without_the_runs_keys(server: LocalRedis) -> None:
    shared = UrlRedis(server.endpoint.url(10))
    shared.start()
    space = RedisSpace.open(shared, "shared", ("hello_queue",))
    assert not space.isolated and space.db == 10
    space.client.lpush("hello_queue", message("t1"))
    space.client.sadd("_kombu.binding.celeryev", "x")
    space.client.set("someone-elses-key", "1")
    space.close()
    with server.client(10) as client:
        assert sorted(client.keys()) == [b"someone-elses-key"], "only the run's keys went"


@pytest.mark.parametrize(
    "url",
    ["amqp://guest@host/", "redis://host:port/0", "redis://host:6379/zero", "redis:///0"],
)
def test_a_bad_redis_url_is_refused_in_one_sentence(url: str) -> None:
    with pytest.raises(HarnessError, match="redis://"):
        parse_redis_url(url)


def test_a_url_server_that_does_not_answer_says_so(tmp_path: Path) -> None:
    from harness.ports import free_ports

    with pytest.raises(HarnessError, match="no Redis answers at"):
        UrlRedis(f"redis://127.0.0.1:{free_ports(1)[0]}/0", connect_timeout=0.5).start()
