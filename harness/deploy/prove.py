"""``--prove``: the static verdicts checked on a mixed fleet, with real processes and a real broker.

For every task whose messages the release changes (a signature, a name, a route), the checker's
messages (``Comparison.messages``) are sent by real producers of each version (``harness.deploy.send``,
one process per version) to real workers of the other, each run in a vhost of its own:

1. an **old worker** (the base version, consuming the base's queues) gets the new producer's messages
   (``new_to_old``), and the base producer's own (the base's control);
2. a **new worker** is started, then stopped; the base producer sends a **backlog** (``queued``); the
   new worker starts again and drains it; then the base producer sends live messages (``old_to_new``)
   and the new producer its own (the new version's control).

Each message's fate (``harness.verdict``: from Celery's events and the programs' journals) is compared
with what the checker predicted: ``runs`` is a success whose bound arguments (the journal records what
each parameter received) are the producer's; ``misbinds`` a success with a value in another parameter;
``fails`` a failure with the predicted exception type; ``waits`` / ``stranded`` a message still in the
predicted queue, which no worker consumes. A run waits until every message has ended or sits in a
queue without a consumer.

The values: a producer of a version must send what that version's code sends. Its call's *shape* (the
task name, which parameters, positional or keyword, the route) comes from its own version's signature
and the call convention (``harness.deploy.signatures``); the *values* come from ``--example
TASK=JSON`` (an object by parameter name, or a list for the base's positional parameters in order),
else the parameter's default when it is a plain JSON literal, else a string naming the parameter.
Placeholders can make a task's body fail on its own version (an ``int`` parameter given a string), and
so can what the base needs and its checkout lacks (an untracked database): each call is therefore also
sent by its own version's producer to its own version's worker (the control).

What can be contradicted is a prediction about routing, registration and binding: the journal records
whether each run's arguments bound to the function (``harness.journal.bound_arguments``), so a failure
inside the body is told from a binding failure. A failure in the body where the control failed too is
``inconclusive``, the control's own error quoted; where the control ran, it is ``body failed``: binding
safe, and the body cannot take what the other version sends (a default of ``None`` it does not handle),
a break the signatures cannot show, which fails the check as a breaking change does. A contradicted
prediction is a bug in the checker, reported as such (exit status 3).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.app_info import last_error_line
from harness.brokers.base import Broker
from harness.deploy.compare import (
    NEW_TO_OLD,
    OLD_TO_NEW,
    QUEUED,
    RENAMED,
    STRANDED,
    WAITING,
    Comparison,
    Message,
    Task,
    tasks_of,
)
from harness.deploy.signatures import EXTRA_FIELD, EXTRA_VALUE, FAILS, MISBINDS, RUNS, Call, Signature
from harness.deploy.versions import Version
from harness.errors import HarnessError
from harness.ledger import Ledger
from harness.spec import StackSpec, WorkerSpec
from harness.stack import AppStack
from harness.verdict import Verdict
from harness.waiting import WaitTimeout, eventually

CONFIRMED, CONTRADICTED, INCONCLUSIVE = "confirmed", "contradicted", "inconclusive"
# The prediction about binding held, and the body then failed where its own version's did not: a break the
# static check cannot see (a default the body cannot handle), found by the run.
BODY_FAILED = "body failed"
OLD_WORKER, NEW_WORKER = "old_worker", "new_worker"
SETTLE_S = 20.0
SEND_TIMEOUT_S = 60.0
REPR_LIMIT = 120  # the journal keeps this much of each argument's repr


# -- the values a producer puts in ---------------------------------------------------------------


@dataclass(frozen=True)
class Examples:
    """``--example TASK=JSON``: the values of a task's parameters, by name (an object) or by position in
    the base version's signature (a list)."""

    given: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, values: Iterable[str]) -> Examples:
        given: dict[str, Any] = {}
        for value in values:
            task, sep, text = value.partition("=")
            try:
                parsed = json.loads(text)
            except ValueError as exc:
                parsed, sep = exc, ""
            if not sep or not task or not isinstance(parsed, dict | list):
                raise HarnessError(
                    f"--example {value!r}: write TASK=JSON, the JSON an object by parameter name "
                    '(proj.tasks.add={"x": 1, "y": 2}) or a list in positional order (proj.tasks.add=[1, 2])'
                )
            given[task.strip()] = parsed
        return cls(given)

    def by_name(self, names: Iterable[str | None], positional: tuple[str, ...]) -> dict[str, Any]:
        for name in names:
            if name in self.given:
                found = self.given[name]
                return dict(zip(positional, found, strict=False)) if isinstance(found, list) else dict(found)
        return {}


