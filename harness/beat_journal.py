"""The journal of a ``celery beat``: which entry each periodic task was sent for, and for which due time.

A periodic task's message does not say which schedule entry sent it, nor when it was due (Celery 5.5+ marks it
``celery_beat_task``, no more). The launcher runs beat with a subclass of the app's own scheduler (Celery's
``PersistentScheduler``, django-celery-beat's ``DatabaseScheduler``...) that writes, besides the journal's
``task-sent`` steps:

- ``beat-ready`` once the schedule is loaded: every entry, its task, its period (``every``: seconds, for an
  interval schedule; None for crontab or solar) and when it is next due;
- ``beat-sent`` for each send: the entry, the task id, when it was due (``due``), when beat decided to send it
  (``at``), its ``expires`` option, and when it is due next (``next``).

This module is imported by the launcher inside the user's program: it depends on the standard library and
Celery only.
"""

from __future__ import annotations

import time
from typing import Any


def every_of(entry: Any) -> float | None:
    """The entry's period in seconds, for an interval schedule (``schedule(run_every=...)``, a number, a
    timedelta); None for crontab, solar or a custom schedule, whose due times are not evenly spaced."""
    from celery.schedules import schedule

    sched = entry.schedule
    if type(sched) is schedule:  # crontab and solar are no subclass of it; a custom subclass may space differently
        return sched.run_every.total_seconds()
    return None


def due_of(entry: Any) -> float | None:
    """When the entry is (or was) due, as a Unix time: its last run plus what its schedule says remains."""
    try:
        remaining = entry.schedule.remaining_estimate(entry.last_run_at).total_seconds()
    except Exception:  # a custom schedule without an estimate: the send time stands for it
        return None
    return time.time() + remaining


def expires_of(entry: Any) -> float | None:
    expires = (entry.options or {}).get("expires")
    if isinstance(expires, int | float):
        return float(expires)
    return None


def describe(entry: Any) -> dict[str, Any]:
    return {"task": entry.task, "every": every_of(entry), "due": due_of(entry), "expires": expires_of(entry),
            "schedule": repr(entry.schedule)[:200]}  # fmt: skip


def journaled(scheduler_cls: type, writer: Any) -> type:
    """A subclass of ``scheduler_cls`` that writes ``beat-ready`` and ``beat-sent`` steps with ``writer``."""

    class Journaled(scheduler_cls):  # type: ignore[misc,valid-type]
        def setup_schedule(self) -> None:
            super().setup_schedule()
            entries = {name: describe(entry) for name, entry in self.schedule.items() if not name.startswith("celery.")}
            scheduler = f"{scheduler_cls.__module__}.{scheduler_cls.__name__}"
            writer.write("beat-ready", None, entries=entries, scheduler=scheduler)

        def apply_async(self, entry: Any, producer: Any = None, advance: bool = True, **kwargs: Any) -> Any:
            due, at = due_of(entry) if advance else None, time.time()
            result = super().apply_async(entry, producer=producer, advance=advance, **kwargs)
            following = self.schedule.get(entry.name)  # the entry as reserved: when it is due next
            writer.write("beat-sent", getattr(result, "id", None), entry=entry.name, task=entry.task, due=due, at=at,
                         every=every_of(entry), expires=expires_of(entry),
                         next=due_of(following) if following is not None else None)  # fmt: skip
            return result

    Journaled.__name__ = Journaled.__qualname__ = scheduler_cls.__name__
    Journaled.__module__ = scheduler_cls.__module__
    return Journaled
