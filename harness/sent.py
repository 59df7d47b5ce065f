"""What one send produced (``Sent``), what a stack holds as its producer (``Sender``), and the task ids a wait
or a check is given (``ids_of``).

Apart from ``harness.producers`` because the stack holds a sender while producers bind to a stack.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from harness.errors import HarnessError


@dataclass(frozen=True)
class Sent:
    """One send: the task id(s) it produced and whether the app (or broker) accepted it."""

    task_id: str | None
    ok: bool
    seconds: float
    status: int | None = None  # the HTTP status, for a web producer
    error: str | None = None
    task_ids: tuple[str, ...] = ()

    @property
    def queued(self) -> bool:
        """Whether the send was accepted (the same as ``ok``)."""
        return self.ok

    @property
    def ids(self) -> tuple[str, ...]:
        """Every task id this send produced (a request may publish several; none if it failed before one
        was known)."""
        return self.task_ids or ((self.task_id,) if self.task_id else ())


class Sender(Protocol):
    def send(self, n: int = 0) -> Sent: ...

    def send_many(self, count: int) -> list[Sent]: ...

    def close(self) -> None: ...


# What a wait or a check takes as task ids: ids, what ``send()`` / ``send_many()`` returned, or a mix.
TaskIds = str | Sent | Iterable[str | Sent]


def ids_of(given: TaskIds, what: str) -> list[str]:
    """The task ids ``given`` names, in order: a task id, a ``Sent`` (every id it produced), or an iterable of
    either (``send_many``'s list). Anything else is refused at once, in one sentence naming ``what`` (the
    call that was given it): a wait given the wrong thing would otherwise wait out its timeout for nothing."""
    if isinstance(given, str | Sent):
        given = [given]
    elif not isinstance(given, Iterable) or isinstance(given, bytes | dict):
        raise HarnessError(f"{what} takes task ids or what send()/send_many() return, not {_shown(given)}")
    ids: list[str] = []
    for item in given:
        if isinstance(item, Sent):
            if not item.ids:
                raise HarnessError(f"{what} was given a send that produced no task id ({item.error or 'no id'})")
            ids.extend(item.ids)
        elif isinstance(item, str) and item:
            ids.append(item)
        else:
            raise HarnessError(
                f"{what} takes task ids or what send()/send_many() return, but one of those given is {_shown(item)}"
            )
    return ids


def id_of(given: str | Sent, what: str) -> str:
    """The one task id ``given`` names (a task id, or a ``Sent`` of exactly one task), else one sentence."""
    ids = ids_of(given, what)
    if len(ids) != 1:
        raise HarnessError(f"{what} takes one task id, but was given {len(ids)}: {', '.join(ids[:3])}")
    return ids[0]


def _shown(value: object) -> str:
    text = repr(value)
    return f"{text[:60]}{'...' if len(text) > 60 else ''} ({type(value).__name__})"