def placeholder(name: str) -> str:
    return f"{name}:deploy-check"


def value_of(name: str, signature: Signature, given: Mapping[str, Any]) -> Any:
    if name in (EXTRA_FIELD, EXTRA_VALUE):
        return name
    if name in given:
        return given[name]
    try:
        param = signature[name]
    except KeyError:
        return placeholder(name)
    if param.has_default and param.default is not None:
        try:
            value = ast.literal_eval(param.default)
            json.dumps(value)
        except (ValueError, SyntaxError, TypeError):
            return placeholder(name)
        if value is not None:
            return value
    # An annotated number gets a number (wger's fetch_ingredient_image(pk: int) failed on a string): distinct
    # per parameter, so that a swap still shows.
    position = signature.names.index(name) if name in signature.names else 0
    typed = {"int": 101 + position, "float": 101.5 + position, "bool": True, "list": [], "dict": {}}
    return typed.get((param.annotation or "").split("[")[0], placeholder(name))


# -- what a run saw ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Observation:
    kind: str  # runs, misbinds, fails, waits (still in a queue), or the fate (lost, unsettled...)
    fate: str
    error: str | None = None  # the exception's type
    queue: str | None = None
    detail: str = ""
    bound: bool | None = None  # the arguments bound to the function (the journal's record); None: unknown
    message: str | None = None  # the exception as the worker raised it: "TypeError: unsupported operand..."

    @property
    def body_failed(self) -> bool:
        """A failure raised inside the task's body, after its arguments bound."""
        return self.kind == FAILS and self.bound is True

    def describe(self) -> str:
        if self.fate == "queued":
            return f"queued in `{self.queue}`"
        if self.body_failed:
            return f"binding safe, body failed: {self.message or self.error}"
        if self.kind == FAILS:
            return f"failed {self.error}"
        if self.kind == MISBINDS:
            return "ran with values in the wrong parameters"
        return "ran" if self.kind == RUNS else self.fate


@dataclass(frozen=True)
class Proven:
    """One message: what the checker predicted, what the run saw, and whether they agree."""

    message: Message
    task_id: str
    sent: Mapping[str, Any]  # the producer's parameter name → the value it sent
    observed: Observation
    status: str = CONFIRMED
    why: str = ""


@dataclass
class Proof:
    results: list[Proven]
    seconds: float
    broker: str

    @property
    def mixed(self) -> list[Proven]:
        return [r for r in self.results if r.message.direction != "control"]

    def body_failures(self, directions: Iterable[str] | None = None) -> list[Proven]:
        """Messages that bound as predicted and then failed in the body, where their own version's did not."""
        chosen = set(directions) if directions is not None else None
        return [r for r in self.mixed if r.status == BODY_FAILED and (chosen is None or r.message.direction in chosen)]

    def failed_controls(self) -> list[str]:
        """Each call that did not run on its own version (its producer's, on its own workers), said once: what
        the mixed rows of that task can then conclude is limited (their why says so)."""
        seen = {}
        for r in self.results:
            if r.message.direction == "control" and r.observed.kind != RUNS:
                side = "old" if r.message.producer == "base" else "new"
                seen.setdefault(f"{r.message.call.describe()} on the {side} release: {r.observed.describe()}", None)
        return list(seen)

    def contradictions(self) -> list[Proven]:
        return [r for r in self.mixed if r.status == CONTRADICTED]

    def rows(self) -> list[dict[str, Any]]:
        """One row per task and direction: the predictions, the observations, the status."""
        grouped: dict[tuple[str, str], list[Proven]] = {}
        for result in self.mixed:
            # A renamed task's row carries the name its producer sends: the old name one way, the new the other.
            grouped.setdefault((result.message.call.task, result.message.direction), []).append(result)
        rows = []
        for (task, direction), results in sorted(grouped.items(), key=lambda item: item[0]):
            statuses = {r.status for r in results}
            status = next((s for s in (CONTRADICTED, BODY_FAILED, INCONCLUSIVE) if s in statuses), CONFIRMED)
            rows.append(
                {
                    "task": task,
                    "direction": direction,
                    "predicted": _tally(_predicted_text(r.message) for r in results),
                    "observed": _tally(r.observed.describe() for r in results),
                    "status": status,
                    "why": "; ".join(dict.fromkeys(r.why for r in results if r.why)),
                }
            )
        return rows

    def to_json(self) -> dict[str, Any]:
        return {
            "broker": self.broker,
            "seconds": round(self.seconds, 1),
            "rows": self.rows(),
            "messages": [
                {
                    "task": r.message.call.task, "direction": r.message.direction, "producer": r.message.producer,
                    "worker": r.message.worker, "call": r.message.call.describe(),
                    "convention": r.message.call.convention, "style": r.message.call.style, "task_id": r.task_id,
                    "predicted": _predicted_text(r.message), "observed": r.observed.describe(), "status": r.status,
                    "why": r.why,
                }
                for r in self.results
            ],
        }  # fmt: skip


