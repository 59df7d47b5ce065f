"""The fate of every task a scenario sent, in the manner of Jepsen's total-queue checker.

Each task id gets exactly one fate, so the counts always add up to every id seen:

- succeeded: ran to an end once and returned;
- failed: ran to an end once and raised (or was refused by the worker): its work will not be done
  unless something retries it;
- duplicated: started more often than its retries explain, or succeeded more than once;
- lost: sent, never ran to an end, not in any queue, and no message is left unacknowledged (even if it
  started more than once: every run was cut off, so its work was never done);
- queued: not run yet, its message is ready in a queue;
- unsettled: not run to an end and not ready in a queue, but the broker still holds unacknowledged
  messages (or cannot say): it may be in flight, so it is not called lost. Also a task that ran to an end
  while the broker holds more unacknowledged messages than there are tasks in flight: one of those is a
  message whose acknowledgement never reached RabbitMQ (sent on a connection that died), so it will be
  delivered and run again; which task's it is cannot be told, so no ended task is called done yet
  (``Verdict.reasons`` says so). Judged so only after a network fault cut a connection (see ``acks_in_doubt``);
- unverified: a span of the task's life went unseen by every witness (Celery's events through the
  broker and the programs' journals were both blind, say while the broker was down and a journal was cut
  by a kill): it may have run more often than seen, so no fate is claimed; ``Verdict.reasons`` says what
  it would otherwise be and which span was blind;
- unexpected: ran, but nobody was seen sending it (neither the scenario nor the app's own code);
- recovered: the send reported an error, yet the task ran;
- unsent: the send reported an error and the task never ran (the producer knew: not a silent loss).

Tasks the app's own code sends (a task that enqueues another: a receipt after a charge) are not the
scenario's: they are judged alike, with the same fates, in ``Verdict.children``, so that a lost child
task is reported and a scenario's counts are not disturbed by how many children have run so far.

Every step of a history says which witness saw it (``events``, ``journal``, or both; see
``harness.evidence``), and the explanation of a fate shows it. This module is pure logic over the
ledger's histories; it talks to nothing.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

FATES = (
    "succeeded",
    "failed",
    "duplicated",
    "lost",
    "queued",
    "unsettled",
    "unverified",
    "unexpected",
    "recovered",
    "unsent",
)

TERMINAL = ("task-succeeded", "task-failed", "task-rejected", "task-revoked")
RAN = ("task-started", "task-succeeded", "task-failed")
_EXCEPTION_TYPE = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*\(")


def exception_type(text: str | None) -> str | None:
    """``"TypeError('x')"`` -> ``"TypeError"``; Celery events carry the repr of the exception."""
    if not text:
        return None
    match = _EXCEPTION_TYPE.match(text)
    return match[1] if match else text.split(":", 1)[0].strip() or None


# Billiard's wrapper of an exception that crosses a process, or is raised outside the task: its repr, which
# Celery's task-failed event carries for a failure the worker's main process reports (a pool process lost
# mid-task), names neither the type nor the message (``ExceptionWithTraceback()``); the traceback does.
_WRAPPERS = {"ExceptionWithTraceback", "UnpickleableExceptionWrapper"}
_TRACEBACK_LINE = re.compile(r"^([A-Za-z_][\w.]*)(?::\s?(.*))?$")


def traceback_error(traceback: str | None) -> tuple[str, str] | None:
    """The exception raised last in a formatted traceback, as (type without its module, message): its last
    line that starts a line unindented, and the lines after it (a message of several lines)."""
    lines = (traceback or "").rstrip().splitlines()
    for n in range(len(lines) - 1, -1, -1):
        line = lines[n]
        if not line or line[0].isspace() or line.startswith(("Traceback", "During handling", "The above")):
            continue
        match = _TRACEBACK_LINE.match(line)
        if match:
            message = "\n".join([match[2] or "", *lines[n + 1 :]]).strip()
            return match[1].rsplit(".", 1)[-1], message
    return None


def repr_error(text: str | None) -> tuple[str, str] | None:
    """An exception's repr read back as (type, message), as ``str(exc)`` would give it: ``"ValueError('bad
    input')"`` -> ``("ValueError", "bad input")``; None for what is not a call with literal arguments."""
    try:
        call = ast.parse((text or "").strip(), mode="eval").body
    except SyntaxError:
        return None
    if not isinstance(call, ast.Call) or call.keywords:
        return None
    name = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", None)
    try:
        args = [ast.literal_eval(arg) for arg in call.args]
    except ValueError:
        return None
    if name is None:
        return None
    return name, str(args[0]) if len(args) == 1 else str(tuple(args)) if args else ""


