"""Two versions of an app compared task by task: each change, and its verdict in each deploy direction.

The input is what ``python -m harness.introspect`` printed for each version (read in a process of its
own: two versions never share an interpreter). The directions:

- ``old_to_new``: an old producer's message on a new worker (the workers were deployed first);
- ``new_to_old``: a new producer's message on an old worker (the producers were deployed first);
- ``queued``: a message sent before the deploy, still in its queue, drained by a new worker.

Verdicts: ``safe``; ``breaks`` (the task fails, runs with values in the wrong parameters, or is stranded
in a queue no worker consumes); ``waits`` (it sits in a queue until workers of the new version consume
it: nothing is lost); ``changes`` (it runs, under other delivery rules). What Celery does, by kind:

- a name the worker does not know: it reports ``NotRegistered`` and rejects the message, which is gone
  unless a dead-letter exchange keeps it;
- arguments that do not bind: ``TypeError`` in the worker, the message acknowledged: the work is gone;
  arguments that bind to the wrong parameters (reordered positionals): it runs, wrongly;
- routing is the producer's: a message goes to the queue its producer's version routes it to. The
  workers of a version are assumed to consume every queue that version's app declares or routes to;
- ``acks_late``, ``reject_on_worker_lost``, ``max_retries``, ``rate_limit``, ``ignore_result`` and the retry
  options (``autoretry_for``, ``retry_backoff``...) are the worker's own (``WORKER_OPTIONS``): a task runs
  under the rules of the worker that runs it. Time limits travel in the message: ``apply_async``
  (``delay``) copies the task's ``time_limit`` / ``soft_time_limit`` into it, and the worker applies the
  message's limits before its own (``celery.worker.request``); a by-name ``send_task`` carries none.

A renamed task is found by the same function under another name, the same body (``body_hash``), or,
failing both, the only removed and the only added task with the same parameters.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.deploy.signatures import (
    CONVENTIONS,
    FAILS,
    KEYWORD,
    POSITIONAL,
    RUNS,
    Call,
    Outcome,
    Signature,
    bind,
    calls,
    differences,
    tolerant,
)
from harness.errors import HarnessError

OLD_TO_NEW, NEW_TO_OLD, QUEUED = "old_to_new", "new_to_old", "queued"
DIRECTIONS = (OLD_TO_NEW, NEW_TO_OLD, QUEUED)
TITLES = {
    OLD_TO_NEW: "old producer → new worker",
    NEW_TO_OLD: "new producer → old worker",
    QUEUED: "queued messages",
}
SAFE, BREAKS, WAITS, CHANGES = "safe", "breaks", "waits", "changes"
# What a message meets on a worker of the other version, beyond what a call's binding says.
STRANDED, WAITING = "stranded", "waits"

DROPPED = "NotRegistered, the message rejected and dropped"
SIGNATURE, BIND, ROUTING, DELIVERY = "signature", "bind", "routing", "delivery"
REMOVED, RENAMED, ADDED = "removed", "renamed", "added"
KIND_ORDER = (REMOVED, RENAMED, ADDED, SIGNATURE, ROUTING, BIND, DELIVERY)
# Changes that decide where a message goes and whether it runs: what --prove sends messages for.
MESSAGE_KINDS = (REMOVED, RENAMED, ADDED, SIGNATURE, ROUTING)

WORKER_OPTIONS = (
    "acks_late", "acks_on_failure_or_timeout", "reject_on_worker_lost", "max_retries", "default_retry_delay",
    "rate_limit", "ignore_result", "autoretry_for", "dont_autoretry_for", "retry_kwargs", "retry_backoff",
    "retry_backoff_max", "retry_jitter",
)  # fmt: skip
MESSAGE_OPTIONS = ("time_limit", "soft_time_limit")
OPTION_NOTES = {
    "acks_late": (
        "on: a task whose worker dies mid-run is delivered again and runs twice (make it idempotent)",
        "off: a task whose worker dies mid-run is lost (it was acknowledged when it started)",
    ),
    "reject_on_worker_lost": (
        "on: a task whose pool process dies is requeued and runs again",
        "off: a task whose pool process dies fails (WorkerLostError)",
    ),
}


@dataclass(frozen=True)
class CallPolicy:
    """How producers call each task: ``positional``, ``keyword`` or both, by default and per task name."""

    default: tuple[str, ...] = CONVENTIONS
    per_task: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @classmethod
    def parse(cls, values: Iterable[str]) -> CallPolicy:
        """``both`` / ``positional`` / ``keyword``, or ``TASK=...`` for one task (the last one wins)."""
        default: tuple[str, ...] = CONVENTIONS
        per_task: dict[str, tuple[str, ...]] = {}
        for value in values:
            task, _, convention = value.rpartition("=")
            conventions = _conventions(convention.strip(), value)
            if task:
                per_task[task.strip()] = conventions
            else:
                default = conventions
        return cls(default, tuple(per_task.items()))

    def of(self, *names: str | None) -> tuple[str, ...]:
        given = dict(self.per_task)
        for name in names:
            if name in given:
                return given[name]
        return self.default

    def describe(self) -> str:
        def words(conventions: tuple[str, ...]) -> str:
            return " and ".join(conventions)

        text = f"{words(self.default)} calls"
        if self.per_task:
            text += " (" + ", ".join(f"{task}: {words(c)}" for task, c in self.per_task) + ")"
        return text


def _conventions(word: str, given: str) -> tuple[str, ...]:
    if word == "both":
        return CONVENTIONS
    if word in (POSITIONAL, KEYWORD):
        return (word,)
    raise HarnessError(f"--calls {given!r}: say positional, keyword or both (or TASK=positional|keyword|both)")


@dataclass(frozen=True)
class Change:
    """One change of one task, and its verdict in each direction (``reasons`` say why, ``fix`` how)."""

    task: str
    kind: str
    detail: str
    verdicts: dict[str, str]
    reasons: dict[str, str] = field(default_factory=dict)
    fix: str | None = None
    new_task: str | None = None  # a renamed task's new name

    @property
    def label(self) -> str:
        return f"{self.task} → {self.new_task}" if self.new_task and self.new_task != self.task else self.task

    def breaks(self, directions: Iterable[str] = DIRECTIONS) -> bool:
        return any(self.verdicts.get(d) == BREAKS for d in directions)


@dataclass(frozen=True)
class Prediction:
    """What the checker says one message meets: ``runs``, ``fails`` (with ``error``), ``misbinds``,
    ``waits`` (in a queue only the other version's workers consume) or ``stranded``."""

    kind: str
    reason: str = ""
    error: str | None = None
    queue: str | None = None

    @classmethod
    def of(cls, outcome: Outcome, queue: str | None) -> Prediction:
        return cls(outcome.kind, outcome.reason, outcome.error, queue)


@dataclass(frozen=True)
class Message:
    """A message the proof sends: which version's producer makes which call, on which version's worker."""

    task: str  # the row's task (the base name, or the new name of an added task)
    direction: str  # a direction, or "control" (a version's own producer and worker)
    producer: str  # "base" or "new"
    worker: str
    call: Call
    predicted: Prediction


@dataclass
class Comparison:
    base: dict[str, Any]
    new: dict[str, Any]
    policy: CallPolicy
    changes: list[Change]
    unchanged: list[str]
    messages: list[Message]

    def breaking(self, directions: Iterable[str] = DIRECTIONS) -> list[Change]:
        directions = tuple(directions)
        return [c for c in self.changes if c.breaks(directions)]

    def change(self, task: str, kind: str) -> Change:
        for change in self.changes:
            if kind == change.kind and task in (change.task, change.new_task):
                return change
        raise KeyError((task, kind))

    def task_verdict(self, task: str, direction: str) -> str:
        """The worst verdict of the task's changes in that direction."""
        found = [c.verdicts[direction] for c in self.changes if task in (c.task, c.new_task)]
        for verdict in (BREAKS, WAITS, CHANGES):
            if verdict in found:
                return verdict
        return SAFE

    def to_json(self) -> dict[str, Any]:
        return {
            "calls": self.policy.describe(),
            "changes": [asdict(c) for c in self.changes],
            "unchanged": self.unchanged,
        }


# -- the tasks of each version -------------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    name: str
    info: Mapping[str, Any]

    @property
    def signature(self) -> Signature:
        return Signature.from_introspection(self.info.get("parameters", ()))

    @property
    def bound(self) -> bool:
        return bool(self.info.get("bound"))

    def queue(self, via: str = "apply_async") -> str | None:
        """The queue its producers route it to: through the task object (its own ``queue`` option, then
        ``task_routes``), or by name (``task_routes`` only)."""
        if via == "send_task" and "queue_by_name" in self.info:
            return self.info["queue_by_name"]
        return (self.info.get("options") or {}).get("queue")

    def option(self, name: str) -> Any:
        return (self.info.get("options") or {}).get(name)

    @property
    def function(self) -> tuple[Any, Any]:
        return self.info.get("module"), self.info.get("function")


def tasks_of(info: Mapping[str, Any]) -> dict[str, Task]:
    return {name: Task(name, task) for name, task in (info.get("tasks") or {}).items()}


def match_renames(base: Mapping[str, Task], new: Mapping[str, Task]) -> dict[str, tuple[str, str]]:
    """Removed task → (added task, why it looks like the same task), strongest evidence first."""
    removed = [n for n in base if n not in new]
    added = [n for n in new if n not in base]
    found: dict[str, tuple[str, str]] = {}

    def take(how: str, same) -> None:
        for old in removed:
            if old in found:
                continue
            taken = {n for n, _ in found.values()}
            candidates = [n for n in added if n not in taken and same(base[old], new[n])]
            if len(candidates) == 1:
                found[old] = (candidates[0], how)

    take("the same function", lambda a, b: a.function == b.function and a.function != (None, None))
    take("the same code", lambda a, b: a.info.get("body_hash") and a.info.get("body_hash") == b.info.get("body_hash"))
    left_removed = [n for n in removed if n not in found]
    left_added = [n for n in added if n not in {m for m, _ in found.values()}]
    for old in left_removed:
        same = [n for n in left_added if new[n].signature == base[old].signature]
        twins = [o for o in left_removed if base[o].signature == base[old].signature]
        if len(same) == 1 and len(twins) == 1:
            found[old] = (same[0], "the same parameters (no other evidence: check it)")
    return found


# -- the comparison ------------------------------------------------------------------------------


def compare(
    base: Mapping[str, Any], new: Mapping[str, Any], policy: CallPolicy | None = None, via: str = "apply_async"
) -> Comparison:
    """``via``: how producers send (``apply_async`` through the task object, or ``send_task`` by name),
    which decides the route of a task that names its own queue."""
    policy = policy or CallPolicy()
    old_tasks, new_tasks = tasks_of(base), tasks_of(new)
    renames = match_renames(old_tasks, new_tasks)
    renamed_to = {n for n, _ in renames.values()}
    pairs: list[tuple[Task | None, Task | None, str | None]] = []
    for name, task in old_tasks.items():
        if name in new_tasks:
            pairs.append((task, new_tasks[name], None))
        elif name in renames:
            pairs.append((task, new_tasks[renames[name][0]], renames[name][1]))
        else:
            pairs.append((task, None, None))
    pairs += [(None, t, None) for name, t in new_tasks.items() if name not in old_tasks and name not in renamed_to]

    context = _Context(set(base.get("queues") or ()), set(new.get("queues") or ()), policy, old_tasks, new_tasks, via)
    changes: list[Change] = []
    unchanged: list[str] = []
    messages: list[Message] = []
    for old, fresh, how in pairs:
        found = context.changes(old, fresh, how)
        if not found:
            unchanged.append((old or fresh).name)  # type: ignore[union-attr]
            continue
        changes += found
        if any(c.kind in MESSAGE_KINDS for c in found):
            messages += context.messages(old, fresh)
    changes.sort(key=lambda c: (c.task, KIND_ORDER.index(c.kind)))
    return Comparison(dict(base), dict(new), policy, changes, sorted(unchanged), messages)


@dataclass
class _Context:
    old_queues: set[str]
    new_queues: set[str]
    policy: CallPolicy
    old_tasks: Mapping[str, Task]
    new_tasks: Mapping[str, Task]
    via: str = "apply_async"

    # -- the changes of one task ------------------------------------------------------------
    def changes(self, old: Task | None, fresh: Task | None, how: str | None) -> list[Change]:
        if old is None:
            assert fresh is not None
            return [self._added(fresh)]
        if fresh is None:
            return [self._removed(old)]
        found = [self._renamed(old, fresh, how)] if how else []
        found += [c for c in (self._signature(old, fresh), self._routing(old, fresh), self._bind(old, fresh)) if c]
        return found + self._delivery(old, fresh)

    def _removed(self, old: Task) -> Change:
        unknown = f"old producers still send `{old.name}`, which no new worker knows: {DROPPED}"
        return Change(
            old.name, REMOVED, f"`{old.name}` removed",
            {OLD_TO_NEW: BREAKS, NEW_TO_OLD: SAFE, QUEUED: BREAKS},
            {OLD_TO_NEW: unknown, NEW_TO_OLD: "new producers do not send it",
             QUEUED: f"`{old.name}` messages queued before the deploy meet workers that do not know it: NotRegistered"},
            f"keep `{old.name}` registered (the function, or a stub that logs) until no producer sends it and no "
            "queue holds it; remove it a release later",
        )  # fmt: skip

    def _added(self, fresh: Task) -> Change:
        return Change(
            fresh.name, ADDED, f"`{fresh.name}` added",
            {OLD_TO_NEW: SAFE, NEW_TO_OLD: BREAKS, QUEUED: SAFE},
            {OLD_TO_NEW: "old producers do not send it", QUEUED: "no queued message names it",
             NEW_TO_OLD: f"new producers send `{fresh.name}`, which no old worker knows: {DROPPED}"},
            "deploy the workers before the producers that send it",
        )  # fmt: skip

    def _renamed(self, old: Task, fresh: Task, how: str) -> Change:
        return Change(
            old.name, RENAMED, f"`{old.name}` renamed `{fresh.name}` ({how})",
            {OLD_TO_NEW: BREAKS, NEW_TO_OLD: BREAKS, QUEUED: BREAKS},
            {OLD_TO_NEW: f"old producers send `{old.name}`, which no new worker knows: {DROPPED}",
             NEW_TO_OLD: f"new producers send `{fresh.name}`, which no old worker knows: {DROPPED}",
             QUEUED: f"`{old.name}` messages queued before the deploy meet workers that do not know it: NotRegistered"},
            f"register the function under both names for a release (`app.task(name={old.name!r})(...)` next to "
            f"`{fresh.name}`) and deploy the workers first; drop `{old.name}` once no producer sends it and no queue "
            "holds it",
            new_task=fresh.name,
        )  # fmt: skip

    def _signature(self, old: Task, fresh: Task) -> Change | None:
        before, after = old.signature, fresh.signature
        if before == after:
            return None
        conventions = self.policy.of(old.name, fresh.name)
        verdicts, reasons = {}, {}
        for direction, producer, worker, name, extra in (
            (OLD_TO_NEW, before, after, old.name, True),
            (NEW_TO_OLD, after, before, fresh.name, False),
        ):
            made = calls(name, producer, conventions, extra)
            outcomes = [(call, bind(call, worker, producer)) for call in made]
            broken = [(c, o) for c, o in outcomes if o.breaks]
            moved = dict.fromkeys(pair for _, o in outcomes for pair in o.renamed)
            verdicts[direction] = BREAKS if broken else CHANGES if moved else SAFE
            shown = broken or [(c, o) for c, o in outcomes if o.reason]
            reasons[direction] = "; ".join(f"{c.describe()} ({c.style} call) → {o.reason}" for c, o in shown[:3])
            if moved and not broken:
                reasons[direction] = "; ".join(
                    f"positional callers' values for `{a}` now land in `{b}`: the task runs and reads them as `{b}` "
                    "(make sure they mean the same thing)"
                    for a, b in moved
                )
        verdicts[QUEUED] = verdicts[OLD_TO_NEW]
        reasons[QUEUED] = f"as an old producer's: {reasons[OLD_TO_NEW]}" if reasons[OLD_TO_NEW] else ""
        form = tolerant(before, after, conventions)
        rendered = form.render(fresh.name, fresh.bound)
        fix: str | None = f"tolerant form, on both versions: {rendered}, called with keywords"
        # A parameter one version's messages lack gets its default: binding is then safe, the body must cope.
        lacking = [p for p in form.params if p.named and p.has_default and not (p.name in before.names and
                   p.name in after.names and before[p.name].has_default == after[p.name].has_default)]  # fmt: skip
        if lacking:
            fix += (
                "; the body must handle "
                + ", ".join(f"`{p.name}={p.default}`" for p in lacking)
                + (" (what it gets from a message that lacks it)")
            )
        # Even in that form, new producers' keyword calls may name what the running workers do not take.
        untaken = [c for c in calls(fresh.name, form, (KEYWORD,)) if bind(c, before, form).breaks]
        if untaken:
            fix += f"; the running workers do not take `{untaken[-1].describe()}`: deploy the workers first"
        if BREAKS not in verdicts.values():
            fix = None
        return Change(
            old.name, SIGNATURE, "; ".join(differences(before, after)) or "parameters changed", verdicts, reasons, fix,
            new_task=fresh.name,
        )  # fmt: skip

    def _routing(self, old: Task, fresh: Task) -> Change | None:
        before, after = old.queue(self.via), fresh.queue(self.via)
        if before == after:
            return None
        verdicts, reasons = {}, {}
        if after in self.old_queues:
            verdicts[NEW_TO_OLD], reasons[NEW_TO_OLD] = SAFE, f"old workers consume `{after}` too"
        else:
            verdicts[NEW_TO_OLD] = WAITS
            reasons[NEW_TO_OLD] = (
                f"new producers route it to `{after}`, which no old worker consumes: it waits there for new workers"
            )
        if before in self.new_queues:
            verdicts[OLD_TO_NEW], reasons[OLD_TO_NEW] = SAFE, f"new workers still consume `{before}`"
            verdicts[QUEUED], reasons[QUEUED] = SAFE, f"new workers still consume `{before}`"
        else:
            verdicts[OLD_TO_NEW] = verdicts[QUEUED] = BREAKS
            reasons[OLD_TO_NEW] = f"old producers route it to `{before}`, which no new worker consumes: stranded"
            reasons[QUEUED] = f"messages already in `{before}` stay there: no new worker consumes it"
        return Change(
            old.name, ROUTING, f"queue `{before}` → `{after}`", verdicts, reasons,
            f"keep a worker consuming `{before}` (`-Q {before},{after}`, or keep it in task_queues) until "
            "it is empty and no producer routes there",
            new_task=fresh.name,
        )  # fmt: skip

    def _bind(self, old: Task, fresh: Task) -> Change | None:
        if old.bound == fresh.bound:
            return None
        why = "Celery passes the task itself to a bound task: the message carries the same arguments"
        return Change(
            old.name, BIND, f"bind={old.bound} → bind={fresh.bound}", dict.fromkeys(DIRECTIONS, SAFE),
            dict.fromkeys(DIRECTIONS, why), None, new_task=fresh.name,
        )  # fmt: skip

    def _delivery(self, old: Task, fresh: Task) -> list[Change]:
        found = []
        for option in (*WORKER_OPTIONS, *MESSAGE_OPTIONS):
            before, after = old.option(option), fresh.option(option)
            if before == after:
                continue
            if option in WORKER_OPTIONS:
                what = _worker_option_note(option, before, after)
                verdicts = {OLD_TO_NEW: CHANGES, NEW_TO_OLD: SAFE, QUEUED: CHANGES}
                reasons = {
                    OLD_TO_NEW: f"the new worker runs it with {option}={after}: {what}",
                    NEW_TO_OLD: f"old workers keep {option}={before}",
                    QUEUED: f"queued messages run with the new worker's {option}={after}: {what}",
                }
            else:
                verdicts = dict.fromkeys(DIRECTIONS, CHANGES)
                reasons = _limit_reasons(option, before, after)
            found.append(
                Change(old.name, DELIVERY, f"{option} {before} → {after}", verdicts, reasons, None, fresh.name)
            )
        return found

    # -- the messages the proof sends for one task -----------------------------------------------
    def messages(self, old: Task | None, fresh: Task | None) -> list[Message]:
        row = (old or fresh).name  # type: ignore[union-attr]
        made: list[Message] = []
        if old is not None:
            for call in calls(old.name, old.signature, self.policy.of(old.name, fresh and fresh.name), extra=True):
                made.append(Message(row, "control", "base", "base", call, Prediction(RUNS, queue=old.queue(self.via))))
                predicted = self._predict(call, old, self.new_tasks, self.new_queues, STRANDED, self.via)
                made += [Message(row, d, "base", "new", call, predicted) for d in (OLD_TO_NEW, QUEUED)]
        if fresh is not None:
            for call in calls(fresh.name, fresh.signature, self.policy.of(fresh.name, old and old.name)):
                made.append(Message(row, "control", "new", "new", call, Prediction(RUNS, queue=fresh.queue(self.via))))
                predicted = self._predict(call, fresh, self.old_tasks, self.old_queues, WAITING, self.via)
                made.append(Message(row, NEW_TO_OLD, "new", "base", call, predicted))
        return made

    @staticmethod
    def _predict(
        call: Call, sender: Task, tasks: Mapping[str, Task], queues: set[str], unconsumed: str, via: str
    ) -> Prediction:
        """Where the message goes decides first, then whether the worker knows the name, then the binding."""
        queue = sender.queue(via)
        if queue not in queues:
            return Prediction(unconsumed, f"`{queue}` has no consumer among these workers", None, queue)
        if call.task not in tasks:
            return Prediction(FAILS, f"NotRegistered: {call.task!r}", "NotRegistered", queue)
        return Prediction.of(bind(call, tasks[call.task].signature, sender.signature), queue)


def _worker_option_note(option: str, before: Any, after: Any) -> str:
    notes = OPTION_NOTES.get(option)
    if notes and isinstance(after, bool):
        return notes[0] if after else notes[1]
    if option == "max_retries":
        return (
            "a task retries up to this many times; a retry queued by an old worker keeps its count"
            if after is None or before is None or after >= before
            else "a retry queued by an old worker past the new limit fails at its next error instead of retrying"
        )
    return "the new worker applies it"


def _limit_reasons(option: str, before: Any, after: Any) -> dict[str, str]:
    """A time limit travels in the message when the producer sends through the task object (apply_async,
    delay), and a worker applies the message's limit when it has one, else its own."""
    carried = "an old producer's apply_async/delay"
    if before:
        old_to_new = f"{carried} puts {option}={before} in the message: the new worker applies it, not its {after}"
        queued = f"messages queued by apply_async/delay before the deploy carry {option}={before}: not {after}"
    else:
        old_to_new = f"old messages carry no {option}: the new worker applies its own {after}"
        queued = f"queued messages carry no {option}: the new worker applies its own {after}"
    if after:
        new_to_old = f"a new producer's apply_async/delay puts {option}={after} in the message: old workers apply it"
    else:
        new_to_old = f"new messages carry no {option}: old workers apply their own {before}"
    by_name = " (a by-name send_task carries none: the worker's own applies)"
    return {OLD_TO_NEW: old_to_new + by_name, NEW_TO_OLD: new_to_old + by_name, QUEUED: queued + by_name}
