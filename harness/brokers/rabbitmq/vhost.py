"""A scenario's own corner of the broker: a fresh virtual host, and the queue facts read from it.

With a management API each scenario gets a new vhost (created before, deleted after), so no
scenario sees another's messages, and the verdict reads every queue in it (``queue_names``): a task
waiting in a queue no fixture names is still found. Without one (a ``url`` broker that only speaks
AMQP), scenarios share the URL's vhost, the queues are those the app declares (read from its
configuration by ``harness.introspect``), and the harness purges them before and after each scenario;
scenarios on such a shared vhost take turns (``SharedVhostTurn``), whichever run or xdist worker they
come from, since one would purge another's queues and their workers would share node names.

Ready counts come from a passive ``queue.declare`` over AMQP: exact at the moment of the call.
Unacknowledged counts exist only in the management API, which samples them periodically.
"""

from __future__ import annotations

import dataclasses
import re
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

from amqp.exceptions import ChannelError, NotFound, ResourceLocked
from kombu import Connection

from harness.errors import HarnessError
from harness.space import Depth, ScenarioSpace, is_internal
from harness.waiting import WaitTimeout, eventually

if TYPE_CHECKING:  # the broker opens its vhosts: a type here, not an import
    from harness.brokers.rabbitmq.base import RabbitMQBroker as Broker

SHARED_VHOST_WAIT_S = 600  # a turn waits this long for the scenario before it (the longest take ~1 min)


