"""What every Redis provider offers the harness: where to connect, the server's version, and its faults.

A scenario gets a database of its own on the server (``harness.brokers.redis.space``); the faults here act on
the whole server, as a Redis restart, freeze or memory limit would in production.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar
from urllib.parse import quote, unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from harness.brokers.base import Broker, BrokerNotOwned
from harness.brokers.redis.settings import EVICTION_POLICIES, PERSISTENCE, visibility  # noqa: F401 (re-exported)
from harness.errors import HarnessError
from harness.faults import BrokerReconfigured, ConnectionsKilled
from harness.waiting import eventually

# Redis's persistence settings as the harness names them (``persistence(...)``): CONFIG SET values.


@dataclass(frozen=True)
class RedisEndpoint:
    """Where a running Redis answers. ``db`` is the URL's own database (the one a ``url`` server lends)."""

    host: str
    port: int
    password: str | None = None
    db: int = 0
    user: str = ""
    management_url: None = None  # Redis has no management API; the field is here for code that asks

    def url(self, db: int | None = None, host: str | None = None, port: int | None = None) -> str:
        """A ``redis://`` URL to database ``db`` (default: the endpoint's), optionally through another
        host and port (a program's fault proxy)."""
        credentials = ""
        if self.password is not None:
            credentials = f"{quote(self.user, safe='')}:{quote(self.password, safe='')}@"
        where = f"{host or self.host}:{port or self.port}"
        return f"redis://{credentials}{where}/{self.db if db is None else db}"

    def redacted(self, db: int | None = None) -> str:
        if self.password is None:
            return self.url(db)
        return self.url(db).replace(f":{quote(self.password, safe='')}@", ":***@")

    def client(self, db: int | None = None, timeout: float = 3.0, name: str = "harness") -> redis.Redis:
        """A redis-py client on database ``db``, named so that the harness's connections can be told from the
        app's (``CLIENT LIST``)."""
        # One attempt per command: redis-py 8 retries ten times with backoff (about 5 s against a stopped server),
        # and whoever reads through this client (a wait, the sampler) retries by itself, faster.
        return redis.Redis(
            host=self.host, port=self.port, db=self.db if db is None else db, password=self.password,
            username=self.user or None, socket_timeout=timeout, socket_connect_timeout=timeout, client_name=name,
            retry=Retry(NoBackoff(), 0),
        )  # fmt: skip


def parse_redis_url(url: str, option: str = "--harness-broker-url") -> RedisEndpoint:
    """``redis://[user:password@]host[:port][/db]`` as an endpoint, or one sentence saying how to write it."""
    parts = urlsplit(url)
    example = "redis://[:password@]host:6379/0"
    if parts.scheme not in ("redis",) or not parts.hostname:
        raise HarnessError(f"{option} {url!r} is not a Redis URL; write it as {example}")
    try:
        port = parts.port or 6379
    except ValueError:
        raise HarnessError(f"{option} {url!r} has an invalid port; write it as {example}") from None
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise HarnessError(f"{option} {url!r} names database {path!r}, which is not a number; write it as {example}")
    password = unquote(parts.password) if parts.password is not None else None
    return RedisEndpoint(parts.hostname, port, password, int(path or 0), unquote(parts.username or ""))