def error_of(fields: Mapping) -> tuple[str, str] | None:
    """A failed (or retried) step's exception as (type, message), from the best of what the witnesses gave:
    the journal's ``error_type`` / ``error_message`` (read off the exception in the process that had it),
    else the traceback Celery's event carries, else the repr in its ``exception`` field (a wrapper's repr
    names nothing: None then)."""
    if fields.get("error_type"):
        return str(fields["error_type"]), str(fields.get("error_message") or "")
    found = traceback_error(fields.get("traceback"))
    if found is not None and found[0] not in _WRAPPERS:
        return found
    found = repr_error(fields.get("exception"))
    return found if found is not None and found[0] not in _WRAPPERS else None


EVENTS, JOURNAL = "events", "journal"


@dataclass(frozen=True)
class Span:
    """A span of time during which a witness may have missed steps, and why."""

    start: float
    end: float | None  # None: still open
    why: str

    def overlaps(self, start: float, end: float | None) -> bool:
        mine_end = float("inf") if self.end is None else self.end
        theirs_end = float("inf") if end is None else end
        return self.start <= theirs_end and start <= mine_end

    def describe(self, origin: float = 0.0) -> str:
        end = "the end" if self.end is None else f"{self.end - origin:.1f}s"
        return f"{self.start - origin:.1f}s to {end} ({self.why})"


@dataclass(frozen=True)
class TaskEvent:
    """One step of a task (``type``: ``task-started``...), on a worker (``hostname``), when it happened
    (``timestamp``), with what the witness said (``fields``) and who saw it (``witnesses``)."""

    type: str
    task_id: str
    hostname: str
    timestamp: float
    received_at: float
    fields: Mapping = field(default_factory=dict, compare=False, repr=False)
    witnesses: frozenset[str] = field(default=frozenset({EVENTS}), compare=False)

    @property
    def exception(self) -> str | None:
        """The exception as the witness wrote it (a repr, or a reason); ``error`` says it plainly."""
        return self.fields.get("exception")

    @property
    def error(self) -> str | None:
        """The step's exception as ``Type: message`` (``ValueError: bad input``), the real one even when Celery
        reported billiard's wrapper; else what the witness wrote (``cancelled by Celery``); None if none."""
        found = error_of(self.fields)
        if found is None:
            return self.exception
        kind, message = found
        return f"{kind}: {message}" if message else kind

    @property
    def exception_type(self) -> str | None:
        """The exception's type (``ValueError``), without its message."""
        found = error_of(self.fields)
        return found[0] if found is not None else exception_type(self.exception)

    @property
    def requeue(self) -> bool:
        """Whether a rejection sent the message back to its queue (a step that does not end the task)."""
        return bool(self.fields.get("requeue"))


