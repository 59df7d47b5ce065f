"""The fate of every periodic run: which runs of a ``celery beat`` schedule were due, and what became of each.

A beat's journal (``harness.beat_journal``) says what it sent: for each send, the schedule entry, the task id and
when beat decided to send it. The schedule says how often each entry is due. From the two, every due run gets one
fate:

- ran: sent, and its task started within one interval of the send;
- stale: sent on time, but its task started more than one interval later (it waited behind a stopped or busy
  worker: by then the next run was already due);
- not_run: sent, and its task never started (expired, still queued, lost...: ``reason`` says which, from the
  task's own fate);
- duplicated: a second send for one due run (two beats: different task ids, the same entry, within one interval);
- missed: due, and never sent (beat was down then, and does not catch up: ``reason`` says whether a beat ran).

Due runs are reckoned for interval schedules (a number, a timedelta): one is due every interval from the first
beat's start; a gap of more than one and a half intervals between sends holds missed runs. Crontab and solar
entries are judged for duplicates and lateness only, and ``unjudged`` says so: their due times are not evenly
spaced, and this module does not recompute them. This module is pure logic; it talks to nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from harness.verdict import TaskHistory, Verdict

PERIODIC_FATES = ("ran", "stale", "not_run", "duplicated", "missed")
# Two sends of one entry less than this many intervals apart are one due run sent twice: one beat's sends are
# at least an interval apart (it schedules the next from the moment it decided to send), so only a second beat
# comes closer.
DUPLICATE_WITHIN = 0.9
# A run is missed once this many intervals passed beyond its due time with no send (beat sends within
# milliseconds of a due time; half an interval also keeps apart a due run and the next).
MISSED_AFTER = 0.5
CRON_DUPLICATE_S = 1.0  # two sends of a crontab entry this close are one due run sent twice


@dataclass(frozen=True)
class ScheduleEntry:
    """One entry of a beat's schedule: its task, its period in seconds (None: crontab, solar...), ``expires``,
    and when the first beat to load it said it was next due (``first_due``)."""

    name: str
    task: str
    every: float | None = None
    expires: float | None = None
    first_due: float | None = None


@dataclass(frozen=True)
class BeatSend:
    """One periodic send, as the beat journaled it: ``at`` when it decided to send (its due moment, give or take
    a tick), ``due`` when its schedule said it was due (None if it could not say), ``beat`` the program."""

    entry: str
    task_id: str
    at: float
    beat: str
    due: float | None = None


@dataclass(frozen=True)
class BeatSpan:
    """A beat program's life: from loading its schedule to its stop or kill (``end`` None: still running)."""

    beat: str
    start: float
    end: float | None = None
    how: str = ""  # "stopped", "killed"...

    def covers(self, t: float) -> bool:
        return self.start <= t and (self.end is None or t < self.end)


@dataclass
class PeriodicRun:
    """One due run and its fate: the send that served it (None when missed), when it was due, why."""

    entry: str
    due: float
    fate: str
    task_id: str | None = None
    beat: str | None = None
    started: float | None = None
    reason: str = ""

    def describe(self, origin: float) -> str:
        sent = f" {self.task_id} by {self.beat}" if self.task_id else ""
        why = f": {self.reason}" if self.reason else ""
        return f"{self.fate:<10} {self.entry} due +{self.due - origin:.2f}s{sent}{why}"


