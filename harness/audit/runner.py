"""The audit's side of a scenario (the ``audit`` fixture): send probes, keep the worker busy, wait until
nothing moves any more, and record each failure's row.

The audit does not know the outcome in advance, so its waits end on what can be observed: every task
has ended, or nothing has moved for ``QUIET_S`` while no live process holds a task (a pool process that
started it is alive, or a running worker received it) and no message is ready in any queue. The worker
is then stopped, so what is neither done nor queued is lost for good, and the verdict is read.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from harness.audit.failures import BY_KEY, Failure, facts
from harness.audit.plan import AuditPlan
from harness.audit.results import AuditRecorder, Row, lever_dict
from harness.ledger import Ledger
from harness.periodic import PERIODIC_FATES, BeatSend, PeriodicRun, PeriodicVerdict
from harness.sent import Sent, TaskIds, id_of, ids_of
from harness.space import ScenarioSpace
from harness.stack import AppStack
from harness.supervisor import STOPPED_STATES
from harness.verdict import FATES, TaskHistory, Verdict
from harness.waiting import WaitTimeout, eventually

QUIET_S = 0.5  # a requeued message is redelivered to an idle, connected worker within milliseconds
# The waits beyond the probes' work: a warm shutdown, and the tasks' ends after a fault (a probe cut short runs
# again, for --audit-work seconds). Each grows with the work (``Audit.outlasting``).
SHUTDOWN_S = 30.0
SETTLE_S = 30.0
HELD_CAP = 16  # tasks sent to fill a worker whose prefetch is unlimited, or very large
INSTANT = 0.0
PRODUCER_STEPS = ("task-sent", "task-published")


def prefetched_behind(long: TaskHistory, behind: TaskHistory) -> bool:
    """Whether the worker took ``behind`` while ``long``'s first run went on and did not start it: its first
    receipt came before that run ended (its first end, or its second start after a redelivery) and its
    first start did not."""

    def first(history: TaskHistory, *types: str, nth: int = 1) -> float:
        times = sorted(e.timestamp for e in history.events if e.type in types)
        return times[nth - 1] if len(times) >= nth else float("inf")

    run_ended = min(first(long, "task-succeeded", "task-failed"), first(long, "task-started", nth=2))
    return first(behind, "task-received") < run_ended <= first(behind, "task-started")


def is_held(history: TaskHistory, worker_up: bool, pool_process_alive: bool) -> bool:
    """Whether a live process holds a task that has not ended: its last step is a start in a pool process
    that is alive, or a receipt by the worker while it runs (prefetched, waiting for a pool process or its
    rate limit). The producer's steps say nothing of who holds it, and its sent event is often stamped
    after the worker received the message: they are left out."""
    steps = [e.type for e in history.events if e.type not in PRODUCER_STEPS]
    if not steps or history.terminal is not None:
        return False
    if steps[-1] == "task-received":
        return worker_up
    return steps[-1] in ("task-started", "task-postrun") and pool_process_alive


class Audit:
    def __init__(
        self,
        plan: AuditPlan,
        stack: AppStack,
        ledger: Ledger,
        vhost: ScenarioSpace,
        recorder: AuditRecorder,
        nodeid: str = "",
        failures: list[Failure] | None = None,
    ) -> None:
        self.plan = plan
        self.stack = stack
        self.ledger = ledger
        self.vhost = vhost
        self.recorder = recorder
        self.nodeid = nodeid
        self.notes: dict[str, list[str]] = {}
        self.broker: dict[str, Any] = {}
        self.observed: dict[str, Any] = {}  # facts the scenario saw (e.g. prefetched_behind), with the settings'
        # The scenario's failures as the audit runs them on this broker family (None: every one, as defined).
        self.failures = {f.key: f for f in failures} if failures is not None else None

    @property
    def transport(self) -> str:
        return self.vhost.transport

    def failure(self, key: str) -> Failure | None:
        """The failure as it runs on this family; None if it does not apply here (its row says why already)."""
        if self.failures is None:
            return BY_KEY[key].on_transport(self.transport) if BY_KEY[key].why_not(self.transport) is None else None
        return self.failures.get(key)

    # -- what runs -----------------------------------------------------------------------------
    @property
    def worker(self) -> str:
        return self.plan.worker.name

    @property
    def queue(self) -> str:
        return self.plan.queue

    def config(self) -> dict[str, Any]:
        return self.ledger.program_config(self.worker) or {}

    def task_options(self) -> dict[str, Any]:
        return (self.config().get("tasks") or {}).get(self.plan.task) or {}

    @property
    def work_s(self) -> float:
        """How long a probe works when a fault must land mid-task: ``--audit-work``, under its time limits."""
        return self.capped(self.plan.work_s)

    def capped(self, seconds: float) -> float:
        """``seconds``, kept under the task's time limits so that the limits do not end a probe first."""
        options = self.task_options()
        limits = [float(options[k]) for k in ("soft_time_limit", "time_limit") if options.get(k)]
        return min([seconds, *(0.8 * limit for limit in limits)])

    def outlasting(self, seconds: float) -> float:
        """A bound for a wait that must outlast a probe's work: ``seconds`` beyond it (``--audit-work 30`` made a
        30 s warm-shutdown wait too short)."""
        return seconds + self.work_s

    @property
    def concurrency(self) -> int:
        """The worker's pool size as it runs (its journal's worker-online: -c, else the app's worker_concurrency,
        else Celery's default); the stack's figure if the worker did not say."""
        entries = self.ledger.journal.entries() if self.ledger.journal is not None else []
        said = [e.fields.get("concurrency") for e in entries if e.type == "worker-online" and e.program == self.worker]
        if said and isinstance(said[-1], int):
            return said[-1]
        return self.stack.spec.concurrency_of(self.plan.worker) or 1

    @property
    def pool(self) -> str:
        """The worker's pool as it runs (its journal's worker-online: -P, else the app's worker_pool, else prefork)."""
        return self.stack.pool_of(self.worker)

    def held(self) -> int:
        """How many tasks the worker takes at once: concurrency x prefetch multiplier (Celery's prefetch)."""
        multiplier = int((self.config().get("settings") or {}).get("worker_prefetch_multiplier") or 0)
        concurrency = self.concurrency
        return min(HELD_CAP, concurrency * multiplier) if multiplier > 0 else min(HELD_CAP, 4 * concurrency)

    # -- sending -------------------------------------------------------------------------------
    def send(self, seconds: float = INSTANT, hold: Path | None = None) -> str:
        sent = self.stack.producer.send(seconds, str(hold) if hold else None)
        if not sent.ok:
            raise AssertionError(f"the broker refused a send the audit needed: {sent.error}")
        return sent.task_id

    def send_many(self, count: int, seconds: float = INSTANT) -> list[Sent]:
        return self.stack.producer.send_many(count, seconds)

    def release_file(self, name: str) -> Path:
        """A path a held probe waits for (``send(..., hold=path)``); ``path.touch()`` releases it."""
        return self.stack.workdir / f"release-{name}"

    def sends_in_background(self, count: int) -> BackgroundSends:
        """``count`` sends at once, in threads, for sends that may block (the broker is down)."""
        return BackgroundSends(self, count).start()

    def busy(self, timeout: float = 10.0) -> tuple[list[str], list[str]]:
        """Fill the worker as its prefetch allows: one long task per pool process, running, and short ones
        prefetched behind them. Returns every id and the running ones."""
        held = self.held()
        running_count = min(self.concurrency, held)
        long = [self.send(self.work_s) for _ in range(running_count)]
        ids = long + [self.send() for _ in range(held - running_count)]
        self.ledger.wait_received(ids, timeout=timeout)
        try:
            eventually(
                lambda: self.running(long), until=lambda found: len(found) == len(long), timeout=timeout,
                what=f"{len(long)} long task(s) to be running",
            )  # fmt: skip
        except WaitTimeout:
            if any(self.ledger.history(i).terminal for i in long):
                pytest.skip(f"{self.plan.task} ended before a fault could land mid-task; audit it with the probe")
            raise
        return ids, long

    # -- observing -----------------------------------------------------------------------------
    def running(self, ids: TaskIds) -> list[str]:
        """Tasks that started and have not ended (per the ledger)."""
        ids = ids_of(ids, "audit.running")
        histories = self.ledger.histories()
        return [i for i in ids if i in histories and histories[i].count("task-started") and not histories[i].terminal]

    def in_hand(self, ids: TaskIds) -> list[str]:
        """Tasks a live process holds: started in a pool process that is still alive, or last received by
        the worker while it runs (prefetched, waiting for a pool process or its rate limit)."""
        ids = ids_of(ids, "audit.in_hand")
        histories = self.ledger.histories()
        entries = self.ledger.journal.entries() if self.ledger.journal else []
        started_by = {e.uuid: e.pid for e in entries if e.type == "task-started"}  # the latest start's process
        worker_up = self.stack.state(self.worker) == "RUNNING"
        unacked = self.unacked_ids()
        return [
            task_id
            for task_id in ids
            if task_id in histories
            and is_held(histories[task_id], worker_up and (unacked is None or task_id in unacked),
                        psutil.pid_exists(started_by.get(task_id, -1)))
        ]  # fmt: skip

    def unacked_ids(self) -> set[str] | None:
        """The tasks whose message the broker holds unacknowledged, where it can tell which (Redis: its ``unacked``
        hash); None where it cannot (RabbitMQ), or cannot now (Redis restarting). A task a worker received whose
        message is not there is held by no one: a restarted Redis without persistence forgot it, and the worker
        dropped what it had prefetched when its connection died."""
        held = getattr(self.vhost, "held", None)
        if held is None:
            return None
        try:
            return set(held())
        except Exception:  # the server restarting: not known
            return None

    def ready(self) -> int | None:
        """Messages ready in the vhost's queues (None while the broker cannot tell)."""
        try:
            return sum(self.vhost.depth(queue).ready for queue in self.vhost.queue_names())
        except Exception:  # the broker restarting: not quiet
            return None

    def settle(self, ids: TaskIds, timeout: float | None = None) -> None:
        """Wait until every task ended, or nothing moved for ``QUIET_S`` with no task held by a live process
        and no message ready (or the worker exited by itself, leaving them queued); by default for ``SETTLE_S``
        beyond a probe's work (one cut short runs again)."""
        ids = ids_of(ids, "audit.settle")
        timeout = self.outlasting(SETTLE_S) if timeout is None else timeout
        last: dict[str, Any] = {"state": None, "since": time.monotonic()}

        def observe() -> tuple[int, int, bool]:
            ended = self.ledger.settled(ids)
            state = (ended, self.ledger.event_count(ids), len(self.in_hand(ids)), self.ready())
            if state != last["state"]:
                last.update(state=state, since=time.monotonic())
            # A ready message moves only while the worker runs: one that exited by itself leaves it queued.
            waits = state[3] == 0 or self.exited()
            still = state[2] == 0 and waits and time.monotonic() - last["since"] >= QUIET_S
            return ended, len(ids), still

        eventually(
            observe, until=lambda seen: seen[0] == seen[1] or seen[2], timeout=timeout,
            what=f"all {len(ids)} tasks to end, or nothing to move for {QUIET_S}s",
            progress=lambda seen: f"{seen[0]}/{seen[1]} ended",
        )  # fmt: skip

    def waiting(self, count: int, timeout: float = 5.0) -> int:
        """Wait until ``count`` messages are ready in the audited queue; return how many are (fewer if the
        queue drops or caps them)."""
        try:
            return eventually(
                lambda: self.vhost.ready(self.queue), until=lambda n: n >= count, timeout=timeout,
                what=f"{count} ready messages in {self.queue}",
            )  # fmt: skip
        except WaitTimeout:
            return self.vhost.ready(self.queue)

    def first_end(self, task: str | Sent) -> float:
        """When the task's first run ended (its first success or failure; infinity if it never ended)."""
        events = self.ledger.history(id_of(task, "audit.first_end")).events
        ends = [e.timestamp for e in events if e.type in ("task-succeeded", "task-failed")]
        return min(ends, default=float("inf"))

    def finish(self, ids: TaskIds) -> None:
        """Stop the worker if a task has not ended: with no consumer left, what is neither done nor queued is
        lost for good, and a prefetched message goes back to its queue. When every task ended there is
        nothing left to judge, and a warm shutdown (a second or two) is saved."""
        sends = self.ledger.sends()
        ids = ids_of(ids, "audit.finish")
        delivered = [i for i in ids if i not in sends or sends[i].ok]  # an unsent task's fate needs no queue
        if self.ledger.settled(delivered) < len(delivered) and not self.exited():
            self.stack.stop(self.worker)

    def shut_down(self, signal: str, timeout: float | None = None) -> None:
        """``kill -<signal> <worker pid>``, then wait until the worker exits (a warm shutdown finishes the running
        probe first: by default ``SHUTDOWN_S`` beyond its work); if it does not, say whether it ever began its
        shutdown (the journal's ``worker-stopping``) and how soon after its start it was sent."""
        timeout = self.outlasting(SHUTDOWN_S) if timeout is None else timeout
        sent = time.time()
        self.stack.signal(self.worker, signal)
        try:
            self.stack.wait_exited(self.worker, timeout=timeout)
        except WaitTimeout:
            steps = [
                e for e in (self.ledger.journal.entries() if self.ledger.journal else []) if e.program == self.worker
            ]
            began = [e.t - sent for e in steps if e.type == "worker-stopping" and e.t >= sent]
            online = max((e.t for e in steps if e.type == "worker-online" and e.t <= sent), default=sent)
            how = f"it began its shutdown {began[0]:.1f}s after the signal" if began else "it never began a shutdown"
            raise AssertionError(
                f"the worker did not exit within {timeout:.0f}s of SIG{signal}, sent {sent - online:.3f}s after it was "
                f"ready: {how}"
            ) from None

    def exited(self) -> bool:
        return self.stack.state(self.worker) in STOPPED_STATES

    def why_exited(self) -> str:
        """What the worker said as it exited (its state, exit status and the error line of its stderr)."""
        lines = [line for line in self.stack.not_running() if line.startswith(f"{self.worker} ")]
        return lines[0] if lines else f"{self.worker} is {self.stack.state(self.worker)}"

    def facts(self) -> dict[str, Any]:
        """The facts the rows are decided by, as the worker ran the app (before any observation)."""
        worker = {"concurrency": self.concurrency, "pool": self.pool}
        return facts(self.config(), self.plan.task, worker, self.queue, None, self.broker)

    def note(self, failure: str, text: str) -> None:
        self.notes.setdefault(failure, []).append(text)

    # -- recording -----------------------------------------------------------------------------
    def queue_info(self) -> dict[str, Any] | None:
        management = getattr(self.vhost.broker, "management", None)  # RabbitMQ only
        if management is None or not self.vhost.isolated:
            return None
        try:
            return management.queue(self.vhost.name, self.queue)
        except Exception:  # the management API is optional to the row
            return None

    def record(self, verdict: Verdict, **groups: TaskIds) -> None:
        """One row per failure (``failure_key=task ids``); fails the scenario if a row's fates exceed what
        the team accepts (``--audit-expect``)."""
        config = self.config()
        worker = {"concurrency": self.concurrency, "pool": self.pool}
        known = {**facts(config, self.plan.task, worker, self.queue, self.queue_info(), self.broker), **self.observed}
        fate_of = {task_id: fate for fate, ids in verdict.fates.items() for task_id in ids}
        breaches = []
        for key, given in groups.items():
            ids = ids_of(given, f"audit.record({key}=...)")
            failure = self.failure(key)
            if failure is None:  # not applicable on this broker family: its row says so already
                continue
            for note in failure.noted(known):
                self.note(key, note)
            counts = {fate: n for fate in FATES if (n := sum(1 for i in ids if fate_of.get(i) == fate))}
            if counts.get("queued"):
                where = sorted({verdict.where.get(i, "a queue") for i in ids if fate_of.get(i) == "queued"})
                waiting = f"{counts['queued']} still waiting in {', '.join(where)}"
                self.note(key, f"{waiting} when the audit stopped the worker")
            row = Row.of(
                key, tasks=len(ids), fates=counts, decided_by=failure.deciding(known),
                lever=lever_dict(failure.lever(known), known), same_as=failure.same_as(known),
                notes=self.notes.get(key, []), exceeded=self.plan.expectations.exceeded(key, counts),
                nodeid=self.nodeid, differs=failure.differs,
            )  # fmt: skip
            self.recorder.add(row)
            if row.exceeded:
                breaches.append(f"{row.title}: {', '.join(row.exceeded)}")
        self.recorder.meta.update(self.meta(config))
        self._fail_on(breaches)

    def _fail_on(self, breaches: list[str]) -> None:
        if breaches:
            accepted = self.plan.expectations.describe()
            pytest.fail(f"the audit accepts {accepted}; " + "; ".join(breaches), pytrace=False)

    # -- periodic tasks (the beat rows) ----------------------------------------------------------
    def beat_sends(self, count: int, beat: str | None = None, since: float = 0.0, timeout: float = 30.0
                   ) -> dict[str, list[BeatSend]]:  # fmt: skip
        """Wait until the beats (or ``beat``) have sent ``count`` runs of every audited entry since ``since``;
        returns entry -> its first ``count`` sends, in order."""
        names = [entry.name for entry in self.plan.beat.entries] if self.plan.beat else []
        return {name: self.ledger.wait_beat_sends(count, beat, since, timeout, entry=name) for name in names}

    def record_periodic(self, periodic: PeriodicVerdict, **groups: list[PeriodicRun]) -> None:
        """One beat row per failure (``failure_key=runs``, from ``verdict.periodic``): the runs' periodic fates
        (ran, stale, not_run, duplicated, missed), the app's schedule settings that decided them, and the notes
        on how its time was compressed; fails the scenario past what the team accepts, as ``record`` does."""
        beat = self.plan.beat
        known = {**self.facts(), **(beat.facts() if beat is not None else {}), **self.observed}
        breaches = []
        for key, runs in groups.items():
            failure = self.failure(key)
            if failure is None:
                continue
            counts = {fate: n for fate in PERIODIC_FATES if (n := sum(1 for r in runs if r.fate == fate))}
            reasons = sorted({r.reason.split(":")[0] for r in runs if r.fate == "not_run" and r.reason})
            if reasons:
                self.note(key, f"not run: {'; '.join(reasons)}")
            notes = [*(beat.notes() if beat is not None else []), *self.notes.get(key, [])]
            row = Row.of(
                key, tasks=len(runs), fates=counts, decided_by=failure.deciding(known),
                lever=lever_dict(failure.lever(known), known), same_as=failure.same_as(known), notes=notes,
                exceeded=self.plan.expectations.exceeded(key, counts), nodeid=self.nodeid, differs=failure.differs,
            )  # fmt: skip
            self.recorder.add(row)
            if row.exceeded:
                breaches.append(f"{row.title}: {', '.join(row.exceeded)}")
        self.recorder.meta.update(self.meta(self.config()))
        self._fail_on(breaches)

    def meta(self, config: dict[str, Any]) -> dict[str, Any]:
        worker = self.plan.worker
        settings = config.get("settings")
        if settings is not None and any(
            "broker_transport_options" in f.settings for f in (self.failures or {}).values()
        ):
            # A row's own transport options (Redis's short visibility_timeout) are said in its notes; the audit's
            # settings are the app's, so that every row's run describes the same audit.
            settings = {**settings, "broker_transport_options": self.plan.transport_options}
        redis = {"redis_persistence": self.plan.redis_persistence} if self.transport == "redis" else {}
        return {
            **redis,
            "transport": self.transport,
            **self.plan.as_dict(),
            "describe": self.plan.describe(),
            "worker": f"{worker.name} (-Q {','.join(worker.queues or ())} -c {self.concurrency} -P {self.pool}; "
            f"concurrency from {self.plan.concurrency_from}; pool from {self.plan.pool_from})",
            "concurrency": self.concurrency,
            "pool": self.pool,
            "settings": settings,
            "task_options": (config.get("tasks") or {}).get(self.plan.task),
            "broker": {**self.recorder.meta.get("broker", {}), **self.broker, "kind": self.vhost.broker.kind},
        }