@dataclass
class TaskHistory:
    """One task's steps (``events``: ``TaskEvent``s in time order, from both witnesses)."""

    task_id: str
    events: list[TaskEvent] = field(default_factory=list)

    def count(self, event_type: str) -> int:
        """How many steps of this type (``"task-started"``...) the task has."""
        return sum(1 for e in self.events if e.type == event_type)

    @property
    def sent_by_a_task(self) -> TaskEvent | None:
        """The send of this task by another task (a step ``task-sent`` with a parent), if one was seen."""
        return next((e for e in self.events if e.type == "task-sent" and e.fields.get("parent_id")), None)

    @property
    def name(self) -> str | None:
        """The task's name (``proj.tasks.add``), from the first step that says it; None if none did."""
        for event in self.events:
            if "name" in event.fields:
                return event.fields["name"]
        return None

    @property
    def ran(self) -> bool:
        """Whether it started, or ended, on a worker at least once."""
        return any(e.type in RAN for e in self.events)

    @property
    def terminal(self) -> TaskEvent | None:
        """The last event that ends the task (a rejection that requeues does not)."""
        for event in reversed(self.events):
            if event.type in TERMINAL and not (event.type == "task-rejected" and event.requeue):
                return event
        return None

    @property
    def exception_type(self) -> str | None:
        """The type of the exception that ended the task (``Rejected`` / ``Revoked`` for those ends); None if it
        did not end, or ended without one."""
        terminal = self.terminal
        if terminal is None:
            return None
        if terminal.type == "task-rejected":
            return "Rejected"
        if terminal.type == "task-revoked":
            return "Revoked"
        return terminal.exception_type

    @property
    def error(self) -> str | None:
        """What ended the task, as ``Type: message`` (``ValueError: bad input``); None if nothing failed it."""
        terminal = self.terminal
        if terminal is None or terminal.type not in ("task-failed", "task-rejected", "task-revoked"):
            return None
        if terminal.type != "task-failed":
            return self.exception_type
        return terminal.error or self.exception_type

    @property
    def workers(self) -> list[str]:
        """Hostnames of the workers that ran it, in order."""
        return [e.hostname for e in self.events if e.type == "task-started"]

    @property
    def finished_by(self) -> str | None:
        """The hostname of the worker whose step ended the task; None if it has not ended."""
        terminal = self.terminal
        return terminal.hostname if terminal else None

    def describe(self, origin: float | None = None) -> str:
        """The history on one line: each step's time from ``origin`` (default: the first step), type, worker,
        error, and the witnesses that saw it."""
        origin = self.events[0].timestamp if origin is None and self.events else (origin or 0.0)
        parts = []
        for e in self.events:
            detail = f" {' '.join(e.error.split())[:160]}" if e.error else ""
            seen = "+".join(sorted(e.witnesses))
            parts.append(f"+{e.timestamp - origin:.3f}s {e.type} @{e.hostname}{detail} [{seen}]")
        return "; ".join(parts) or "no events"

    @property
    def span(self) -> tuple[float, float | None] | None:
        """From the first step to the one that ended the task (None while it has not ended)."""
        if not self.events:
            return None
        terminal = self.terminal
        return self.events[0].timestamp, terminal.timestamp if terminal is not None else None


@dataclass(frozen=True)
class Send:
    """What the scenario itself sent: the task id, and whether the send reported success."""

    task_id: str
    ok: bool
    at: float
    error: str | None = None


def fate_of(send: Send | None, history: TaskHistory | None, queued: bool, unacked: int | None) -> str:
    history = history or TaskHistory("")
    if send is None:
        return "unexpected"
    if not send.ok:
        return "recovered" if history.ran else "unsent"
    started, retried = history.count("task-started"), history.count("task-retried")
    ended = history.count("task-succeeded") + history.count("task-failed")
    if not ended and not queued and unacked == 0 and started > 1 + retried:
        # Started again and again, never ran to an end, and its message is gone (a quorum queue's delivery
        # limit dropped it): the work was never done, which matters more than the repeated starts.
        return "lost"
    if started > 1 + retried or history.count("task-succeeded") > 1:
        return "duplicated"
    if queued:
        # Even after a run that ended, when its message is back in its queue (``judge`` decides: an acks_late
        # run whose ack never reached the broker): the task will run again, so "succeeded" would soon be wrong.
        return "queued"
    terminal = history.terminal
    if terminal is not None:
        return "succeeded" if terminal.type == "task-succeeded" else "failed"
    if unacked is None or unacked > 0:
        return "unsettled"
    return "lost"


