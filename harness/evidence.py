"""Two witnesses, one history per task: Celery's events and the programs' journals, merged.

Each step of a task (received, started, succeeded...) may be seen by the events witness
(``harness.events``, through the broker), by the journal (``harness.journal``, a file per process), or
by both. Steps of the same type on the same worker are paired in time order when the two witnesses'
clocks agree within ``MATCH_WINDOW_S`` (same machine, so they do; a buffered event keeps the time it was
made, not the time it was flushed): a pair is one step seen twice, anything left unpaired is a step only
one witness saw. A run recorded by any witness happened, so the merged history holds the union.

An end of a run (succeeded, failed) can be written far apart by the two: the journal writes it in the
pool process as the task ends, while Celery's event is made by the worker's main process when it reads
the result, which it does only once it is connected again if the broker was away meanwhile. Such ends
are still one step when no start of that worker lies between them: two runs' ends always have one.

``both_blind`` intersects the spans each witness could not see; the verdict flags the tasks whose life
overlaps what remains (``unverified``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from harness.journal import Entry
from harness.verdict import JOURNAL, Span, TaskEvent, TaskHistory

MATCH_WINDOW_S = 1.0
# Steps only the journal writes: shown in histories, ignored by the fates.
JOURNAL_ONLY = ("task-published", "task-postrun")
# Ends of a run whose event the worker's main process may make long after the journal wrote them.
LATE_ENDS = ("task-succeeded", "task-failed")


def from_journal(entry: Entry) -> TaskEvent:
    return TaskEvent(
        entry.type, entry.uuid or "", entry.hostname or entry.program, entry.t, entry.t, entry.fields,
        frozenset({JOURNAL}),
    )  # fmt: skip


def _key(event: TaskEvent) -> tuple[str, str]:
    # A task is sent by a producer whose event hostname the journal cannot know (Celery makes one up
    # per process): sends are paired by type alone.
    return event.type, "*" if event.type == "task-sent" else event.hostname


def _pair(seen: list[TaskEvent], written: list[TaskEvent]) -> list[TaskEvent]:
    """One step per pair within the window (earliest first), plus every step left unpaired."""
    merged: list[TaskEvent] = []
    left = sorted(written, key=lambda e: e.timestamp)
    for event in sorted(seen, key=lambda e: e.timestamp):
        match = next((w for w in left if abs(w.timestamp - event.timestamp) <= MATCH_WINDOW_S), None)
        if match is None:
            merged.append(event)
            continue
        left.remove(match)
        merged.append(_both(event, match))
    return merged + left


def _both(event: TaskEvent, match: TaskEvent) -> TaskEvent:
    fields = {**match.fields, **event.fields}  # the event's own fields (exception, traceback) win
    if event.timestamp - match.timestamp > MATCH_WINDOW_S:  # an end whose event was made late (see above)
        fields["reported_late_s"] = round(event.timestamp - match.timestamp, 3)
    # The step happened when the first witness wrote it down (an event is stamped after the signal).
    return TaskEvent(
        event.type, event.task_id, event.hostname, min(event.timestamp, match.timestamp), event.received_at,
        fields, event.witnesses | match.witnesses,
    )  # fmt: skip


def _pair_late_ends(steps: list[TaskEvent]) -> list[TaskEvent]:
    """Pair an end seen by one witness only with the other's end of the same type on the same worker
    when no start of that worker lies between them (the same run, its event made late)."""
    merged = list(steps)
    for step in sorted(steps, key=lambda e: e.timestamp):
        if step not in merged or step.type not in LATE_ENDS or step.witnesses != {JOURNAL}:
            continue
        for other in sorted(merged, key=lambda e: e.timestamp):
            if other.type != step.type or other.hostname != step.hostname or JOURNAL in other.witnesses:
                continue
            low, high = sorted((step.timestamp, other.timestamp))
            starts = [s for s in merged if s.type == "task-started" and s.hostname == step.hostname]
            if not any(low < s.timestamp < high for s in starts):
                merged.remove(step)
                merged.remove(other)
                merged.append(_both(other, step))
                break
    return merged


def merge_history(task_id: str, events: Iterable[TaskEvent], journal: Iterable[TaskEvent]) -> TaskHistory:
    groups: dict[tuple[str, str], tuple[list[TaskEvent], list[TaskEvent]]] = defaultdict(lambda: ([], []))
    for event in events:
        groups[_key(event)][0].append(event)
    for step in journal:
        groups[_key(step)][1].append(step)
    steps = _pair_late_ends([step for seen, written in groups.values() for step in _pair(seen, written)])
    return TaskHistory(task_id, sorted(steps, key=lambda e: e.timestamp))


def merge(events: dict[str, TaskHistory], entries: Iterable[Entry]) -> dict[str, TaskHistory]:
    """Every task's history from both witnesses."""
    written: dict[str, list[TaskEvent]] = defaultdict(list)
    for entry in entries:
        if entry.uuid and entry.type.startswith("task-"):
            written[entry.uuid].append(from_journal(entry))
    ids = [*events, *(i for i in written if i not in events)]
    return {
        task_id: merge_history(task_id, events[task_id].events if task_id in events else [], written.get(task_id, []))
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
