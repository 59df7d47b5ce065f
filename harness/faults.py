"""Faults and operator actions as typed events, and the bus that tells a scenario's observers about them.

A broker fault call (``restart_broker``, ``stopped()``...) and an operator action on the stack (stop,
kill, signal...) each publish one of these on a ``FaultBus``. The scenario's timeline marks them for
the report; the ledger uses the broker's to know when its events witness was blind and to wait until
it listens again. Observers subscribe for the length of a scenario (``with bus.subscribed(observer):``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Fault:
    at: float = field(default_factory=time.time, kw_only=True)

    @property
    def label(self) -> str:
        raise NotImplementedError


# -- the broker ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BrokerFault(Fault):
    """Something that cuts every program off the broker (or gives it back)."""

    how: str = ""  # "node restart", "app restart", "container stop"...


@dataclass(frozen=True)
class BrokerStopped(BrokerFault):
    @property
    def label(self) -> str:
        return f"broker stopped ({self.how})" if self.how else "broker stopped"


@dataclass(frozen=True)
class BrokerStarted(BrokerFault):
    @property
    def label(self) -> str:
        return "broker back"


@dataclass(frozen=True)
class BrokerFrozen(BrokerFault):
    @property
    def label(self) -> str:
        return "broker frozen"


@dataclass(frozen=True)
class BrokerResumed(BrokerFault):
    @property
    def label(self) -> str:
        return "broker resumed"


@dataclass(frozen=True)
class BrokerReconfigured(Fault):
    settings: str = ""

    @property
    def label(self) -> str:
        return f"broker settings: {self.settings}"


@dataclass(frozen=True)
class BrokerAlarm(Fault):
    """A resource alarm raised on the broker (``memory`` or ``disk``): every publishing connection is blocked."""

    resource: str = ""

    @property
    def label(self) -> str:
        return f"broker {self.resource} alarm"


@dataclass(frozen=True)
class BrokerAlarmCleared(Fault):
    resource: str = ""

    @property
    def label(self) -> str:
        return f"broker {self.resource} alarm cleared"


@dataclass(frozen=True)
class ConnectionsKilled(Fault):
    """The broker cut its clients' connections (Redis ``CLIENT KILL``): each program must reconnect."""

    count: int = 0

    @property
    def label(self) -> str:
        return f"broker killed {self.count} connections"


BROKER_DOWN = (BrokerStopped, BrokerFrozen)
BROKER_UP = (BrokerStarted, BrokerResumed)


# -- the programs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProgramFault(Fault):
    program: str = ""


@dataclass(frozen=True)
class ProgramStopped(ProgramFault):
    @property
    def label(self) -> str:
        return f"{self.program} stopped"


@dataclass(frozen=True)
class ProgramStarted(ProgramFault):
    @property
    def label(self) -> str:
        return f"{self.program} started"


@dataclass(frozen=True)
class ProgramKilled(ProgramFault):
    @property
    def label(self) -> str:
        return f"{self.program} killed"


@dataclass(frozen=True)
class ProgramDeployed(ProgramFault):
    change: str = ""  # "HELLO_PRODUCER=v2 (was v1)"

    @property
    def label(self) -> str:
        return f"{self.program} deployed: {self.change}"


@dataclass(frozen=True)
class PoolProcessKilled(ProgramFault):
    pid: int = 0

    @property
    def label(self) -> str:
        return f"{self.program} pool process killed"


@dataclass(frozen=True)
class ScheduleForgotten(ProgramFault):
    """A stopped beat's schedule file deleted (a container restarted without its volume)."""

    files: int = 0

    @property
    def label(self) -> str:
        return f"{self.program} schedule file lost"


@dataclass(frozen=True)
class ProgramSignalled(ProgramFault):
    signal: str = ""

    @property
    def label(self) -> str:
        return f"SIG{self.signal} to {self.program}"


@dataclass(frozen=True)
class ContainerStopped(ProgramFault):
    """A container's stop: SIGTERM to the main process, SIGKILL to what is left after ``grace`` seconds."""

    grace: float = 0.0

    @property
    def label(self) -> str:
        return f"{self.program} container stop (TERM, KILL after {self.grace:g}s)"


# -- the network (between a program and the broker) ---------------------------------------------


@dataclass(frozen=True)
class NetworkFault(Fault):
    program: str = ""
    kind: str = ""  # "blackhole", "reset", "latency", "partition"
    detail: str = ""

    @property
    def label(self) -> str:
        extra = f" {self.detail}" if self.detail else ""
        return f"network {self.kind}{extra}: {self.program}"


@dataclass(frozen=True)
class NetworkHealed(Fault):
    program: str = ""
    kind: str = ""

    @property
    def label(self) -> str:
        return f"network healed ({self.kind}): {self.program}"


# -- other services the app depends on (a result backend...) -----------------------------------


@dataclass(frozen=True)
class ServiceFault(Fault):
    service: str = ""  # "result backend (redis)"
    what: str = ""  # "killed", "back (empty)"

    @property
    def label(self) -> str:
        return f"{self.service} {self.what}"


Observer = Callable[[Fault], None]


class FaultBus:
    """Delivers each fault to the observers subscribed at the time, in the thread that caused it."""

    def __init__(self) -> None:
        self._observers: list[Observer] = []
        self._lock = threading.Lock()

    def publish(self, fault: Fault) -> None:
        with self._lock:
            observers = list(self._observers)
        for observer in observers:
            observer(fault)

    @contextmanager
    def subscribed(self, observer: Observer) -> Iterator[None]:
        with self._lock:
            self._observers.append(observer)
        try:
            yield
        finally:
            with self._lock:
                self._observers.remove(observer)