@dataclass(repr=False)
class Verdict:
    """What ``stack.verdict()`` returns: every task the scenario sent given one fate. ``fates`` (fate -> task ids),
    ``histories`` (task id -> ``TaskHistory``), ``sends`` (task id -> ``Send``), ``reasons`` (task id -> why, where
    the fate alone does not say), ``where`` (a queued task's queue), ``children`` (the tasks the app's own tasks
    sent, judged alike: a ``Verdict``)."""

    fates: dict[str, list[str]]
    histories: Mapping[str, TaskHistory]
    sends: Mapping[str, Send]
    unacked: int | None = None
    # Why a task has its fate, where the fate alone does not say: unverified, unsettled, queued while it runs.
    reasons: dict[str, str] = field(default_factory=dict)
    where: dict[str, str] = field(default_factory=dict)  # the queue a queued task waits in
    blind: list[Span] = field(default_factory=list)  # spans no witness saw
    # The tasks the app's own tasks sent, judged alike: an empty verdict if none (None on the children's own).
    children: Verdict | None = None
    doubt: str = ""  # why no ended task is called done yet (see acks_in_doubt), if so
    # Workers that live but take nothing from a queue holding tasks (harness.stalls), one line each.
    stalled: list[str] = field(default_factory=list)
    # The fates of the tasks a celery beat sent, judged alike (None: no beat sent any); ``periodic`` judges their
    # runs against the schedule (harness.periodic: ran, stale, missed, duplicated...), set by the stack.
    periodic_tasks: Verdict | None = None
    periodic: Any = None  # a harness.periodic.PeriodicVerdict (which builds on this module: not imported here)

    def ids(self, fate: str) -> list[str]:
        """The ids of the tasks of this fate (``"lost"``...)."""
        return list(self.fates.get(fate, []))

    def counts(self) -> dict[str, int]:
        """How many tasks each fate has: fate -> count, every fate (zeros too), in the order of ``FATES``."""
        return {fate: len(self.fates.get(fate, [])) for fate in FATES}

    def count(self, fate: str) -> int:
        """How many tasks have this fate."""
        return len(self.fates.get(fate, []))

    def total(self) -> int:
        """How many tasks were judged (every fate together)."""
        return sum(self.counts().values())

    def by_worker(self, fate: str) -> Counter[str]:
        """How many tasks of this fate each worker finished (hostname from the terminal event)."""
        return Counter(self.histories[i].finished_by or "?" for i in self.ids(fate) if i in self.histories)

    def exception_types(self, fate: str = "failed") -> Counter[str]:
        """The exception types that ended the tasks of this fate: type -> how many (``"?"``: none known)."""
        return Counter(
            (self.histories[i].exception_type if i in self.histories else None) or "?" for i in self.ids(fate)
        )

    def summary(self) -> str:
        """One line: ``12 tasks: succeeded=8, duplicated=4``."""
        shown = ", ".join(f"{fate}={n}" for fate, n in self.counts().items() if n)
        return f"{self.total()} tasks: {shown or 'none'}"

    def __str__(self) -> str:
        """``print(verdict)``: the counts, then each task's fate and history (ten per fate)."""
        return f"{self.summary()}\n{self.explain()}".rstrip()

    def __repr__(self) -> str:
        return f"<Verdict {self.summary()}>"

    def explain(self, fates: Iterable[str] | None = None, limit: int = 10) -> str:
        """A line per task of these fates (default: all), up to ``limit`` a fate: its fate, id, task name, why,
        and its history with the witness of each step; one string."""
        lines = [f"  {line}" for line in self.stalled] if fates is None else []
        for fate in fates if fates is not None else FATES:
            ids = self.ids(fate)
            for task_id in ids[:limit]:
                history = self.histories.get(task_id)
                note = f" ({self.reasons[task_id]})" if task_id in self.reasons else ""
                note += f" (in {self.where[task_id]})" if task_id in self.where else ""
                name = f" {history.name}" if history is not None and history.name else ""
                lines.append(f"  {fate:<10} {task_id}{name}{note}: {history.describe() if history else 'no events'}")
            if len(ids) > limit:
                lines.append(f"  {fate:<10} ... and {len(ids) - limit} more")
        return "\n".join(lines)

    def reclassify(self, task_id: str, fate: str, reason: str) -> None:
        """Give ``task_id`` another fate, with why (the stack does so with facts the judge did not have)."""
        for ids in self.fates.values():
            if task_id in ids:
                ids.remove(task_id)
        self.fates.setdefault(fate, []).append(task_id)
        self.reasons[task_id] = reason

    def assert_no_stall(self) -> None:
        """Assert that no worker was stalled (alive, its queue holding tasks, nothing received for a while)."""
        if self.stalled:
            raise AssertionError("\n".join(self.stalled))

    def assert_counts(self, **expected: int) -> None:
        """Assert the count of each fate; a fate not named is expected to be 0. Returns None, or raises an
        AssertionError listing the counts that differ and the histories of the tasks concerned."""
        unknown = set(expected) - set(FATES)
        if unknown:
            raise TypeError(f"unknown fates {sorted(unknown)}; known: {', '.join(FATES)}")
        actual = self.counts()
        wanted = {fate: expected.get(fate, 0) for fate in FATES}
        if actual == wanted:
            return
        wrong = [fate for fate in FATES if actual[fate] != wanted[fate]]
        table = ", ".join(f"{fate}: expected {wanted[fate]}, got {actual[fate]}" for fate in wrong)
        # Show the histories of every id in a fate that has too many, and of the expected fates
        # that came up short (ids there tell what did happen instead).
        raise AssertionError(f"task fates differ ({table})\n{self.explain([f for f in wrong if actual[f]])}")