def _predicted_text(message: Message) -> str:
    predicted = message.predicted
    if predicted.kind == FAILS:
        return f"fails {predicted.error}"
    if predicted.kind in (WAITING, STRANDED):
        return f"{predicted.kind} in `{predicted.queue}`"
    return predicted.kind


def _tally(texts: Iterable[str]) -> str:
    counts: dict[str, int] = {}
    for text in texts:
        counts[text] = counts.get(text, 0) + 1
    return ", ".join(f"{text} x{n}" if n > 1 else text for text, n in counts.items())


# -- judging one message -------------------------------------------------------------------------


def _expected_repr(value: Any) -> str:
    return repr(json.loads(json.dumps(value)))[:REPR_LIMIT]


def observe(task_id: str, sent: Mapping[str, Any], verdict: Verdict) -> Observation:
    fate = next((f for f, ids in verdict.fates.items() if task_id in ids), "unknown")
    history = verdict.histories.get(task_id)
    if fate == "queued":
        return Observation("waits", fate, queue=verdict.where.get(task_id))
    started = [e for e in (history.events if history else []) if e.type == "task-started"]
    recorded = [e.fields["arguments"] for e in started if "arguments" in e.fields]
    # The journal records None where the arguments did not bind (Python raised before the body ran).
    received = next((a for a in recorded if a is not None), None)
    bound = None if not recorded else received is not None
    if fate == "failed":
        swapped = _swapped(sent, received) if received is not None else []
        return Observation(
            FAILS, fate, history.exception_type if history else None, detail="; ".join(swapped), bound=bound,
            message=history.error if history else None,
        )  # fmt: skip
    if fate != "succeeded":
        return Observation(fate, fate)
    if received is None:
        return Observation(RUNS, fate, detail="the journal did not record what each parameter received")
    expected = {name: _expected_repr(value) for name, value in sent.items()}
    if len(set(expected.values())) < len(expected):
        return Observation(RUNS, fate, detail="two parameters were sent equal values: a swap would not show")
    swapped = _swapped(sent, received)
    if swapped:
        return Observation(MISBINDS, fate, detail="; ".join(swapped), bound=True)
    return Observation(RUNS, fate, bound=True)


def _swapped(sent: Mapping[str, Any], received: Mapping[str, str]) -> list[str]:
    expected = {name: _expected_repr(value) for name, value in sent.items()}
    owner = {text: name for name, text in expected.items()}
    return [
        f"the value of `{owner[text]}` landed in `{name}`"
        for name, text in received.items()
        if name in expected and text != expected[name] and text in owner
    ]


