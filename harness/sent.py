"""What one send produced (``Sent``), and what a stack holds as its producer (``Sender``).

Apart from ``harness.producers`` because the stack holds a sender while producers bind to a stack.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


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
        return self.ok


class Sender(Protocol):
    def send(self, n: int = 0) -> Sent: ...

    def send_many(self, count: int) -> list[Sent]: ...

    def close(self) -> None: ...