@dataclass(repr=False)
class PeriodicVerdict:
    """``verdict.periodic``: every due run of every schedule entry given one fate (``runs``, in due order), the
    fates of the tasks the beats sent (``tasks``, a ``Verdict``), the runs that started while the entry's previous
    run still ran (``overlaps``: task id -> the earlier one's), and what could not be judged (``unjudged``)."""

    runs: list[PeriodicRun]
    tasks: Verdict | None = None
    overlaps: dict[str, str] = field(default_factory=dict)
    unjudged: list[str] = field(default_factory=list)
    origin: float = 0.0  # the first beat's start: times are told from it

    def of(self, fate: str, entry: str | None = None) -> list[PeriodicRun]:
        """The runs of this fate (of one entry, if named), in due order."""
        return [r for r in self.runs if r.fate == fate and (entry is None or r.entry == entry)]

    def counts(self, entry: str | None = None) -> dict[str, int]:
        """How many runs each fate has: fate -> count, every fate (zeros too), in the order of ``PERIODIC_FATES``."""
        counted = Counter(r.fate for r in self.runs if entry is None or r.entry == entry)
        return {fate: counted[fate] for fate in PERIODIC_FATES}

    def count(self, fate: str, entry: str | None = None) -> int:
        return self.counts(entry)[fate]

    def summary(self) -> str:
        shown = ", ".join(f"{fate}={n}" for fate, n in self.counts().items() if n)
        return f"{len(self.runs)} periodic runs: {shown or 'none'}"

    def explain(self, fates: Iterable[str] | None = None) -> str:
        wanted = set(fates if fates is not None else PERIODIC_FATES)
        lines = [f"  {run.describe(self.origin)}" for run in self.runs if run.fate in wanted]
        lines += [f"  overlap    {late} started while {early} still ran" for late, early in self.overlaps.items()]
        lines += [f"  unjudged   {line}" for line in self.unjudged]
        return "\n".join(lines)

    def __str__(self) -> str:
        return f"{self.summary()}\n{self.explain()}".rstrip()

    def __repr__(self) -> str:
        return f"<PeriodicVerdict {self.summary()}>"

    def assert_counts(self, entry: str | None = None, **expected: int) -> None:
        """Assert the count of each fate (of one entry, if named); a fate not named is expected to be 0. Returns
        None, or raises an AssertionError listing the counts that differ and every run."""
        unknown = set(expected) - set(PERIODIC_FATES)
        if unknown:
            raise TypeError(f"unknown periodic fates {sorted(unknown)}; known: {', '.join(PERIODIC_FATES)}")
        actual = self.counts(entry)
        wanted = {fate: expected.get(fate, 0) for fate in PERIODIC_FATES}
        if actual != wanted:
            wrong = [f for f in PERIODIC_FATES if actual[f] != wanted[f]]
            table = ", ".join(f"{f}: expected {wanted[f]}, got {actual[f]}" for f in wrong)
            raise AssertionError(f"periodic run fates differ ({table})\n{self.explain()}")


def _first(history: TaskHistory | None, kind: str) -> float | None:
    return next((e.timestamp for e in history.events if e.type == kind), None) if history else None


def _not_run_reason(
    history: TaskHistory | None, tasks: Verdict | None, task_id: str, sent: float, expires: float | None
) -> str:
    terminal = history.terminal if history else None
    if terminal is not None and terminal.type == "task-revoked":
        if terminal.fields.get("expired"):
            return f"expired: the worker discarded it on receipt, {terminal.timestamp - sent:.1f}s after it was sent"
        return "revoked before it ran"
    if terminal is not None:
        return f"ended without running ({terminal.type})"
    fate = next((f for f, ids in tasks.fates.items() if task_id in ids), None) if tasks else None
    received = history is not None and history.count("task-received") > 0
    if fate == "lost" and expires is not None and not received:
        # Celery 5.5+ sends ``expires`` as the message's TTL too (RabbitMQ's expiration): the broker drops it.
        return f"expired in the broker: never delivered, gone from its queue once its expires ({expires:g}s) ran out"
    return f"its task is {fate}" if fate else "its task never started"


def _judge_send(
    send: BeatSend, entry: ScheduleEntry | None, history: TaskHistory | None, tasks: Verdict | None
) -> PeriodicRun:
    every = entry.every if entry is not None else None
    started = _first(history, "task-started")
    run = PeriodicRun(send.entry, send.at, "ran", send.task_id, send.beat, started)
    if started is None:
        expires = entry.expires if entry is not None else None
        run.fate, run.reason = "not_run", _not_run_reason(history, tasks, send.task_id, send.at, expires)
    elif every is not None and started - send.at > every:
        run.fate = "stale"
        run.reason = f"started {started - send.at:.1f}s after it was sent, past its {every:g}s interval"
    return run


def clusters(sends: list[BeatSend], window: float) -> list[list[BeatSend]]:
    """Sends grouped into due runs: each group holds the sends less than ``window`` seconds after its first."""
    groups: list[list[BeatSend]] = []
    for send in sorted(sends, key=lambda s: s.at):
        if groups and send.at - groups[-1][0].at < window:
            groups[-1].append(send)
        else:
            groups.append([send])
    return groups


