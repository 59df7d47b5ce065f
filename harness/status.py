"""What a stack that is up is doing now, for a person watching it (``harness up``'s status line, ``harness ctl
status``): each queue's ready and unacknowledged messages, the workers online, the tasks so far.

Read from what any process can reach through the state file (``harness.state``): the stack's space on the
broker (``saved_space``: a RabbitMQ vhost or a Redis database, read as a scenario reads it, ``ScenarioSpace.depth``
and ``queue_names``), supervisord, and the programs' journal. A worker is
online when supervisord runs it and its current process has announced itself (``worker-online`` in its
journal) and not said goodbye. Tasks are counted from the journal with the verdict's rules
(``harness.verdict.fate_of``): sent (the producer's ``task-sent``), succeeded, failed (with the exception
types), duplicated (started more often than retries explain: a worker killed under late acknowledgement);
a task that has not ended is running only while the process that started it lives, else queued while the
queues hold a message for it, else lost (or unsettled while the broker cannot say what it holds).
A queue the app's tasks are routed to that no worker consumes is a problem on the line (RabbitMQ counts its
consumers; on Redis, which cannot, no online worker said it consumes it in its ``worker-online`` line).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness import evidence
from harness.journal import JournalReader
from harness.space import ScenarioSpace
from harness.state import StackState, pid_alive
from harness.supervisor import Supervisor
from harness.verdict import FATES, Send, TaskHistory, fate_of

# A task that has not ended, whose process is gone and whose message no queue shows, is called lost only
# once its last step is this old: between a worker's ack and its journal line, or a send and its queue's
# count, a task is briefly in neither.
SETTLE_S = 2.0
SHOWN = ("sent", "running", "succeeded", "failed")  # always on the line; the other fates when not zero


def task_counts(
    histories: Mapping[str, TaskHistory],
    started_by: Mapping[str, int],
    messages: int | None,
    now: float,
    alive: Callable[[int], bool] = pid_alive,
) -> Counter[str]:
    """Each task's fate as the verdict gives it (``fate_of``), for a stack that is still running.

    ``started_by``: the process of each task's latest start; ``messages``: the ready and unacknowledged
    messages in the app's queues (None when unknown). A task that has not ended is running while that
    process lives; else it is queued as long as the queues hold messages enough, and lost past
    ``SETTLE_S`` when they do not (unsettled when the broker cannot tell)."""
    counts: Counter[str] = Counter()
    waiting: list[TaskHistory] = []
    for task_id, history in histories.items():
        sent = history.count("task-sent") > 0
        if not sent and not history.ran:
            continue
        counts["sent"] += sent
        fate = fate_of(Send(task_id, True, history.events[0].timestamp), history, queued=False, unacked=0)
        if fate != "lost":  # not ended: decided below
            counts[fate] += 1
        elif history.count("task-started") and alive(started_by.get(task_id, 0)):
            counts["running"] += 1
        else:
            waiting.append(history)
    recent = [h for h in waiting if now - max(e.timestamp for e in h.events) < SETTLE_S]
    old = len(waiting) - len(recent)
    counts["queued"] += len(recent)
    if messages is None:  # the broker cannot say what it holds, as the verdict's unsettled
        counts["unsettled"] += old
    else:
        counts["queued"] += min(old, messages)
        counts["lost"] += old - min(old, messages)
    return counts


def failures(histories: Mapping[str, TaskHistory]) -> tuple[dict[str, int], dict[str, str]]:
    """The failed tasks (as the verdict calls them) per exception type, and the latest error of each type as
    ``Type: message``: the real exception, not billiard's wrapper of it."""
    failed = sorted(
        (
            h
            for i, h in histories.items()
            if h.terminal is not None and fate_of(Send(i, True, 0.0), h, False, 0) == "failed"
        ),
        key=lambda h: h.terminal.timestamp,
    )
    counts = Counter(h.exception_type or "?" for h in failed)
    return dict(counts), {h.exception_type or "?": h.error or "" for h in failed}


