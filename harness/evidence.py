"""Two witnesses, one history per task: Celery's events and the programs' journals, merged.

Each step of a task (received, started, succeeded...) may be seen by the events witness
(``harness.events``, through the broker), by the journal (``harness.journal``, a file per process), or
by both. Steps of the same type on the same worker are paired in time order when the two witnesses'
clocks agree within ``MATCH_WINDOW_S`` (same machine, so they do; a buffered event keeps the time it was
made, not the time it was flushed): a pair is one step seen twice, anything left unpaired is a step only
one witness saw. A run recorded by any witness happened, so the merged history holds the union.

One step is seen twice at different times: a run's end while its worker is cut off from the broker. The
pool process writes it to the journal when the task returns, but the worker's main process, busy
reconnecting, reads the pool's result only once the broker is back, and only then makes the Celery event
(measured with ``task_acks_late`` and a broker restart: the event came 17.5 s after the journal's line,
just after the redelivered message was received again). So an end step that only the events witness saw
is paired with an earlier one that only the journal saw, on the same worker, when the events witness was
blind at the journal's time (``late_after``: the broker was down); the step keeps the journal's time and
says how late the event was (``reported_late_s``).

``both_blind`` intersects the spans each witness could not see; the verdict flags the tasks whose life
overlaps what remains (``unverified``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from harness.journal import Entry
from harness.verdict import JOURNAL, Span, TaskEvent, TaskHistory

MATCH_WINDOW_S = 1.0
# Steps the worker's main process reports from the pool's result, which it may read late.
LATE_REPORTED = ("task-succeeded", "task-failed", "task-retried")
# Steps only the journal writes: shown in histories, ignored by the fates.
JOURNAL_ONLY = ("task-published", "task-postrun")


def from_journal(entry: Entry) -> TaskEvent:
    return TaskEvent(
        entry.type, entry.uuid or "", entry.hostname or entry.program, entry.t, entry.t, entry.fields,
        frozenset({JOURNAL}),
    )  # fmt: skip


def _key(event: TaskEvent) -> tuple[str, str]:
    # A task is sent by a producer whose event hostname the journal cannot know (Celery makes one up
    # per process): sends are paired by type alone.
    return event.type, "*" if event.type == "task-sent" else event.hostname


def _pair(seen: list[TaskEvent], written: list[TaskEvent], late_after: list[Span] = ()) -> list[TaskEvent]:
    """One step per pair within the window (earliest first), then late reports paired with the journal's
    record (see the module's docstring), plus every step left unpaired."""
    merged: list[TaskEvent] = []
    left = sorted(written, key=lambda e: e.timestamp)
    unpaired: list[TaskEvent] = []
    for event in sorted(seen, key=lambda e: e.timestamp):
        match = next((w for w in left if abs(w.timestamp - event.timestamp) <= MATCH_WINDOW_S), None)
        if match is None:
            unpaired.append(event)
            continue
        left.remove(match)
        fields = {**match.fields, **event.fields}  # the event's own fields (exception, traceback) win
        # The step happened when the first witness wrote it down (an event is stamped after the signal).
        merged.append(
            TaskEvent(
                event.type, event.task_id, event.hostname, min(event.timestamp, match.timestamp),
                event.received_at, fields, event.witnesses | match.witnesses,
            )
        )  # fmt: skip
    for event in unpaired:
        match = next((w for w in left if event.type in LATE_REPORTED and _reported_late(w, event, late_after)), None)
        if match is None:
            merged.append(event)
            continue
        left.remove(match)
        fields = {**match.fields, **event.fields, "reported_late_s": round(event.timestamp - match.timestamp, 3)}
        merged.append(
            TaskEvent(
                event.type, event.task_id, event.hostname, match.timestamp, event.received_at, fields,
                event.witnesses | match.witnesses,
            )
        )  # fmt: skip
    return merged + left


def _reported_late(written: TaskEvent, event: TaskEvent, late_after: list[Span]) -> bool:
    """The journal wrote the step while the events witness was blind, and the event came after it."""
    return written.timestamp < event.timestamp and any(
        span.start <= written.timestamp and (span.end is None or written.timestamp <= span.end) for span in late_after
    )


def merge_history(
    task_id: str, events: Iterable[TaskEvent], journal: Iterable[TaskEvent], late_after: Iterable[Span] = ()
) -> TaskHistory:
    groups: dict[tuple[str, str], tuple[list[TaskEvent], list[TaskEvent]]] = defaultdict(lambda: ([], []))
    for event in events:
        groups[_key(event)][0].append(event)
    for step in journal:
        groups[_key(step)][1].append(step)
    blind = list(late_after)
    steps = [step for seen, written in groups.values() for step in _pair(seen, written, blind)]
    return TaskHistory(task_id, sorted(steps, key=lambda e: e.timestamp))


def merge(
    events: dict[str, TaskHistory], entries: Iterable[Entry], late_after: Iterable[Span] = ()
) -> dict[str, TaskHistory]:
    """Every task's history from both witnesses; ``late_after``: the spans the events witness was blind."""
    written: dict[str, list[TaskEvent]] = defaultdict(list)
    for entry in entries:
        if entry.uuid and entry.type.startswith("task-"):
            written[entry.uuid].append(from_journal(entry))
    ids = [*events, *(i for i in written if i not in events)]
    blind = list(late_after)
    return {
        task_id: merge_history(
            task_id, events[task_id].events if task_id in events else [], written.get(task_id, []), blind
        )
        for task_id in ids
    }


def intersect(first: Iterable[Span], second: Iterable[Span]) -> list[Span]:
    """The spans where both lists are blind at once."""
    both = []
    inf = float("inf")
    for a in first:
        for b in second:
            start = max(a.start, b.start)
            end = min(inf if a.end is None else a.end, inf if b.end is None else b.end)
            if start <= end:
                both.append(Span(start, None if end == inf else end, f"{a.why}; and {b.why}"))
    return sorted(both, key=lambda s: s.start)


def both_blind(events_blind: Iterable[Span], journal_blind: Iterable[Span]) -> list[Span]:
    return intersect(list(events_blind), list(journal_blind))
