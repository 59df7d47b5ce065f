"""Two witnesses, one history per task: Celery's events and the programs' journals, merged.

Each step of a task (received, started, succeeded...) may be seen by the events witness
(``harness.events``, through the broker), by the journal (``harness.journal``, a file per process), or
by both. Steps of the same type on the same worker are paired when the two witnesses' clocks agree
within ``MATCH_WINDOW_S`` (same machine, so they do; a buffered event keeps the time it was made, not
the time it was flushed): a pair is one step seen twice, anything left unpaired is a step only one
witness saw. A run recorded by any witness happened, so the merged history holds the union. Pairs keep
both witnesses' order and are chosen for the least total distance, not greedily: a start the journal
never wrote (the pool process was terminated between accepting the job, which makes Celery's event, and
its ``task_prerun``) must not take the next run's journal start, 0.16 s later, and leave that run's event
alone (measured in CI: it made one run look like two). Nearness is all there is to pair by: Celery's
events do not name the pool process (their ``pid`` is the main process's).

An end of a run (succeeded, failed) can be written far apart by the two: the journal writes it in the
pool process as the task returns, while Celery's event is made by the worker's main process when it
reads the result, which it does only once it is connected again if the broker was away meanwhile
(measured: 17 s later, after the redelivered message had arrived). So ends are paired by what is
certain, not by nearness: both witnesses record a worker's ends in the order its runs ended, and an
event is never made before the journal's line (``END_SKEW_S`` allows for nothing but the clock's read);
an event pairs with the earliest unpaired journal end not after it with no start of that worker between
them (another run's). If that leaves more ends than the worker had runs (a start can come before the
previous run's late event), the leftovers pair in order too: a run ends once.

``both_blind`` intersects the spans each witness could not see; the verdict flags the tasks whose life
overlaps what remains (``unverified``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from harness.journal import Entry
from harness.verdict import JOURNAL, Span, TaskEvent, TaskHistory

MATCH_WINDOW_S = 1.0
# Steps only the journal writes: shown in histories, ignored by the fates.
JOURNAL_ONLY = ("task-published", "task-postrun")
# Ends of a run whose event the worker's main process may make long after the journal wrote them.
LATE_ENDS = ("task-succeeded", "task-failed")
END_SKEW_S = 0.05


def from_journal(entry: Entry) -> TaskEvent:
    return TaskEvent(
        entry.type, entry.uuid or "", entry.hostname or entry.program, entry.t, entry.t, entry.fields,
        frozenset({JOURNAL}),
    )  # fmt: skip


def _key(event: TaskEvent) -> tuple[str, str]:
    # A task is sent by a producer whose event hostname the journal cannot know (Celery makes one up
    # per process): sends are paired by type alone.
    return event.type, "*" if event.type == "task-sent" else event.hostname


def _may_pair(event: TaskEvent, step: TaskEvent) -> bool:
    return abs(event.timestamp - step.timestamp) <= MATCH_WINDOW_S


def _pair(seen: list[TaskEvent], written: list[TaskEvent]) -> list[TaskEvent]:
    """One step per pair, plus every step left unpaired: an alignment of the two time-ordered lists (pairs
    never cross) of the least cost, where a pair costs its distance and a step left alone half the window
    (so any two steps that may pair are better paired than left alone). Hand-written: the lists hold a
    few steps each, and the textbook dynamic programme is shorter than a dependency."""
    a, b = sorted(seen, key=lambda e: e.timestamp), sorted(written, key=lambda e: e.timestamp)
    alone = MATCH_WINDOW_S / 2
    # cost[i][j]: the least cost of aligning a[i:] with b[j:]
    cost = [[(len(a) - i + len(b) - j) * alone for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(len(a) - 1, -1, -1):
        for j in range(len(b) - 1, -1, -1):
            cost[i][j] = min(cost[i + 1][j] + alone, cost[i][j + 1] + alone)
            if _may_pair(a[i], b[j]):
                cost[i][j] = min(cost[i][j], cost[i + 1][j + 1] + abs(a[i].timestamp - b[j].timestamp))
    merged: list[TaskEvent] = []
    i = j = 0
    while i < len(a) and j < len(b):
        if _may_pair(a[i], b[j]) and cost[i][j] == cost[i + 1][j + 1] + abs(a[i].timestamp - b[j].timestamp):
            merged.append(_both(a[i], b[j]))
            i, j = i + 1, j + 1
        elif cost[i][j] == cost[i + 1][j] + alone:
            merged.append(a[i])
            i += 1
        else:
            merged.append(b[j])
            j += 1
    return merged + a[i:] + b[j:]


def _both(event: TaskEvent, match: TaskEvent) -> TaskEvent:
    fields = {**match.fields, **event.fields}  # the event's own fields (exception, traceback) win
    if event.timestamp - match.timestamp > MATCH_WINDOW_S:  # an end whose event was made late (see above)
        fields["reported_late_s"] = round(event.timestamp - match.timestamp, 3)
    # The step happened when the first witness wrote it down (an event is stamped after the signal).
    return TaskEvent(
        event.type, event.task_id, event.hostname, min(event.timestamp, match.timestamp), event.received_at,
        fields, event.witnesses | match.witnesses,
    )  # fmt: skip


def _pair_ends(seen: list[TaskEvent], written: list[TaskEvent], starts: list[float]) -> list[TaskEvent]:
    """One worker's ends of one type (see the module's docstring): in order, causally, a run ending once."""
    merged: list[TaskEvent] = []
    left = sorted(written, key=lambda e: e.timestamp)
    alone: list[TaskEvent] = []
    for event in sorted(seen, key=lambda e: e.timestamp):
        match = next(
            (
                w for w in left
                if w.timestamp <= event.timestamp + END_SKEW_S
                and not any(w.timestamp < s < event.timestamp for s in starts)
            ),
            None,
        )  # fmt: skip
        if match is None:
            alone.append(event)
            continue
        left.remove(match)
        merged.append(_both(event, match))
    extra = len(merged) + len(alone) + len(left) - len(starts)
    while extra > 0 and alone and left:  # more ends than runs: pair what is left, in order
        merged.append(_both(alone.pop(0), left.pop(0)))
        extra -= 1
    return merged + alone + left


def merge_history(task_id: str, events: Iterable[TaskEvent], journal: Iterable[TaskEvent]) -> TaskHistory:
    groups: dict[tuple[str, str], tuple[list[TaskEvent], list[TaskEvent]]] = defaultdict(lambda: ([], []))
    for event in events:
        groups[_key(event)][0].append(event)
    for step in journal:
        groups[_key(step)][1].append(step)
    steps = [
        step for key, (seen, written) in groups.items() if key[0] not in LATE_ENDS for step in _pair(seen, written)
    ]
    for (kind, worker), (seen, written) in groups.items():
        if kind in LATE_ENDS:
            starts = [s.timestamp for s in steps if s.type == "task-started" and s.hostname == worker]
            steps += _pair_ends(seen, written, starts)
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


WITNESSED = ("task-received", "task-started", "task-succeeded", "task-failed", "task-retried")


def witness_gaps(histories: Mapping[str, TaskHistory]) -> dict[str, int]:
    """How many of the steps both witnesses report (a receive, a start, an end) each one missed: ``steps``, and
    ``events_missed`` / ``journal_missed``, the steps only the other one saw. Celery's events travel through the
    broker (on Redis, pub/sub, which drops what a disconnected subscriber misses); the journal does not."""
    steps = [e for h in histories.values() for e in h.events if e.type in WITNESSED]
    return {
        "steps": len(steps),
        "events_missed": sum(1 for e in steps if "events" not in e.witnesses),
        "journal_missed": sum(1 for e in steps if "journal" not in e.witnesses),
    }
