"""What every broker provider offers the harness, whatever its family: who owns the broker, a scenario's own space
on it, its version, and the fault calls (stop, start, freeze) with the bus that tells the scenario's observers.

Each family subclasses ``Broker`` in its folder (``harness.brokers.rabbitmq.base``, ``harness.brokers.redis.base``)
and says what a stop is there (``STOP_KINDS``); providers implement the start, the close and the hooks a fault
call runs (``_halt``, ``_revive``, ``_pause``, ``_resume``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

from harness.faults import BrokerFrozen, BrokerResumed, BrokerStarted, BrokerStopped, FaultBus


class BrokerNotOwned(Exception):
    """A fault call (stop, restart) on a broker the harness does not own."""


class Broker(ABC):
    """A broker for one test session. ``start`` and ``close`` bracket the session; ``open_space`` gives each
    scenario a space of its own on it (``harness.space``)."""

    kind: str
    owned: bool = True
    transport = "rabbitmq"  # the broker family (harness.brokers.TRANSPORTS)
    product = "RabbitMQ"
    # The ways this family's broker can be stopped (``stop_broker(how)``), the default first; other names a
    # scenario written for another family may use, and what they mean here.
    STOP_KINDS: tuple[str, ...] = ()
    STOP_ALIASES: ClassVar[dict[str, str]] = {}
    _stopped_how: str | None = None

    @classmethod
    def from_options(cls, options) -> Broker:
        """The provider configured from the run's ``BrokerOptions``."""
        raise NotImplementedError

    @classmethod
    def available(cls, options) -> bool:
        """Whether ``--harness-broker auto`` may pick this provider on this machine (cheap checks only)."""
        return False

    @property
    def faults(self) -> FaultBus:
        """Every fault call is published here (the scenario's timeline and ledger subscribe)."""
        bus = self.__dict__.get("_faults")
        if bus is None:
            bus = self.__dict__["_faults"] = FaultBus()
        return bus

    @abstractmethod
    def start(self) -> None:
        """Start the broker, or connect to it, returning None once it answers. The ``broker`` fixture does this."""

    @abstractmethod
    def close(self) -> None:
        """End the session's use of the broker (stop it, if the harness started it); returns None. Idempotent."""

    @property
    @abstractmethod
    def endpoint(self) -> Any:
        """Where the broker answers (host, port, credentials; each family's endpoint makes its URLs)."""

    @abstractmethod
    def open_space(self, label: str, queues: tuple[str, ...] | Callable[[], tuple[str, ...]]) -> Any:
        """A scenario's own space on this broker (a ``harness.space.ScenarioSpace``); the ``vhost`` fixture opens it."""

    @abstractmethod
    def attach_space(self, name: str, queues: tuple[str, ...]) -> Any:
        """A handle on a space that exists already (``name`` as the space calls itself: a vhost, ``db 7``), to read
        it: ``harness ctl status`` reads the space of a stack that ``harness up`` keeps."""

    @abstractmethod
    def server_version(self) -> str:
        """The version the broker says it runs, read once: reports say which ran."""

    def check_version(self, asked: str | None) -> None:
        """A broker the harness started must run the version asked for, if the family has a version option."""
        return None

    def after_scenario(self) -> None:
        """Undo what a scenario changed on the whole broker (the ``owned_broker`` fixture calls it); returns None."""
        return None

    def describe(self) -> str:
        """The broker in a few words: its kind, its product, where."""
        return f"{self.kind} {self.product} at {self.endpoint.host}:{self.endpoint.port}"

    # -- fault calls -------------------------------------------------------------------------------
    # Providers that own their broker implement the hooks; one the harness does not own (``url``) refuses every
    # call, so a scenario skips instead of touching someone else's broker. Each call is published on ``faults``.
    def _require_owned(self, what: str) -> None:
        if not self.owned:
            raise BrokerNotOwned(f"the {self.kind} broker is not the harness's to {what} (it did not start it)")

    def stop_words(self, how: str) -> str:
        """How the stop is named on the timeline."""
        return f"{self.kind} {how} stop"

    def stop_broker(self, how: str | None = None) -> None:
        """Stop the broker, keeping its data and its port for ``start_broker``; returns None once stopped. ``how``:
        one of the family's ``STOP_KINDS`` (default the first)."""
        how = self.STOP_ALIASES.get(how, how) if how else self.STOP_KINDS[0]
        if how not in self.STOP_KINDS:
            raise ValueError(f"how={how!r} is not one of {self.STOP_KINDS}")
        self._require_owned("stop")
        self.faults.publish(BrokerStopped(how=self.stop_words(how)))
        self._halt(how)
        self._stopped_how = how

    def start_broker(self) -> None:
        """Start the stopped broker again; returns None once it answers (and the scenario's observers listen)."""
        self._require_owned("start")
        self._revive(self._stopped_how or self.STOP_KINDS[0])
        self._stopped_how = None
        self.faults.publish(BrokerStarted())

    def restart_broker(self, how: str | None = None) -> None:
        """Stop the broker and start it again: same data, same port (``how``: see ``stop_broker``); returns None
        once it answers."""
        self.stop_broker(how)
        self.start_broker()

    @contextmanager
    def stopped(self, how: str | None = None) -> Iterator[None]:
        """The broker is down inside the block and up again (same port, same data) after it."""
        self.stop_broker(how)
        try:
            yield
        finally:
            self.start_broker()

    def pause_broker(self) -> None:
        """Freeze the broker: connections stay open but nothing answers (a partition, as clients see it)."""
        self._require_owned("freeze")
        self.faults.publish(BrokerFrozen())
        self._pause()

    def resume_broker(self) -> None:
        """Let a frozen broker (``pause_broker``) answer again; returns None."""
        self._resume()
        self.faults.publish(BrokerResumed())

    @contextmanager
    def unreachable(self) -> Iterator[None]:
        """The broker answers nothing inside the block, and resumes after it."""
        self.pause_broker()
        try:
            yield
        finally:
            self.resume_broker()

    def _halt(self, how: str) -> None:
        raise BrokerNotOwned(f"the {self.kind} broker is not the harness's to stop")

    def _revive(self, how: str) -> None:
        raise BrokerNotOwned(f"the {self.kind} broker is not the harness's to start")

    def _pause(self) -> None:
        raise BrokerNotOwned(f"the {self.kind} broker is not the harness's to freeze")

    def _resume(self) -> None:
        raise BrokerNotOwned(f"the {self.kind} broker is not the harness's to resume")
