"""A scenario's own space on Redis: a database of its own, and the queue facts read from it.

Why a database and not a key prefix (kombu's ``global_keyprefix``): a database isolates everything kombu and
Celery write without changing the app's settings (a prefix must be forced into ``broker_transport_options``,
over the app's own prefix if it has one, and Celery's Redis result backend ignores it); it isolates Celery's
events too, since kombu prefixes its pub/sub channels with the database's number (``fanout_prefix``); and it
is removed whole with one ``FLUSHDB``. On a server the harness starts, each scenario takes the next database
(the server is started with thousands). A server the harness does not own (``url``) lends the database its
URL names: scenarios share it in turns (``RedisTurn``) and the app's queues are purged before and after.

How kombu keeps a queue on Redis (``kombu.transport.redis``): a list per queue (and per priority step,
``queue\\x06\\x16{3,6,9}``), LPUSHed by producers and BRPOPped by workers; a message a worker took but has not
acknowledged sits in the ``unacked`` hash (delivery tag -> [message, exchange, routing key]) until it is
acknowledged, or put back: at once by a worker that shuts down warm, else by any consumer once it has been
there longer than ``visibility_timeout``. Ready counts (LLEN) and unacknowledged ones (the hash) are exact at
the moment of the call; Redis has no consumers to count (a worker pops, it does not subscribe).
"""

from __future__ import annotations

import base64
import itertools
import json
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

import redis

from harness.errors import HarnessError
from harness.space import Depth, ScenarioSpace, is_internal
from harness.waiting import WaitTimeout, eventually

if TYPE_CHECKING:  # the server opens its spaces: a type here, not an import
    from harness.brokers.redis.base import RedisBroker

PRIORITY_SEP = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)  # kombu's default priority_steps; step 0 is the plain list
BINDINGS = "_kombu.binding."
UNACKED, UNACKED_INDEX, UNACKED_MUTEX = "unacked", "unacked_index", "unacked_mutex"
TURN_WAIT_S = 600
_databases = itertools.count(1)  # this process's next database on a server it owns (0 stays free)


def lists_of(queue: str) -> list[str]:
    """The Redis lists that hold ``queue``'s messages: the queue's own, and one per priority step above 0."""
    return [queue, *(f"{queue}{PRIORITY_SEP}{step}" for step in PRIORITY_STEPS[1:])]


def task_id_of(payload: dict) -> str | None:
    """The task id of a kombu message as kept in Redis (protocol 2: a header; protocol 1: in the body)."""
    task_id = (payload.get("headers") or {}).get("id")
    if task_id is None:
        try:
            body = payload.get("body", "")
            if (payload.get("properties") or {}).get("body_encoding") == "base64":
                body = base64.b64decode(body)
            decoded = json.loads(body)
            task_id = decoded.get("id") if isinstance(decoded, dict) else None
        except (ValueError, TypeError):
            return None
    return str(task_id) if task_id is not None else None


class RedisTurn:
    """This scenario's turn on a database other runs share: a key holding the ``CLIENT ID`` of one open
    connection. A holder whose connection is gone (a killed run) has no client of that id any more, so the next
    one takes the turn over; runs on different machines take turns too."""

    KEY = "harness.turn.shared-db"
    _TAKE = """
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] or holder == ARGV[2] then redis.call('SET', KEYS[1], ARGV[1]) return 1 end
return holder"""
    _GIVE_BACK = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"

    def __init__(self, client: redis.Redis, where: str) -> None:
        self._client = client  # a single-connection client: its CLIENT ID is this turn's
        self.where = where
        self._id = str(client.client_id())

    def _try(self) -> bool:
        holder = self._client.eval(self._TAKE, 1, self.KEY, self._id, "")
        if holder == 1:
            return True
        alive = any(str(c.get("id")) == holder.decode() for c in self._client.client_list())
        return not alive and self._client.eval(self._TAKE, 1, self.KEY, self._id, holder) == 1

    def take(self, timeout: float = TURN_WAIT_S) -> RedisTurn:
        try:
            eventually(
                self._try, timeout=timeout, interval=0.2,
                what=f"this scenario's turn on {self.where}, which another harness run or xdist worker is using "
                "(scenarios on a shared database take turns; give each run a database of its own in "
                "--harness-broker-url, or let the harness start Redis: --harness-broker local)",
            )  # fmt: skip
        except WaitTimeout as exc:
            raise HarnessError(str(exc).splitlines()[0]) from None
        return self

    def give_back(self) -> None:
        try:
            self._client.eval(self._GIVE_BACK, 1, self.KEY, self._id)
        except redis.RedisError:  # the server is gone: the key's holder is gone with our connection
            pass
        self._client.close()
        self._client.connection_pool.disconnect()  # close() only hands the connection back to the pool