def _missed(entry: str, slots: Iterable[float], spans: list[BeatSpan]) -> list[PeriodicRun]:
    runs = []
    for slot in slots:
        running = [s.beat for s in spans if s.covers(slot)]
        if running:
            why = f"{' and '.join(running)} ran then, but sent nothing"
        else:
            ended = [s for s in spans if s.end is not None and s.end <= slot]
            last = max(ended, key=lambda s: s.end or 0.0, default=None)
            why = (f"no beat ran then ({last.beat} {last.how or 'stopped'} {slot - (last.end or slot):.1f}s before)"
                   if last else "no beat ran then")  # fmt: skip
        runs.append(PeriodicRun(entry, slot, "missed", reason=why))
    return runs


def _slots(start: float, end: float, every: float) -> list[float]:
    """Due times ``start``, ``start + every``... before ``end``."""
    out, t = [], start
    while t < end:
        out.append(t)
        t += every
    return out


def judge_periodic(
    entries: Mapping[str, ScheduleEntry],
    sends: Iterable[BeatSend],
    spans: Iterable[BeatSpan],
    histories: Mapping[str, TaskHistory],
    until: float,
    tasks: Verdict | None = None,
) -> PeriodicVerdict:
    """Give every due run of every entry one fate, up to ``until`` (now). ``entries`` are the schedule (entry name
    -> ``ScheduleEntry``), ``sends`` what the beats journaled (those from ``until`` on are left out), ``spans``
    when each beat ran, ``histories`` the tasks' steps, ``tasks`` the beat-sent tasks' own verdict (for why a run
    did not run)."""
    sends, spans = [s for s in sends if s.at < until], sorted(spans, key=lambda s: s.start)
    origin = min([s.start for s in spans] + [s.at for s in sends], default=until)
    runs: list[PeriodicRun] = []
    unjudged: list[str] = []
    overlaps: dict[str, str] = {}
    names = list(entries) + sorted({s.entry for s in sends} - set(entries))
    for name in names:
        entry = entries.get(name)
        every = entry.every if entry is not None else None
        mine = [s for s in sends if s.entry == name]
        groups = clusters(mine, DUPLICATE_WITHIN * every if every else CRON_DUPLICATE_S)
        for group in groups:
            runs.append(_judge_send(group[0], entry, histories.get(group[0].task_id), tasks))
            for extra in group[1:]:
                runs.append(PeriodicRun(
                    name, extra.at, "duplicated", extra.task_id, extra.beat,
                    _first(histories.get(extra.task_id), "task-started"),
                    f"a second send {extra.at - group[0].at:.2f}s after {group[0].task_id} by {group[0].beat}, "
                    "for the same due run",
                ))  # fmt: skip
        if every is None:
            unjudged.append(f"{name}: missed runs are reckoned for interval schedules only (this one is not)")
            continue
        # Every interval from the first due time to now is a due run; the sends fill some of them.
        firsts = [g[0].at for g in groups]
        anchor = entry.first_due if entry is not None and entry.first_due is not None else None
        anchor = anchor if anchor is not None else (firsts[0] if firsts else None)
        if anchor is None:
            continue
        marks = [anchor - every, *firsts] if not firsts or anchor < firsts[0] - MISSED_AFTER * every else firsts
        ends = [*firsts[1:], until] if marks is firsts else [*firsts, until]
        # Not before the first beat of the stack ran: a database scheduler remembers last runs from earlier processes.
        start = spans[0].start if spans else origin
        for mark, end in zip(marks, ends, strict=True):
            due = [t for t in _slots(mark + every, end - MISSED_AFTER * every, every) if t >= start]
            runs += _missed(name, due, spans)
        # A run that started before the entry's previous run ended overlaps it.
        previous: tuple[str, float | None] | None = None
        for group in groups:
            history = histories.get(group[0].task_id)
            start = _first(history, "task-started")
            if start is None:
                continue
            if previous is not None and (previous[1] is None or start < previous[1]):
                overlaps[group[0].task_id] = previous[0]
            terminal = history.terminal if history else None
            previous = (group[0].task_id, terminal.timestamp if terminal is not None else None)
    runs.sort(key=lambda r: (r.due, r.entry))
    return PeriodicVerdict(runs, tasks, overlaps, unjudged, origin)