def blind_for(send: Send | None, history: TaskHistory | None, blind: Iterable[Span]) -> Span | None:
    """The first blind span inside the task's life (from its send or first step to its end)."""
    span = history.span if history is not None else None
    starts = [t for t in (send.at if send else None, span[0] if span else None) if t is not None]
    if not starts:
        return None
    end = span[1] if span else None
    return next((b for b in blind if b.overlaps(min(starts), end)), None)


def child_sends(sends: Mapping[str, Send], histories: Mapping[str, TaskHistory]) -> dict[str, Send]:
    """The tasks another task sent (not the scenario), as sends: accepted if the publish was seen to
    return (``task-published``, or the event the producer emits after publishing)."""
    children = {}
    for task_id, history in histories.items():
        sent = history.sent_by_a_task
        if task_id in sends or sent is None:
            continue
        published = "events" in sent.witnesses or history.count("task-published") > 0
        children[task_id] = Send(task_id, published, sent.timestamp, None if published else "the publish raised")
    return children


def requeued(history: TaskHistory, queue: str) -> bool:
    """An ended task whose message waits again in the queue it was sent to (an ``acks_late`` run whose ack was
    lost): it will run again. In any other queue (a dead-letter queue) it stays as it ended."""
    sent_to = {e.fields.get(key) for e in history.events if e.type in ("task-sent", "task-published")
               for key in ("queue", "routing_key")}  # fmt: skip
    return queue in sent_to


def in_flight(histories: Mapping[str, TaskHistory], where: Mapping[str, str]) -> int:
    """How many tasks a worker holds now: received (or started), not ended, and not back in a queue."""
    return sum(
        1
        for task_id, history in histories.items()
        if task_id not in where and history.terminal is None and (history.count("task-received") or history.ran)
    )


def acks_in_doubt(
    histories: Mapping[str, TaskHistory], where: Mapping[str, str], unacked: int | None, connections_cut: bool
) -> str:
    """Why no ended task can be called done yet (empty if it can): the broker holds unacknowledged messages
    beyond the tasks in flight, so some ended task's acknowledgement was lost and its message will come back.

    Only after a connection was cut without being closed (``connections_cut``: a network fault): that is how
    an ack is lost while RabbitMQ keeps the connection, and its messages unacknowledged. Otherwise a count
    above the tasks in flight is the management API's statistics lagging (measured: an idle queue's count
    stays stale for seconds), not a message to come back. An unknown count (a url broker without a
    management API) says nothing either way."""
    if unacked is None or not connections_cut:
        return ""
    holding = in_flight(histories, where)
    if unacked <= holding:
        return ""
    return (
        f"RabbitMQ holds {unacked} unacknowledged message(s) and only {holding} task(s) are in flight: an "
        "acknowledgement that never reached it (a connection lost after a run) will bring a message back, "
        "to run again"
    )