class SharedVhostTurn:
    """This scenario's turn on a vhost that other scenarios (other runs, other xdist workers) share.

    The turn is an exclusive queue held by one connection: the broker refuses it to anyone else
    (RESOURCE_LOCKED) and deletes it when the connection goes, however its owner ends (a killed run
    frees its turn with its socket). Held on the broker itself, so runs on different machines take
    turns too; no file lock or lock service would see them.
    """

    QUEUE = "harness.turn.shared-vhost"

    def __init__(self, amqp_url: str, vhost: str) -> None:
        self.amqp_url = amqp_url
        self.vhost = vhost
        self._connection: Connection | None = None

    def _try(self) -> Connection | None:
        connection = Connection(self.amqp_url, connect_timeout=3, transport_options={"max_retries": 1})
        try:
            connection.default_channel.queue_declare(queue=self.QUEUE, exclusive=True, auto_delete=True)
        except ResourceLocked:
            connection.release()
            return None
        except Exception:
            connection.release()
            raise
        return connection

    def take(self, timeout: float = SHARED_VHOST_WAIT_S) -> SharedVhostTurn:
        try:
            self._connection = self._wait(timeout)
        except WaitTimeout as exc:
            raise HarnessError(str(exc).splitlines()[0]) from None
        return self

    def _wait(self, timeout: float) -> Connection:
        return eventually(
            self._try, until=lambda c: c is not None, timeout=timeout, interval=0.2,
            what=f"this scenario's turn on vhost {self.vhost!r}, which another harness run or xdist worker "
            "is using (scenarios on a shared vhost take turns; give each run a vhost of its own in "
            "--harness-broker-url, or use a broker with the management API)",
            progress=lambda _: f"waiting for vhost {self.vhost!r}, in use by another run",
        )  # fmt: skip

    def give_back(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.release()
            except Exception:  # its socket is already gone, and the broker dropped the queue with it
                pass


class ScenarioVhost(ScenarioSpace):
    """The ``vhost`` fixture: the scenario's own virtual host, its queues' counts, and messages put in or peeked.

    Attributes: ``name`` (the vhost), ``amqp_url`` (a URL to it, with credentials), ``broker`` (the provider),
    ``isolated`` (True: a vhost of its own, made through the management API; False: a ``url`` broker's shared
    vhost, taken in turns).
    """

    def __init__(
        self, broker: Broker, name: str, queues: tuple[str, ...] | Callable[[], tuple[str, ...]], isolated: bool
    ) -> None:
        self.broker = broker
        self.name = name
        # The app's declared queues, or a function that finds them (read in the background: a scenario on a
        # vhost of its own needs them only to check a queue name, so its set-up need not wait for them).
        self._queues = queues
        self.isolated = isolated
        self.url = broker.endpoint.amqp_url(name)
        self._management = broker.management
        self._connection: Connection | None = None
        self._unacked_read: dict[str, tuple[float, int]] = {}  # queue -> (monotonic time, unacked) last read
        self.turn: SharedVhostTurn | None = None

    @classmethod
    def open(cls, broker: Broker, label: str, queues: tuple[str, ...] | Callable[[], tuple[str, ...]]) -> ScenarioVhost:
        """A vhost for a scenario: a fresh one named after ``label`` (management API), else the URL's own, taken
        in turns and purged; returns it. The ``vhost`` fixture does this."""
        management = broker.management
        if management is not None:
            name = f"harness-{label[:40]}-{uuid.uuid4().hex[:6]}"
            management.create_vhost(name)
            return cls(broker, name, queues, isolated=True)
        vhost = cls(broker, broker.endpoint.vhost, queues, isolated=False)
        vhost.turn = SharedVhostTurn(vhost.amqp_url, vhost.name).take()
        try:
            vhost.purge()
        except BaseException:
            vhost.turn.give_back()
            raise
        return vhost

    def queue_names(self) -> list[str]:
        """The app's queues in this vhost: all of them (management API), else those the app declares."""
        if self.isolated and self._management is not None:
            return sorted(q for q in self._management.queues(self.name) if not is_internal(q))
        return list(self.queues)

    def url_via(self, host: str, port: int) -> str:
        """The vhost's AMQP URL through another address (a program's fault proxy)."""
        return dataclasses.replace(self.broker.endpoint, host=host, port=port).amqp_url(self.name)

    def reader(self) -> ScenarioVhost:
        """Another handle on the same vhost, with its own connection (for a thread of its own)."""
        return ScenarioVhost(self.broker, self.name, self._queues, self.isolated)

    def disconnect(self) -> None:
        """Close this handle's connection; the vhost itself stays. Returns None."""
        self._reset_channel()

    def _connect(self) -> Connection:
        # One connection attempt per call: while the broker is down a reading must fail fast (and be
        # retried by whoever waits), not block in kombu's endless reconnect loop.
        return Connection(self.amqp_url, connect_timeout=3, transport_options={"max_retries": 1, "interval_start": 0})

    def _channel(self):
        if self._connection is None:
            self._connection = self._connect()
        return self._connection.default_channel

    def _reset_channel(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.release()
            except Exception:  # releasing a connection whose socket is already dead
                pass

    def depth(self, queue: str, unacked_within: float = 0.0) -> Depth:
        """``queue``'s counts now. ``unacked_within``: a management reading that recent may be reused (the
        API's counters refresh every 0.5 s on the harness's brokers, so reading faster only repeats them)."""
        try:
            _, ready, consumers = self._channel().queue_declare(queue=queue, passive=True)
        except NotFound:
            # A failed passive declare closes the channel; start afresh next time.
            self._reset_channel()
            if self.queues and queue not in self.queues and not is_internal(queue):
                self.require_queue(queue)  # not there, and not one the app declares: a typo, said so
            return Depth(0, 0 if self._management else None, 0, exists=False)
        except Exception:
            # The broker restarted or went away: drop the dead connection; the caller may retry.
            self._reset_channel()
            raise
        # Unacknowledged messages live on consumers' channels: with no consumer (a live AMQP count)
        # there are none, whatever the management API's periodic statistics still say.
        unacked: int | None = 0
        if consumers and self._management is not None:
            read_at, known = self._unacked_read.get(queue, (-1e9, 0))
            if time.monotonic() - read_at >= unacked_within:
                stats = self._management.queue_stats(self.name, queue)
                known = stats.unacked if stats else 0
                self._unacked_read[queue] = (time.monotonic(), known)
            unacked = known
        elif consumers:
            unacked = None
        return Depth(ready, unacked, consumers)

    def bindings(self, queue: str) -> set[tuple[str, str]]:
        """``queue``'s bindings, (exchange, routing key) pairs (empty where no management API can tell)."""
        return self._management.queue_bindings(self.name, queue) if self._management is not None else set()

    def peek_task_ids(self, queue: str, limit: int = 10_000) -> list[str]:
        """Task ids of the ready messages in ``queue``, left in place.

        The messages are fetched unacknowledged on a private channel that is then closed, which
        returns them to the queue (marked redelivered). Meant for the end of a scenario.
        """
        ids: list[str] = []
        with self._connect() as connection:
            channel = connection.channel()
            try:
                for _ in range(limit):
                    message = channel.basic_get(queue=queue, no_ack=False)
                    if message is None:
                        break
                    headers = message.headers or {}
                    task_id = headers.get("id")
                    if task_id is None:  # Celery message protocol 1 keeps the id in the body
                        body = message.decode() if hasattr(message, "decode") else {}
                        task_id = body.get("id") if isinstance(body, dict) else None
                    ids.append(str(task_id))
            except NotFound:
                pass
            finally:
                try:
                    channel.close()
                except Exception:  # an already closed channel has requeued its messages anyway
                    pass
        return ids

    def publish_raw(
        self, queue: str, body: bytes, content_type: str, headers: dict | None = None, persistent: bool = True
    ) -> None:
        """Put a message on ``queue`` exactly as given (a hand-made or malformed task message), confirmed;
        returns None once the broker took it.

        Mandatory: a queue that does not exist (yet) is an error, not a message the broker drops unseen,
        which a verdict would then call lost."""
        with self._connect() as connection:
            channel = connection.channel()
            properties = {"delivery_mode": 2 if persistent else 1}
            message = channel.prepare_message(
                body, content_type=content_type, content_encoding="utf-8", headers=headers or {},
                properties=properties,
            )  # fmt: skip
            try:
                channel.basic_publish_confirm(message, exchange="", routing_key=queue, mandatory=True)
            except ChannelError as error:  # basic.return, raised by py-amqp with no handler
                raise HarnessError(
                    f"a message published to queue {queue!r} of vhost {self.name!r} was returned unroutable "
                    f"({error.reply_text or error}): the queue does not exist yet; publish once the app declared it"
                ) from None
            channel.close()

    def dead_letter(self, queue: str) -> str:
        """Keep what the broker would drop from ``queue``: rejected (not requeued) messages go to a
        dead-letter queue of the harness, whose name is returned; peek it with ``peek_task_ids``.

        It is a broker policy, so the app's own queue declarations stay as they are. Needs the
        management API (policies cannot be set over AMQP).
        """
        if self._management is None:
            raise HarnessError("dead-lettering needs the broker's management API (to set a policy)")
        self.require_queue(queue)
        exchange, dead = f"harness.dead.{queue}", f"harness.dead.{queue}"
        channel = self._channel()
        channel.exchange_declare(exchange=exchange, type="fanout", durable=True, auto_delete=False)
        channel.queue_declare(queue=dead, durable=True, auto_delete=False)
        channel.queue_bind(queue=dead, exchange=exchange, routing_key="")
        policy = f"harness-dead-{queue}"
        self._management.put_policy(self.name, policy, f"^{re.escape(queue)}$", {"dead-letter-exchange": exchange})
        channel.queue_declare(queue=queue, durable=True, auto_delete=False)  # as Celery declares it
        # A queue made after the policy has it from the start; an existing (busy) queue shows it once its
        # statistics are next emitted, which an idle queue may postpone: make the dead-letter queue first.
        eventually(
            lambda: self._management.queue_policy(self.name, queue), until=lambda p: p == policy, timeout=10,
            what=f"the dead-letter policy to apply to {queue} (set it up before the stack starts)",
        )  # fmt: skip
        return dead

    def purge(self) -> None:
        """Empty the app's declared queues (on a shared vhost, before and after each scenario); returns None."""
        for queue in self.queues:
            try:
                self._channel().queue_purge(queue=queue)
            except NotFound:
                self._reset_channel()

    def close(self) -> None:
        """Delete the vhost (or purge a shared one and give back the turn); returns None. The fixture does this."""
        self._reset_channel()
        if self.isolated and self._management is not None:
            self._management.delete_vhost(self.name)
        else:
            try:
                self.purge()
            finally:
                self._reset_channel()
                if self.turn is not None:
                    self.turn.give_back()