def judge(
    message: Message, observed: Observation, control: Observation | None, examples_given: bool = False,
    defaults_taken: str = "", worker_control: Observation | None = None,
) -> tuple[str, str]:  # fmt: skip
    """Does the observation confirm the prediction? Only predictions about routing, registration and
    binding can be contradicted. A failure inside the body, after the arguments bound, is the body's: where
    the same call fails on the producer's own version too (``control``), or the worker's version cannot
    run the task here at all (``worker_control``: its own call of the task, on its own worker, failed), the
    row is inconclusive, with that control's error quoted; where both ran, the run found a break the
    signatures could not show (``BODY_FAILED``). ``defaults_taken``: the parameters the call left to the
    worker's defaults (``z=None``), for the why."""
    predicted = message.predicted
    if predicted.kind in (WAITING, STRANDED):
        if observed.kind == "waits" and observed.queue == predicted.queue:
            return CONFIRMED, ""
        return CONTRADICTED, _contradiction(message, observed)
    if predicted.kind == FAILS and predicted.error != "TypeError":  # registration: NotRegistered
        if observed.kind == FAILS and observed.error == predicted.error:
            return CONFIRMED, ""
        return CONTRADICTED, _contradiction(message, observed)
    if predicted.kind == FAILS:  # the arguments do not bind: TypeError before the body
        if observed.kind == FAILS and observed.error == "TypeError" and observed.bound is not True:
            return CONFIRMED, ""
        return CONTRADICTED, _contradiction(message, observed)
    # runs or misbinds: the arguments bind (to the right parameters, or not)
    if observed.kind == FAILS and observed.bound is False:
        return CONTRADICTED, _contradiction(message, observed)
    if observed.kind == FAILS:
        if worker_control is not None and worker_control.kind != RUNS:
            side = "old" if message.worker == "base" else "new"
            return INCONCLUSIVE, f"the {side} release cannot run this task here: {_failure(worker_control)}"
        if control is not None and control.kind != RUNS:
            side = "old" if message.producer == "base" else "new"
            why = f"the same call fails on the {side} release's own workers too: {_failure(control)}"
            return INCONCLUSIVE, why + ("" if examples_given else "; give --example values")
        if observed.bound is None:
            return INCONCLUSIVE, f"it failed ({observed.describe()}) and the journal did not record whether it bound"
        if predicted.kind == MISBINDS and observed.detail:
            return CONFIRMED, f"{observed.detail}; then the body failed: {observed.message or observed.error}"
        taken = f"; {defaults_taken}: the body must handle it" if defaults_taken else ""
        return BODY_FAILED, f"binding safe, body failed: {observed.message or observed.error}{taken}"
    if observed.detail and observed.kind == RUNS:
        return INCONCLUSIVE, observed.detail
    if observed.kind == predicted.kind:
        return CONFIRMED, ""
    return CONTRADICTED, _contradiction(message, observed)


def defaults_taken(call: Call, worker: Signature) -> str:
    """The worker's parameters a call leaves to their defaults: "`z` was not sent and took its default None"."""
    try:
        bound = worker.inspect().bind(*call.args, **dict.fromkeys(call.kwargs))
    except TypeError:
        return ""
    left = [p for p in worker.params if p.named and p.has_default and p.name not in bound.arguments]
    return ", ".join(f"`{p.name}` was not sent and took its default {p.default}" for p in left)


def _failure(observed: Observation) -> str:
    return observed.message or observed.describe()


def _contradiction(message: Message, observed: Observation) -> str:
    predicted = message.predicted
    return f"predicted {_predicted_text(message)} ({predicted.reason}), the run saw {observed.describe()}"


# -- the runs ------------------------------------------------------------------------------------


