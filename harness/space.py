"""A scenario's own space on the broker, whatever the broker family: what the stack, the ledger, the sampler and
the verdict ask of it.

RabbitMQ's space is a virtual host (``harness.brokers.rabbitmq.vhost``), Redis's a database
(``harness.brokers.redis.space``). Each family implements the reading and writing (``queue_names``, ``depth``,
``peek_task_ids``, ``publish_raw``, ``purge``, ``close``, ``url_via``); the waits a scenario uses are written once,
here, on top of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from harness.errors import HarnessError
from harness.waiting import eventually, never

# Queues of the harness and of Celery's own machinery, not the app's: never read for tasks.
INTERNAL_PREFIXES = ("harness.ledger.", "harness.turn.", "celeryev.", "amq.")
INTERNAL_SUFFIXES = (".pidbox",)


def is_internal(queue: str) -> bool:
    return queue.startswith(INTERNAL_PREFIXES) or queue.endswith(INTERNAL_SUFFIXES)


@dataclass(frozen=True)
class Depth:
    """Messages in a queue. ``unacked`` is None where the broker cannot tell (RabbitMQ without its management
    API); ``consumers`` is None where it cannot count them (Redis: a worker pops, it does not subscribe)."""

    ready: int
    unacked: int | None
    consumers: int | None
    exists: bool = True

    @property
    def total(self) -> int:
        """Ready and unacknowledged messages together (unacknowledged counted 0 where unknown)."""
        return self.ready + (self.unacked or 0)


class ScenarioSpace:
    """What every family's space offers. Attributes: ``broker`` (the provider), ``name`` (the vhost, or
    ``db 7``), ``url`` (a broker URL to the space, with credentials), ``isolated`` (True: the space is the
    scenario's alone; False: a server the harness does not own lends its own, taken in turns and purged)."""

    broker: object
    name: str
    url: str
    isolated: bool
    _queues: tuple[str, ...] | Callable[[], tuple[str, ...]]
    # Whether ``depth`` can count a queue's consumers (RabbitMQ can; a Redis list has none to count).
    counts_consumers = True

    @property
    def transport(self) -> str:
        """The broker family of the space: ``rabbitmq`` or ``redis``."""
        return self.broker.transport  # type: ignore[attr-defined]

    @property
    def amqp_url(self) -> str:
        """The space's broker URL (the name predates Redis: ``url`` says the same on every family)."""
        return self.url

    @property
    def queues(self) -> tuple[str, ...]:
        """The queues the app declares (``task_default_queue``, ``task_queues``, ``task_routes``...), as a tuple."""
        if callable(self._queues):
            self._queues = tuple(self._queues())
        return self._queues

    def require_queue(self, queue: str) -> str:
        """``queue``, if the app declares it (or it exists); else one sentence naming the app's queues."""
        if queue in self.queues or (self.isolated and queue in self.queue_names()):
            return queue
        raise HarnessError(
            f"the scenario names queue {queue!r}, which the app does not declare; its queues: "
            f"{', '.join(self.queues) or 'none found'} (task_default_queue, task_queues, task_routes)"
        )

    # -- implemented by each family --------------------------------------------------------------
    def queue_names(self) -> list[str]:
        raise NotImplementedError

    def depth(self, queue: str, unacked_within: float = 0.0) -> Depth:
        raise NotImplementedError

    def peek_task_ids(self, queue: str, limit: int = 10_000) -> list[str]:
        raise NotImplementedError

    def url_via(self, host: str, port: int) -> str:
        """The space's URL through another address (a program's fault proxy)."""
        raise NotImplementedError

    # -- the waits, on top of them ----------------------------------------------------------------
    def ready(self, queue: str) -> int:
        """How many messages are ready in ``queue`` now."""
        return self.depth(queue).ready

    def wait_for_ready(self, queue: str, count: int, timeout: float) -> None:
        """Wait until exactly ``count`` messages are ready in ``queue``; returns None."""
        self.require_queue(queue)
        eventually(
            lambda: self.ready(queue), until=lambda n: n == count, timeout=timeout,
            what=f"{count} ready messages in {queue}", progress=lambda n: f"{n} ready",
        )  # fmt: skip

    def wait_for_empty(self, queue: str, timeout: float) -> Depth:
        """Wait until ``queue`` holds nothing: no ready message, none unacknowledged (where that is known);
        returns the ``Depth`` that showed it."""
        self.require_queue(queue)
        return eventually(
            lambda: self.depth(queue), until=lambda d: d.ready == 0 and not d.unacked, timeout=timeout,
            what=f"{queue} to hold no ready and no unacknowledged message",
        )  # fmt: skip

    def wait_for_consumers(self, queue: str, count: int, timeout: float = 10) -> None:
        """Wait until ``queue`` has exactly ``count`` consumers; returns None (RabbitMQ only: a Redis queue has no
        consumers to count)."""
        self.require_queue(queue)
        if not self.counts_consumers:
            raise HarnessError(
                f"{self.transport} cannot count a queue's consumers; wait for the worker instead "
                "(stack.wait_ready, ledger.worker_consuming_since)"
            )
        eventually(
            lambda: self.depth(queue).consumers, until=lambda n: n == count, timeout=timeout,
            what=f"{count} consumers on {queue}",
        )  # fmt: skip

    def assert_ready_holds(self, queue: str, count: int, for_: float, why: str) -> int:
        """Watch ``queue`` for ``for_`` seconds: its ready count must stay ``count`` (else it raises, saying
        ``why`` it should have); returns how many times it was read."""
        self.require_queue(queue)
        return never(
            lambda: self.ready(queue), until=lambda n: n != count, for_=for_,
            what=f"{queue} left {count} ready messages although {why}",
        )  # fmt: skip