@dataclass
class Status:
    programs: dict[str, str] = field(default_factory=dict)  # name -> supervisord state
    queues: dict[str, dict[str, int | None]] = field(default_factory=dict)  # name -> ready, unacked, consumers
    workers_online: list[str] = field(default_factory=list)
    tasks: dict[str, int] = field(default_factory=dict)  # sent, running, and the verdict's fates
    failures: dict[str, int] = field(default_factory=dict)  # exception type -> tasks
    errors: dict[str, str] = field(default_factory=dict)  # exception type -> the latest such error (Type: message)
    problems: list[str] = field(default_factory=list)  # what could not be read, and why
    # A running beat's entries: "beat: report every 60s, next in 42s" (harness.periodic's words), one per beat.
    beats: list[str] = field(default_factory=list)

    def line(self) -> str:
        queues = ", ".join(
            f"{name} {q['ready']} ready {'?' if q['unacked'] is None else q['unacked']} unacked"
            for name, q in self.queues.items()
        )
        failed = f"{self.tasks.get('failed', 0)} failed"
        if self.failures:
            failed += " (" + ", ".join(self._failure(kind, n) for kind, n in self.failures.items()) + ")"
        tasks = ", ".join(f"{self.tasks.get(k, 0)} {k}" for k in ("sent", "running", "succeeded")) + f", {failed}"
        tasks += "".join(f", {self.tasks[k]} {k}" for k in FATES if k not in SHOWN and self.tasks.get(k))
        parts = [
            queues or "no queue yet",
            f"workers online: {', '.join(self.workers_online) or 'none'}",
            f"tasks: {tasks}",
            *self.beats,
        ]
        return " | ".join(parts + [f"({p})" for p in self.problems])

    def _failure(self, kind: str, tasks: int) -> str:
        """``TypeError 2: add() takes 2 positional arguments but 3 were given`` (the latest message)."""
        message = " ".join(self.errors.get(kind, "").removeprefix(kind).removeprefix(":").split())
        return f"{kind} {tasks}: {message[:80]}{'...' if len(message) > 80 else ''}" if message else f"{kind} {tasks}"

    def as_dict(self) -> dict:
        return asdict(self)


def saved_space(state: StackState) -> ScenarioSpace:
    """A handle on the stack's space (its vhost, its Redis database) from its state file: the same reading a
    scenario does, through the space's family's ``depth`` and ``queue_names``; the broker is another process's,
    so the handle reads and never stops, reconfigures or empties anything."""
    from harness.brokers import provider

    broker = provider("url", state.transport).saved(state.url, state.management_url)
    queues = tuple(dict.fromkeys([*state.queues, *state.routed_queues]))
    return broker.attach_space(state.vhost, queues)


class StatusReader:
    """Reads a stack's status again and again (the journal incrementally). ``space``: a handle on the stack's
    space (``harness up`` passes its own reader), else one made from the state file (``saved_space``)."""

    def __init__(self, state: StackState, space: ScenarioSpace | None = None) -> None:
        self.state = state
        self.journal = JournalReader(state.journal_dir)
        self.supervisor = Supervisor.attach(Path(state.supervisor_conf), Path(state.supervisor_socket))
        self.space = space if space is not None else saved_space(state)

    def close(self) -> None:
        self.space.disconnect()  # type: ignore[attr-defined]

    def read(self) -> Status:
        status = Status()
        entries = self.journal.entries()
        try:
            infos = {info["name"]: info for info in self.supervisor.rpc.getAllProcessInfo()}
        except Exception as exc:  # supervisord is going away: say so on the line, do not stop watching
            infos = {}
            status.problems.append(f"supervisord: {type(exc).__name__}")
        status.programs = {name: info["statename"] for name, info in infos.items()}
        status.workers_online = [
            name
            for name, role in self.state.programs.items()
            if role == "worker" and name in infos and _online(name, infos[name], entries)
        ]
        messages: int | None = None
        try:
            status.queues = self._queues()
            unacked = [q["unacked"] for q in status.queues.values()]
            if None not in unacked:
                messages = sum(q["ready"] or 0 for q in status.queues.values()) + sum(unacked)
            consumed = None
            if not self.space.counts_consumers:
                consumed = consumed_queues(status.workers_online, infos, entries)
            status.problems += unconsumed(self.state.routed_queues, status.queues, consumed)
        except Exception as exc:  # the broker is down or restarting
            status.problems.append(f"queues: {type(exc).__name__}")
        histories = evidence.merge({}, entries)
        started_by = {e.uuid: e.pid for e in entries if e.type == "task-started" and e.uuid}  # the latest start's
        counts = task_counts(histories, started_by, messages, time.time())
        status.tasks = {k: counts.get(k, 0) for k in SHOWN} | {k: n for k, n in counts.items() if k not in SHOWN and n}
        status.failures, status.errors = failures(histories)
        status.beats = [
            beat_line(name, entries, time.time())
            if infos.get(name, {}).get("statename") == "RUNNING"
            else f"{name}: {infos.get(name, {}).get('statename', 'unknown').lower()}"
            for name, role in self.state.programs.items()
            if role == "beat"
        ]
        return status

    def _queues(self) -> dict[str, dict[str, int | None]]:
        """Each queue's depth as the space reads it (``ScenarioSpace.depth``): the space's queues (every one of a
        vhost or database of its own) and the app's; one that does not exist (yet) is left out."""
        names = sorted({*self.space.queue_names(), *self.state.queues, *self.state.routed_queues})
        depths: dict[str, dict[str, int | None]] = {}
        for name in names:
            depth = self.space.depth(name)
            if depth.exists:
                depths[name] = {"ready": depth.ready, "unacked": depth.unacked, "consumers": depth.consumers}
        return depths