class BackgroundSends:
    """Sends at once, each in a thread of its own on a connection of its own (users click at the same
    time); the scenario waits for them with a bound, and says so if they are still blocked."""

    def __init__(self, audit: Audit, count: int) -> None:
        self.producer = audit.stack.producer
        self.count = count
        self.sent: list[Sent] = []
        self.errors: list[BaseException] = []
        self.started = time.monotonic()
        self._threads = [
            threading.Thread(target=self._send, name=f"harness-audit-send-{n}", daemon=True) for n in range(count)
        ]

    def start(self) -> BackgroundSends:
        for thread in self._threads:
            thread.start()
        return self

    def _send(self) -> None:
        try:
            connection = self.producer.connection()
            try:
                self.sent.append(self.producer.send(INSTANT, connection=connection))
            finally:
                connection.release()
        except BaseException as exc:  # reported by result(), in the scenario's thread
            self.errors.append(exc)

    def wait(self, timeout: float) -> bool:
        """Whether every send returned within ``timeout`` seconds (from the start)."""
        for thread in self._threads:
            thread.join(max(0.0, timeout - (time.monotonic() - self.started)))
        return not any(thread.is_alive() for thread in self._threads)

    def result(self, timeout: float) -> list[Sent]:
        if not self.wait(timeout):
            raise AssertionError(f"{self.count} sends had not all returned {timeout:.0f}s after they began")
        if self.errors:
            raise self.errors[0]
        return self.sent