class RedisSpace(ScenarioSpace):
    """The ``vhost`` fixture on Redis: the scenario's own database, its queues' counts, and messages put in or
    peeked. ``db`` is the database's number; ``name`` says it (``db 7``)."""

    counts_consumers = False

    def __init__(
        self, broker: RedisBroker, db: int, queues: tuple[str, ...] | Callable[[], tuple[str, ...]], isolated: bool
    ) -> None:
        self.broker = broker
        self.db = db
        self.name = f"db {db}"
        self._queues = queues
        self.isolated = isolated
        self.url = broker.endpoint.url(db)
        self._client: redis.Redis | None = None
        self._bindings_read: tuple[float, list[tuple[str, str, str]]] | None = None  # (monotonic time, bindings)
        self.turn: RedisTurn | None = None

    @classmethod
    def open(
        cls, broker: RedisBroker, label: str, queues: tuple[str, ...] | Callable[[], tuple[str, ...]]
    ) -> RedisSpace:
        """The next database of a server the harness owns (emptied first: a database a killed run left), else
        the URL's own, taken in turns and purged."""
        if broker.owned:
            space = cls(broker, next(_databases), queues, isolated=True)
            space.client.flushdb()
            return space
        space = cls(broker, broker.endpoint.db, queues, isolated=False)
        turn_client = broker.endpoint.client(space.db, name="harness-turn")
        turn_client = redis.Redis(connection_pool=turn_client.connection_pool, single_connection_client=True)
        space.turn = RedisTurn(turn_client, f"Redis {broker.endpoint.redacted()}").take()
        try:
            space.purge()
        except BaseException:
            space.turn.give_back()
            raise
        return space

    @property
    def client(self) -> redis.Redis:
        """A redis-py client on the scenario's database (for a reading the space does not offer)."""
        if self._client is None:
            self._client = self.broker.endpoint.client(self.db, name="harness-space")
        return self._client

    def url_via(self, host: str, port: int) -> str:
        return self.broker.endpoint.url(self.db, host=host, port=port)

    def reader(self) -> RedisSpace:
        """Another handle on the same database, with its own connection (for a thread of its own)."""
        return RedisSpace(self.broker, self.db, self._queues, self.isolated)

    def disconnect(self) -> None:
        """Close this handle's connection; the database stays. Returns None."""
        client, self._client = self._client, None
        if client is not None:
            client.close()

    # -- reading ------------------------------------------------------------------------------------
    def _bindings(self, max_age: float = 0.0) -> list[tuple[str, str, str]]:
        """Every binding kombu recorded: (exchange, routing key, queue); a reading ``max_age`` seconds old or newer
        may be reused (they change only when a program declares a queue)."""
        if self._bindings_read is not None and time.monotonic() - self._bindings_read[0] < max_age:
            return self._bindings_read[1]
        found = []
        for key in self.client.scan_iter(match=f"{BINDINGS}*", count=1000):
            exchange = key.decode()[len(BINDINGS) :]
            for member in self.client.smembers(key):
                routing_key, _, queue = member.decode().split(PRIORITY_SEP, 2)
                found.append((exchange, routing_key, queue))
        self._bindings_read = (time.monotonic(), found)
        return found

    def queue_names(self) -> list[str]:
        """Every app queue of the database: those bound (declared by a worker or a producer) and every list that
        holds messages."""
        names = {queue for _, _, queue in self._bindings()}
        for key in self.client.scan_iter(count=1000, _type="list"):
            names.add(key.decode().split(PRIORITY_SEP, 1)[0])
        return sorted(n for n in names if not is_internal(n) and not n.startswith(BINDINGS))

    def bindings(self, queue: str) -> set[tuple[str, str]]:
        """``queue``'s bindings, (exchange, routing key) pairs, as kombu recorded them."""
        return {(exchange, key) for exchange, key, bound in self._bindings() if bound == queue}

    def held(self, max_age: float = 0.0) -> dict[str, str]:
        """The messages workers hold unacknowledged (the ``unacked`` hash): task id -> its queue (the routes read
        ``max_age`` seconds ago or later)."""
        routes = {(exchange, key): queue for exchange, key, queue in self._bindings(max_age)}
        held = {}
        for raw in self.client.hvals(UNACKED):
            try:
                payload, exchange, routing_key = json.loads(raw)
            except (ValueError, TypeError):
                continue
            task_id = task_id_of(payload)
            if task_id is not None:
                held[task_id] = routes.get((exchange, routing_key), routing_key)
        return held

    def depth(self, queue: str, unacked_within: float = 0.0) -> Depth:
        """``queue``'s counts now: ready (its lists' lengths) and unacknowledged (its messages in the ``unacked``
        hash), both exact; no consumer count (``consumers`` None). ``unacked_within``: kombu's routing tables read
        that recently may be reused (the sampler reads every 100 ms; the tables change only when a queue is
        declared). A queue exists if it holds a message or is bound (an empty Redis list is no key)."""
        pipe = self.client.pipeline(transaction=False)
        for name in lists_of(queue):
            pipe.llen(name)
        ready = sum(pipe.execute())
        unacked = sum(1 for q in self.held(unacked_within).values() if q == queue) if self.client.hlen(UNACKED) else 0
        bound = any(bound == queue for _, _, bound in self._bindings(unacked_within))
        return Depth(ready, unacked, None, exists=bool(ready or unacked) or bound)

    def peek_task_ids(self, queue: str, limit: int = 10_000) -> list[str]:
        """Task ids of the ready messages in ``queue``, oldest first, left in place (a read: nothing moves)."""
        ids: list[str] = []
        for name in lists_of(queue):
            for raw in reversed(self.client.lrange(name, -limit, -1)):  # BRPOP takes from the right: oldest last
                try:
                    task_id = task_id_of(json.loads(raw))
                except ValueError:
                    task_id = None
                ids.append(str(task_id))
        return ids

    # -- writing ------------------------------------------------------------------------------------
    def publish_raw(
        self, queue: str, body: bytes, content_type: str, headers: dict | None = None, persistent: bool = True
    ) -> None:
        """Put a message on ``queue`` exactly as given (a hand-made or malformed task message), as kombu's Redis
        transport would: a JSON envelope LPUSHed on the queue's list; returns None once Redis has it."""
        self.require_queue(queue)
        envelope = {
            "body": base64.b64encode(body).decode(), "content-encoding": "utf-8", "content-type": content_type,
            "headers": headers or {},
            "properties": {
                "delivery_mode": 2 if persistent else 1, "priority": 0, "body_encoding": "base64",
                "delivery_info": {"exchange": "", "routing_key": queue}, "delivery_tag": str(uuid.uuid4()),
            },
        }  # fmt: skip
        self.client.lpush(queue, json.dumps(envelope))

    def dead_letter(self, queue: str) -> str:
        """Not on Redis: one sentence saying so (a RabbitMQ policy keeps rejected messages; Redis drops them)."""
        raise HarnessError("dead-lettering is RabbitMQ's (a policy); Redis drops a rejected message")

    def purge(self) -> None:
        """Empty the app's declared queues and what workers held unacknowledged (on a shared database, before and
        after each scenario); returns None."""
        keys = [name for queue in self.queues for name in lists_of(queue)] + [UNACKED, UNACKED_INDEX, UNACKED_MUTEX]
        self.client.delete(*keys)

    def close(self) -> None:
        """Empty the scenario's database (or, on a shared one, purge the app's queues and remove kombu's routing
        tables, then give back the turn); returns None."""
        try:
            if self.isolated:
                self.client.flushdb()
            else:
                self.purge()
                # kombu's routing tables (the app's queues, the event receivers', the workers' pidboxes): declared
                # again by whoever runs next, and left behind they grow with every run's receivers.
                bindings = list(self.client.scan_iter(match=f"{BINDINGS[:-1]}*", count=1000))
                if bindings:
                    self.client.delete(*bindings)
        except redis.RedisError:  # the server is down (a scenario that ended with it stopped): its data goes with it
            pass
        finally:
            self.disconnect()
            if self.turn is not None:
                self.turn.give_back()