def next_due(steps: list, now: float) -> dict[str, tuple[float | None, float | None]]:
    """Each entry of one beat's latest load: (its period, when it is next due; None: unknown), from its
    ``beat-ready`` step and the ``beat-sent`` steps after it (the next run is one period after the latest send)."""
    ready = [s for s in steps if s.type == "beat-ready"]
    if not ready:
        return {}
    last = ready[-1]
    due = {name: (e.get("every"), e.get("due")) for name, e in (last.fields.get("entries") or {}).items()}
    for step in steps:  # each send says when its entry is next due (an entry added to a database since, too)
        if step.type == "beat-sent" and step.t >= last.t:
            name, sent = step.fields.get("entry", "?"), float(step.fields.get("at") or step.t)
            every = step.fields.get("every", due.get(name, (None, None))[0])
            following = step.fields.get("next") or (sent + every if every else None)
            due[name] = (every, following)
    return due


def beat_line(name: str, entries: list, now: float) -> str:
    """``beat: cleanup (not an interval) next in 3s, report every 60s next in 42s``: one running beat's entries."""
    steps = [e for e in entries if e.program == name and e.type in ("beat-ready", "beat-sent")]
    due = next_due(steps, now)
    if not due:
        return f"{name}: loading its schedule"
    parts = []
    for entry, (every, at) in sorted(due.items()):
        period = f"every {every:g}s" if every else "(not an interval)"
        when = f"in {max(0.0, at - now):.0f}s" if at else "?"
        parts.append(f"{entry} {period} next {when}")
    return f"{name}: {', '.join(parts)}"


def consumed_queues(online: Iterable[str], infos: Mapping[str, dict], entries: list) -> set[str] | None:
    """The queues the online workers' current processes said they consume (``worker-online``'s ``queues``), or
    None when one of them did not say (a journal from before it did)."""
    found: set[str] = set()
    for name in online:
        said = [e for e in entries if e.type == "worker-online" and e.program == name and e.pid == infos[name]["pid"]]
        queues = said[-1].fields.get("queues") if said else None
        if queues is None:
            return None
        found.update(queues)
    return found


def unconsumed(
    app_queues: Iterable[str], depths: Mapping[str, Mapping[str, int | None]], consumed: set[str] | None = None
) -> list[str]:
    """The queues the app's tasks are routed to that no worker consumes: the broker counts no consumer on
    them, or they do not exist yet (a worker that consumes a queue declares it). Where the broker counts no
    consumers (Redis: ``consumers`` None), ``consumed`` says which queues online workers consume (None: unknown,
    nothing said)."""
    problems = []
    for name in sorted(set(app_queues)):
        consumers = (depths.get(name) or {}).get("consumers")
        if consumers is None and consumed is not None:  # the broker cannot count them: the workers said
            consumed_here = name in consumed
        else:  # the broker's count; a queue that exists but whose consumers are unknown is not called unconsumed
            consumed_here = bool(consumers) or (consumers is None and name in depths)
        if not consumed_here:
            problems.append(f"queue {name} has no consumer")
    return problems


def _online(name: str, info: dict, entries: list) -> bool:
    """supervisord runs it, and its current process wrote worker-online and not worker-offline since."""
    if info.get("statename") != "RUNNING":
        return False
    mine = [e.type for e in entries if e.program == name and e.pid == info.get("pid")]
    return "worker-online" in mine and "worker-offline" not in mine[mine.index("worker-online") :]