class RedisBroker(Broker):
    """A Redis server used as Celery's broker for one test session.

    A scenario's space is a database of its own (``open_space``). The server-wide faults (``stop_broker``,
    ``pause_broker``, ``kill_connections``, ``persistence``, ``maxmemory``) need a server the harness owns
    (``local``, ``docker``); a ``url`` server refuses them, so a scenario skips.
    """

    transport = "redis"
    product = "Redis"

    @property
    def endpoint(self) -> RedisEndpoint:  # type: ignore[override]
        raise NotImplementedError

    def client(self, db: int = 0) -> redis.Redis:
        """A redis-py client on database ``db`` of the server (the harness's own, named ``harness``)."""
        return self.endpoint.client(db)

    def describe(self) -> str:
        return f"{self.kind} Redis at {self.endpoint.host}:{self.endpoint.port}"

    def server_version(self) -> str:
        """The version the server says it runs (``INFO server``), read once."""
        known = self.__dict__.get("_server_version")
        if known is None:
            with self.client() as client:
                known = str(client.info("server").get("redis_version", "unknown"))
            self.__dict__["_server_version"] = known
        return known

    def attach_space(self, name: str, queues: tuple[str, ...]):
        """A handle on database ``name`` (``db 7``; else the endpoint's own), to read it."""
        from harness.brokers.redis.space import RedisSpace

        db = int(name.removeprefix("db ")) if name.startswith("db ") else self.endpoint.db
        return RedisSpace(self, db, queues, isolated=True)

    def open_space(self, label: str, queues):
        from harness.brokers.redis.space import RedisSpace

        return RedisSpace.open(self, label, queues)

    # -- faults ------------------------------------------------------------------------------------
    # crash: SIGKILL, nothing written beyond what the persistence setting already wrote (a machine or an OOM
    # kill); shutdown: Redis's own SHUTDOWN, which saves an RDB snapshot when snapshots are on.
    STOP_KINDS = ("crash", "shutdown")
    STOP_ALIASES: ClassVar[dict[str, str]] = {
        "node": "crash",
        "app": "crash",
    }  # RabbitMQ's words, in a scenario written for both

    def stop_words(self, how: str) -> str:
        return f"redis {how} (persistence {self.persistence_mode})"

    def _halt(self, how: str) -> None:
        self._stop_server(graceful=how == "shutdown")

    def _revive(self, how: str) -> None:
        self._start_again()

    def _stop_server(self, graceful: bool) -> None:
        raise BrokerNotOwned(f"the {self.kind} Redis is not the harness's to stop")

    def _wait_answering(self, timeout: float = 30.0) -> None:
        def answers() -> bool:
            with self.client() as client:
                return bool(client.ping())

        eventually(answers, timeout=timeout, what=f"Redis at port {self.endpoint.port} to answer", interval=0.02)

    persistence_mode = "off"

    def config_set(self, **settings: str) -> dict[str, str]:
        """``CONFIG SET`` each setting (underscores for dashes); returns what they were."""
        self._require_owned("reconfigure")
        with self.client() as client:
            names = [name.replace("_", "-") for name in settings]
            before = {name: client.config_get(name).get(name, "") for name in names}
            for name, value in zip(names, settings.values(), strict=True):
                client.config_set(name, value)
            self._keep_config(client)  # a restart inside the block keeps them
        return before

    def persistence(self, mode: str) -> None:
        """Set how the server keeps its data across a crash: ``off``, ``rdb`` (a snapshot every second with a
        change), ``aof-everysec`` or ``aof-always`` (an append-only file synced each second, or at each write);
        kept for the rest of the session's use of this server and across its restarts. Returns None once the
        setting holds (turning AOF on writes the file first)."""
        if mode not in PERSISTENCE:
            raise HarnessError(f"Redis persistence {mode!r} is not one of {', '.join(PERSISTENCE)}")
        self._require_owned("reconfigure")
        settings = PERSISTENCE[mode]
        with self.client() as client:
            for name, value in settings.items():
                client.config_set(name, value)
            if settings["appendonly"] == "yes":
                # CONFIG SET appendonly yes starts a rewrite; the file is live only once it ends.
                eventually(
                    lambda: client.info("persistence"),
                    until=lambda info: info.get("aof_enabled") == 1 and not info.get("aof_rewrite_in_progress")
                    and not info.get("aof_rewrite_scheduled"),
                    timeout=30, what="Redis to finish writing its append-only file", interval=0.05,
                )  # fmt: skip
            self._keep_config(client)
        self.persistence_mode = mode
        self.faults.publish(BrokerReconfigured(settings=f"persistence {mode}"))

    def after_scenario(self) -> None:
        """Give the next scenario the server as the session started it: persistence off, and no snapshot or
        append-only file on disk that a later restart would load (Redis loads a ``dump.rdb`` it finds, whatever
        its ``save`` setting)."""
        if self.persistence_mode != "off":
            self.persistence("off")
            self._forget_saved_data()
        if self._cache_filled:
            with self.client(0) as client:
                client.flushdb()
            self._cache_filled = False

    _cache_filled = False

    def _forget_saved_data(self) -> None:
        """Remove the server's snapshot and append-only files (a provider that can reach its folder)."""

    def _keep_config(self, client: redis.Redis) -> None:
        """Make runtime settings survive a restart (a provider with a config file rewrites it)."""

    def snapshot(self) -> None:
        """Take an RDB snapshot now (``BGSAVE``) and return None once it is on disk: what a snapshot schedule does
        at its next point."""
        self._require_owned("snapshot")
        with self.client() as client:
            before = int(client.info("persistence")["rdb_last_save_time"])
            client.bgsave()
            eventually(
                lambda: client.info("persistence"),
                until=lambda info: not info["rdb_bgsave_in_progress"] and int(info["rdb_last_save_time"]) >= before
                and info["rdb_last_bgsave_status"] == "ok" and int(info["rdb_changes_since_last_save"]) == 0,
                timeout=30, what="Redis's snapshot to be written", interval=0.05,
            )  # fmt: skip
        self.faults.publish(BrokerReconfigured(settings="snapshot written"))

    @contextmanager
    def maxmemory(self, limit: str, policy: str = "noeviction") -> Iterator[None]:
        """The server's memory is capped at ``limit`` (``"2mb"``) inside the block, with ``policy`` (``noeviction``:
        writes over the cap are refused; ``allkeys-lru``: keys are evicted, queues included); restored after."""
        if policy not in EVICTION_POLICIES:
            raise HarnessError(f"maxmemory policy {policy!r} is not one of {', '.join(EVICTION_POLICIES)}")
        before = self.config_set(maxmemory=limit, maxmemory_policy=policy)
        self.faults.publish(BrokerReconfigured(settings=f"maxmemory {limit} {policy}"))
        try:
            yield
        finally:
            with self.client() as client:
                for name, value in before.items():
                    client.config_set(name, value)
                self._keep_config(client)
            self.faults.publish(BrokerReconfigured(settings="maxmemory restored"))

    def fill_cache(self, bytes_: int, db: int = 0, value_size: int = 16 * 1024) -> int:
        """Write ``bytes_`` of cache entries (``harness.cache.N`` keys in database ``db``, away from any scenario's):
        what an app that also caches in this Redis does. Writes that the memory policy refuses end it. Returns how
        many keys were written."""
        self._require_owned("fill")
        self._cache_filled = True
        value = b"x" * value_size
        written = 0
        with self.client(db) as client:
            try:
                for n in range(max(1, bytes_ // value_size)):
                    client.set(f"harness.cache.{n}", value)
                    written += 1
            except redis.ResponseError:  # OOM under noeviction: the cache is as full as it gets
                pass
        return written

    def used_memory(self) -> int:
        """How many bytes the server uses now (``INFO memory``'s ``used_memory``)."""
        with self.client() as client:
            return int(client.info("memory")["used_memory"])

    def kill_connections(self, db: int | None = None) -> int:
        """``CLIENT KILL`` every connection of the app's programs (those in database ``db``, else all but the
        harness's own): what a Redis failover, a proxy or an operator's ``CLIENT KILL`` does to clients. Returns
        how many were killed."""
        self._require_owned("cut the connections of")
        with self.client() as client:
            victims = [
                c for c in client.client_list()
                if not str(c.get("name", "")).startswith("harness") and (db is None or int(c.get("db", -1)) == db)
                and c.get("id") != str(client.client_id())
            ]  # fmt: skip
            killed = sum(int(bool(client.client_kill_filter(_id=c["id"]))) for c in victims)
        self.faults.publish(ConnectionsKilled(count=killed))
        return killed