def judge(
    sends: Mapping[str, Send],
    histories: Mapping[str, TaskHistory],
    queued: Iterable[str] | Mapping[str, str] = (),
    unacked: int | None = 0,
    blind: Iterable[Span] = (),
    children: bool = True,
    doubt: str | None = None,
    connections_cut: bool = False,
    held: Mapping[str, str] | None = None,
    unacked_ids: Mapping[str, str] | None = None,
) -> Verdict:
    """Give every id the scenario sent, and every id that ran, exactly one fate; the tasks the app's own
    tasks sent are judged alike in ``Verdict.children``.

    ``queued`` names the tasks whose message is ready in a queue (a mapping gives the queue);
    ``blind`` lists the spans that no witness saw: a task whose life overlaps one is ``unverified``
    unless it is already known to be duplicated (a blind span can only hide more runs).
    ``connections_cut``: a program's connection was cut without being closed (see ``acks_in_doubt``).
    ``held`` names the tasks a worker that still runs holds (task id -> the worker): the process that last
    received each one is alive and no end came. Such a task is in flight, never ``lost``, whatever an
    unacknowledged count read a moment after a fault says (the management API's counts lag).
    ``unacked_ids`` names the tasks whose message the broker holds unacknowledged, where it can tell which (Redis:
    its ``unacked`` hash; task id -> queue): such a task is not done until its message is acknowledged, so it is
    ``unsettled`` (in flight, or to be put back once ``visibility_timeout`` passes), never ``lost``, ``succeeded`` or
    ``failed``. Then no count-based doubt is needed: each message says whose it is.
    """
    where = dict(queued) if isinstance(queued, Mapping) else {task_id: "a queue" for task_id in queued}
    blind = list(blind)
    if doubt is None:  # the children are judged with their parents' doubt: the count is the vhost's
        doubt = "" if unacked_ids is not None else acks_in_doubt(histories, where, unacked, connections_cut)
    descendants = child_sends(sends, histories) if children else {}
    fates: dict[str, list[str]] = {fate: [] for fate in FATES}
    reasons: dict[str, str] = {}
    for task_id in [*sends, *(i for i in histories if i not in sends and i not in descendants)]:
        history = histories.get(task_id)
        send = sends.get(task_id)
        if send is None and not (history and history.ran):
            # Only a task-sent step from some other producer: nothing ran, nothing to judge.
            continue
        queued = task_id in where and (history is None or history.terminal is None or requeued(history, where[task_id]))
        # Where the broker says whose each unacknowledged message is, a task not among them has none held.
        fate = fate_of(send, history, queued, 0 if unacked_ids is not None else unacked)
        running = held and task_id in held and history is not None and not history.terminal
        if fate in ("lost", "unsettled") and running:
            reasons[task_id] = f"in flight: {held[task_id]} received it and still runs; no end of it yet"
            fate = "unsettled"
        elif fate == "queued" and running and history.count("task-started"):
            # acks_late after a cut connection: the message is back while the first run goes on
            reasons[task_id] = f"back in {where[task_id]} while {held[task_id]} still runs it: it will run again"
        if doubt and fate in ("succeeded", "failed"):
            reasons[task_id] = f"would be {fate}, but {doubt}"
            fate = "unsettled"
        if unacked_ids and task_id in unacked_ids and fate in ("lost", "succeeded", "failed", "unsettled"):
            queue = unacked_ids[task_id]
            reasons[task_id] = (
                (f"would be {fate}, but " if fate != "unsettled" else "")
                + f"its message is unacknowledged in the broker: a worker holds it, or it goes back to {queue} "
                "once visibility_timeout passes, to run again"
            )
            fate = "unsettled"
        gap = blind_for(send, history, blind) if fate != "duplicated" else None
        if gap is not None:
            origin = send.at if send else history.events[0].timestamp
            reasons[task_id] = f"would be {fate}, but no witness saw {gap.describe(origin)}"
            fate = "unverified"
        fates[fate].append(task_id)
    shown = {i: q for i, q in where.items() if i in fates["queued"]}
    verdict = Verdict(fates, histories, sends, unacked, reasons, shown, blind, doubt=doubt)
    if children:  # an empty verdict when no task sent any: ``verdict.children.assert_counts`` says so plainly
        their = {i: h for i, h in histories.items() if i in descendants}
        verdict.children = judge(
            descendants, their, where, unacked, blind, children=False, doubt=doubt, held=held, unacked_ids=unacked_ids
        )
    return verdict