class VersionProducer:
    """One version's producer: a process of its own (``harness.deploy.send``) per batch of messages."""

    def __init__(
        self, version: Version, examples: Examples, stack: AppStack, program: str, via: str,
        aliases: Mapping[str, str] | None = None,
    ) -> None:  # fmt: skip
        self.version, self.examples, self.stack, self.program, self.via = version, examples, stack, program, via
        self.aliases = dict(aliases or {})  # a renamed task's other name: its --example serves both
        self.env = {**os.environ, **stack.spec.env, **version.environment()}
        self.tasks: dict[str, Task] = tasks_of(version.info)
        self.sent: dict[str, dict[str, Any]] = {}  # task id → parameter → value

    def values(self, message: Message) -> tuple[list[Any], dict[str, Any], dict[str, Any]]:
        task = self.tasks[message.call.task]
        signature = task.signature
        names = (message.task, message.call.task, self.aliases.get(message.call.task))
        given = self.examples.by_name(names, signature.positional_names)
        args = [value_of(name, signature, given) for name in message.call.args]
        kwargs = {name: value_of(name, signature, given) for name in message.call.kwargs}
        sent = {n: v for n, v in zip(message.call.args, args, strict=True) if n != EXTRA_VALUE}
        sent.update({n: v for n, v in kwargs.items() if n != EXTRA_FIELD})
        return args, kwargs, sent

    def send(self, messages: list[Message]) -> list[str]:
        batch, ids = [], []
        for message in messages:
            task_id = str(uuid.uuid4())
            args, kwargs, sent = self.values(message)
            self.sent[task_id] = sent
            batch.append({"id": task_id, "task": message.call.task, "args": args, "kwargs": kwargs})
            ids.append(task_id)
        if not batch:
            return ids
        report = Path(tempfile.mkdtemp(prefix="send-", dir=self.stack.workdir)) / "sent.jsonl"
        command = [
            sys.executable, "-m", "harness.deploy.send", "--celery-app", self.version.celery_app,
            "--path", self.version.root, "--broker-url", self.stack.vhost.url,
            "--journal-dir", str(self.stack.journal_dir), "--program", self.program, "--via", self.via,
            "--report", str(report),
        ]  # fmt: skip
        try:
            done = subprocess.run(
                command, input=json.dumps(batch), capture_output=True, text=True, timeout=SEND_TIMEOUT_S,
                cwd=self.version.root, env=self.env,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise HarnessError(f"the {self.program} did not send its messages within {SEND_TIMEOUT_S:.0f}s") from None
        results = {}
        lines = report.read_text().splitlines() if report.exists() else []
        for line in lines:
            result = json.loads(line)
            results[result["id"]] = result
        if done.returncode != 0 and not results:
            why = last_error_line(done.stderr) or f"exit status {done.returncode}"
            raise HarnessError(f"the {self.program} ({self.version.label}) could not send: {why}")
        for task_id in ids:
            result = results.get(task_id, {"ok": False, "error": "the producer ended before sending it"})
            self.stack.ledger.record_send(task_id, ok=result["ok"], error=result.get("error"))
        return ids


@contextmanager
def fleet(
    broker: Broker, version: Version, worker: str, workdir: Path, queues: tuple[str, ...], env: Mapping[str, str]
) -> Iterator[AppStack]:
    """One worker of ``version`` consuming its queues, in a vhost of its own, with a ledger listening."""
    with ExitStack() as stack:
        vhost = broker.open_space(f"deploy-check-{worker}", queues)
        stack.callback(vhost.close)
        folder = Path(tempfile.mkdtemp(prefix="deploy-", dir=workdir))
        ledger = Ledger(vhost.url, folder / "journal").start()
        stack.callback(ledger.close)
        spec = StackSpec(
            celery_app=version.celery_app,
            workers=(WorkerSpec(worker, queues=version.queues, hostname=f"{worker}@deploy-check"),),
            cwd=version.root,
            env={**env, **version.environment()},
        )
        app = AppStack(spec, vhost, ledger, folder)
        stack.callback(app.close)
        app.launch()
        wait_consumed(app, version.queues)
        yield app


def wait_consumed(stack: AppStack, queues: Iterable[str]) -> None:
    if not stack.vhost.counts_consumers:  # Redis: the workers' readiness (Celery's worker_ready) is the proof
        return
    for queue in queues:
        stack.vhost.wait_for_consumers(queue, 1, timeout=10)


def settle(stack: AppStack, ids: list[str], timeout: float) -> None:
    """Wait until each message has ended, or waits in a queue that no worker consumes (where it would
    wait for ever); after ``timeout`` the verdict says what is left (unsettled, lost)."""

    def open_ids() -> set[str]:
        histories = stack.ledger.histories()
        left = {i for i in ids if i not in histories or histories[i].terminal is None}
        if not left:
            return left
        for queue in stack.vhost.queue_names():
            depth = stack.vhost.depth(queue)
            unconsumed = not depth.consumers if depth.consumers is not None else not stack.consumers_of(queue)
            if depth.ready and unconsumed:
                left -= set(stack.vhost.peek_task_ids(queue))
        return left

    try:
        eventually(
            open_ids, until=lambda left: not left, timeout=timeout,
            what="every message to end, or to wait in a queue no worker consumes",
            progress=lambda left: f"{len(ids) - len(left)}/{len(ids)} settled",
        )  # fmt: skip
    except WaitTimeout:
        pass  # the verdict names what did not settle


def prove(
    comparison: Comparison,
    base: Version,
    new: Version,
    broker: Broker,
    workdir: Path,
    examples: Examples | None = None,
    via: str = "apply_async",
    env: Mapping[str, str] | None = None,
) -> Proof:
    examples = examples or Examples()
    env = env or {}
    started = time.monotonic()
    queues = tuple(sorted({*base.queues, *new.queues}))
    messages = comparison.messages
    observed: dict[int, tuple[str, Mapping[str, Any], Observation]] = {}

    def record(stack: AppStack, sent: dict[int, str], producers: Iterable[VersionProducer]) -> None:
        settle(stack, list(sent.values()), SETTLE_S + 0.2 * len(sent))
        verdict = stack.verdict()
        values = {task_id: v for p in producers for task_id, v in p.sent.items()}
        for index, task_id in sent.items():
            observed[index] = (task_id, values[task_id], observe(task_id, values[task_id], verdict))

    def send(producer: VersionProducer, chosen: list[int]) -> dict[int, str]:
        return dict(zip(chosen, producer.send([messages[i] for i in chosen]), strict=True))

    def pick(direction: str, producer: str) -> list[int]:
        return [i for i, m in enumerate(messages) if m.direction == direction and m.producer == producer]

    aliases = {c.task: c.new_task for c in comparison.changes if c.kind == RENAMED and c.new_task}
    aliases |= {new_name: old_name for old_name, new_name in aliases.items()}
    with fleet(broker, base, OLD_WORKER, workdir, queues, env) as stack:
        old_producer = VersionProducer(base, examples, stack, "old-producer", via, aliases)
        new_producer = VersionProducer(new, examples, stack, "new-producer", via, aliases)
        sent = send(new_producer, pick(NEW_TO_OLD, "new")) | send(old_producer, pick("control", "base"))
        record(stack, sent, (old_producer, new_producer))

    with fleet(broker, new, NEW_WORKER, workdir, queues, env) as stack:
        old_producer = VersionProducer(base, examples, stack, "old-producer", via, aliases)
        new_producer = VersionProducer(new, examples, stack, "new-producer", via, aliases)
        stack.stop(NEW_WORKER)
        backlog = send(old_producer, pick(QUEUED, "base"))
        stack.start(NEW_WORKER)
        wait_consumed(stack, new.queues)
        sent = backlog | send(old_producer, pick(OLD_TO_NEW, "base")) | send(new_producer, pick("control", "new"))
        record(stack, sent, (old_producer, new_producer))

    controls = {(m.producer, m.call.key()): observed[i][2] for i, m in enumerate(messages) if m.direction == "control"}
    results = []
    for index, message in enumerate(messages):
        task_id, values, seen = observed[index]
        if message.direction == "control":
            results.append(Proven(message, task_id, values, seen, CONFIRMED if seen.kind == RUNS else INCONCLUSIVE))
            continue
        given = any(name in examples.given for name in (message.task, message.call.task))
        worker = tasks_of((base if message.worker == "base" else new).info).get(message.call.task)
        taken = defaults_taken(message.call, worker.signature) if worker is not None else ""
        own = [
            observed[i][2]
            for i, m in enumerate(messages)
            if m.direction == "control" and m.producer == message.worker and m.call.task == message.call.task
        ]
        worker_control = next((o for o in own if o.kind == RUNS), own[0] if own else None)
        status, why = judge(
            message, seen, controls.get((message.producer, message.call.key())), given, taken, worker_control
        )
        results.append(Proven(message, task_id, values, seen, status, why))
    return Proof(results, time.monotonic() - started, broker.kind)
