"""The task ledger: every task's history, from two witnesses, and what the scenario itself sent.

- Celery's events, received through the broker (``harness.events``), listening before anything is sent;
- the journal each program writes (``harness.journal``), which needs no broker.

Histories merge both (``harness.evidence``); each step says which witness saw it. The ledger follows
the broker's faults (``observe``): while the broker is down the events witness may miss steps, and
after it is back the fault call returns only once the ledger listens again. The verdict flags tasks
whose life overlaps a span that neither witness saw. Scenarios record what they sent
(``record_send``, done by the producers): the verdict is judged over those ids.
"""

from __future__ import annotations

import bisect
import itertools
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from harness import evidence
from harness.events import EventWitness
from harness.faults import BROKER_DOWN, BROKER_UP, Fault
from harness.journal import Entry, JournalReader
from harness.periodic import BeatSend, ScheduleEntry
from harness.sent import Sent, TaskIds, id_of, ids_of
from harness.verdict import Send, Span, TaskEvent, TaskHistory, Verdict, judge
from harness.waiting import eventually, never

# Events published just before the broker stopped may still have been on their way.
IN_FLIGHT_MARGIN_S = 0.5


@dataclass(frozen=True)
class WorkerEvent:
    type: str  # worker-online, worker-heartbeat, worker-offline
    hostname: str
    timestamp: float
    received_at: float
    fields: dict = field(default_factory=dict, compare=False, repr=False)


class Ledger:
    """The ``ledger`` fixture: every task's history from both witnesses, what the scenario sent, the waits on
    them, and the verdict's raw material. ``journal`` is the journal reader (None without a journal)."""

    def __init__(self, amqp_url: str, journal_dir: str | Path | None = None, reconnect_gate=None) -> None:
        self.amqp_url = amqp_url
        self._lock = threading.Lock()
        self._tasks: dict[str, TaskHistory] = {}
        self._workers: list[WorkerEvent] = []
        self._sends: dict[str, Send] = {}
        self._broker_down: list[Span] = []
        self._down_since: float | None = None
        self.events = EventWitness(amqp_url, self._on_event, reconnect_gate)
        self.journal = JournalReader(journal_dir) if journal_dir is not None else None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> Ledger:
        """Start listening to Celery's events (returning once it listens); returns the ledger. The fixture does
        this before anything is sent."""
        self.events.start(timeout)
        return self

    def close(self) -> None:
        """Stop listening to Celery's events; returns None. The fixture does this."""
        self.events.close()

    def wait_listening_since(self, since: float, timeout: float = 30.0) -> None:
        """Wait until the events witness has listened since ``since`` (after a reconnect); returns None."""
        self.events.wait_listening_since(since, timeout)

    def observe(self, fault: Fault) -> None:
        """A broker fault (from the broker's fault bus): note the blind span, and once the broker is back,
        return (None) only when the events witness listens again, so no later event is missed."""
        if isinstance(fault, BROKER_DOWN):
            self._down_since = fault.at
        elif isinstance(fault, BROKER_UP) and self._down_since is not None:
            # Listening again since the broker went down: the witness may have reconnected before the
            # fault call returned (and this fault was made), so not "since the broker was back".
            self.events.wait_listening_since(self._down_since)
            span = Span(
                self._down_since - IN_FLIGHT_MARGIN_S, max(time.time(), self.events.listening_since),
                "the broker was down: Celery events in flight or buffered by a worker may be lost",
            )  # fmt: skip
            with self._lock:
                self._broker_down.append(span)
            self._down_since = None

    # -- recording -------------------------------------------------------------------------
    def _on_event(self, event: dict) -> None:
        kind = event.get("type", "")
        received_at = event.get("local_received", time.time())
        timestamp = float(event.get("timestamp", received_at))
        with self._lock:
            if kind.startswith("task-"):
                task_id = event.get("uuid", "")
                history = self._tasks.setdefault(task_id, TaskHistory(task_id))
                # Events from producers and workers can arrive out of order: keep them in time order.
                bisect.insort(
                    history.events,
                    TaskEvent(kind, task_id, event.get("hostname", "?"), timestamp, received_at, event),
                    key=lambda e: e.timestamp,
                )
            elif kind.startswith("worker-"):
                self._workers.append(WorkerEvent(kind, event.get("hostname", "?"), timestamp, received_at, event))

    def record_send(self, task_id: str, ok: bool = True, error: str | None = None) -> Send:
        """Record that the scenario sent ``task_id`` (``ok``: the send reported success); returns the ``Send``.
        The producers do this; a scenario that publishes by hand does it too, so the verdict judges that task."""
        send = Send(task_id, ok, time.time(), error)
        with self._lock:
            self._sends[task_id] = send
        return send

    # -- reading ---------------------------------------------------------------------------
    @property
    def sent_ids(self) -> list[str]:
        """The ids of every task the scenario sent, in the order sent."""
        with self._lock:
            return list(self._sends)

    def sends(self) -> dict[str, Send]:
        """Every send the scenario recorded: task id -> ``Send`` (ok, when, error)."""
        with self._lock:
            return dict(self._sends)

    def event_histories(self) -> dict[str, TaskHistory]:
        """What the events witness alone saw: task id -> ``TaskHistory``."""
        with self._lock:
            return {i: TaskHistory(i, list(h.events)) for i, h in self._tasks.items()}

    def histories(self) -> dict[str, TaskHistory]:
        """Every task's history, from both witnesses: task id -> ``TaskHistory``."""
        seen = self.event_histories()
        if self.journal is None:
            return seen
        return evidence.merge(seen, self.journal.entries())

    def history(self, task: str | Sent) -> TaskHistory:
        """One task's history from both witnesses (a task id, or the ``Sent`` of one task); an empty history if
        neither witness saw it."""
        one = id_of(task, "ledger.history")
        return self.histories().get(one, TaskHistory(one))

    def count(self, event_type: str, ids: TaskIds | None = None) -> int:
        """How many of ``ids`` (default: every task seen) have at least one such step."""
        histories = self.histories()
        chosen = histories.values() if ids is None else (histories.get(i) for i in ids_of(ids, "ledger.count"))
        return sum(1 for h in chosen if h is not None and h.count(event_type) > 0)

    def retry_waits(self, task: str | Sent) -> list[float]:
        """For each run that ended in a retry: seconds from its start to the next run's start (a list, one per
        retry).

        Measured from the start, not from ``task-retried``: the worker sends that event after it has
        published the retry (whose countdown began when the task called ``retry()``), so under load the
        event can come tens of milliseconds into the countdown. The start precedes the call: the wait
        from it is at least the countdown, whatever the load.
        """
        events = self.history(id_of(task, "ledger.retry_waits")).events
        starts = [n for n, e in enumerate(events) if e.type == "task-started"]
        waits = []
        for this, following in itertools.pairwise(starts):
            if any(e.type == "task-retried" for e in events[this:following]):
                waits.append(events[following].timestamp - events[this].timestamp)
        return waits

    def worker_events(
        self, hostname: str | None = None, type: str | None = None, witness: str | None = None
    ) -> list[WorkerEvent]:
        """Worker events (online, heartbeat, offline); ``witness="events"``: only those that came through the
        broker (proof that the worker's connection works); ``witness="journal"``: only those the worker wrote."""
        with self._lock:
            seen = list(self._workers) if witness != "journal" else []
        if self.journal is not None and witness != "events":
            seen += [
                WorkerEvent(e.type, e.hostname or e.program, e.t, e.t, e.fields)
                for e in self.journal.entries()
                if e.type.startswith("worker-") and e.hostname
            ]
        return [e for e in seen if (hostname is None or e.hostname == hostname) and (type is None or e.type == type)]

    def worker_consuming_since(self, hostname: str, since: float) -> bool:
        """Whether the worker came online since ``since`` with its queues declared and consumed.

        The journal's ``worker-online`` says so: Celery's ``worker_ready`` signal is sent once the consumer
        consumes. Celery's ``worker-online`` *event* does not: the worker sends it before it declares its
        queues (its Heart step runs before its Tasks step), so a message published to the default exchange in
        between is dropped as unroutable (seen in CI: both raw messages of the audit's bad-message failure
        vanished so). Without a journal the event is the only witness."""
        witness = "journal" if self.journal is not None else "events"
        return any(e.received_at >= since for e in self.worker_events(hostname, "worker-online", witness=witness))

    def program_config(self, program: str) -> dict | None:
        """The settings a program reported at start (the launcher's ``config`` line), latest first."""
        if self.journal is None:
            return None
        lines = [e for e in self.journal.entries() if e.type == "config" and e.program == program]
        return lines[-1].fields if lines else None

    # -- periodic sends (celery beat) --------------------------------------------------------------
    def beat_steps(self, kind: str, program: str | None = None) -> list[Entry]:
        """The journal's ``beat-ready`` or ``beat-sent`` steps (of one beat program, if named), in time order."""
        if self.journal is None:
            return []
        return [e for e in self.journal.entries() if e.type == kind and (program is None or e.program == program)]

    def beat_sends(self) -> dict[str, BeatSend]:
        """Every periodic task the beats sent: task id -> ``BeatSend`` (the entry, when beat decided to send it)."""
        return {
            e.uuid: BeatSend(e.fields.get("entry", "?"), e.uuid, float(e.fields.get("at") or e.t), e.program,
                             e.fields.get("due"))
            for e in self.beat_steps("beat-sent") if e.uuid
        }  # fmt: skip

    def schedule(self) -> dict[str, ScheduleEntry]:
        """The beats' schedule entries as they loaded them: name -> ``ScheduleEntry`` (the first load says when
        each was first due; a later send may tell an entry loaded from a database since)."""
        entries: dict[str, ScheduleEntry] = {}
        for step in self.beat_steps("beat-ready"):
            for name, e in (step.fields.get("entries") or {}).items():
                if name not in entries:
                    entries[name] = ScheduleEntry(name, e.get("task", "?"), e.get("every"), e.get("expires"),
                                                  e.get("due"))  # fmt: skip
        for step in self.beat_steps("beat-sent"):
            name = step.fields.get("entry", "?")
            if name not in entries:
                entries[name] = ScheduleEntry(name, step.fields.get("task", "?"), step.fields.get("every"),
                                              step.fields.get("expires"))  # fmt: skip
        return entries

    def wait_beat_sends(
        self, count: int, beat: str | None = None, since: float = 0.0, timeout: float = 30.0, entry: str | None = None
    ) -> list[BeatSend]:
        """Wait until the beats (or ``beat``) have sent ``count`` periodic tasks (of ``entry``, if named) since
        ``since``; returns those sends, in order."""

        def sent() -> list[BeatSend]:
            found = sorted(self.beat_sends().values(), key=lambda s: s.at)
            return [s for s in found if s.at >= since and (beat is None or s.beat == beat)
                    and (entry is None or s.entry == entry)]  # fmt: skip

        who, what = beat or "the beats", f" of {entry}" if entry else ""
        return eventually(sent, until=lambda found: len(found) >= count, timeout=timeout,
                          what=f"{who} to send {count} periodic task(s){what}")[:count]  # fmt: skip

    def assert_beat_silent(self, for_: float, why: str) -> None:
        """Watch for ``for_`` seconds that no beat sends a periodic task (``why`` says why none should); returns
        None, or raises at the first send."""
        since = time.time()
        never(lambda: [s for s in self.beat_sends().values() if s.at >= since], for_=for_,
              what=f"a periodic task sent ({why})")  # fmt: skip

    # -- blind spans -----------------------------------------------------------------------
    def events_blind(self) -> list[Span]:
        """The spans Celery's events may have missed (the broker down, the listener reconnecting), by start."""
        with self._lock:
            down = list(self._broker_down)
        if self._down_since is not None:
            down.append(Span(self._down_since - IN_FLIGHT_MARGIN_S, None, "the broker is down"))
        return sorted([*down, *self.events.deaf_spans()], key=lambda s: s.start)

    def journal_blind(self) -> list[Span]:
        """The spans the journal may have missed (a file cut mid-line by a kill: from its last whole line on)."""
        if self.journal is None:
            return [Span(0.0, None, "no program wrote a journal")]
        return [Span(cut.after, None, cut.describe()) for cut in self.journal.cuts()]

    def blind(self) -> list[Span]:
        """The spans that neither witness saw (each with why), by start."""
        return evidence.both_blind(self.events_blind(), self.journal_blind())

    # -- waiting ---------------------------------------------------------------------------
    def settled(self, ids: TaskIds) -> int:
        """How many of ``ids`` have ended (succeeded, failed, or were rejected for good)."""
        ids = ids_of(ids, "ledger.settled")
        histories = self.histories()
        return sum(1 for i in ids if i in histories and histories[i].terminal is not None)

    def wait_received(self, ids: TaskIds, timeout: float = 10.0) -> None:
        """Wait until a worker has received each of ``ids`` (running or prefetched); returns None."""
        ids = ids_of(ids, "ledger.wait_received")
        eventually(
            lambda: self.count("task-received", ids), until=lambda n: n == len(ids), timeout=timeout,
            what=f"a worker to receive all {len(ids)} tasks",
        )  # fmt: skip

    def wait_running(self, ids: TaskIds, timeout: float = 10.0, accepted: bool = False) -> str:
        """Wait until one of ``ids`` has started and has not ended; return its id.

        ``accepted``: started as the worker's main process knows it. The journal's start is written by the
        pool process as the task begins; the main process learns of it a moment later, and only then sends
        ``task-started`` and treats the task as active (a cold shutdown cancels active tasks only: one that
        came a few milliseconds earlier let the task run to its end). A fault aimed at a running task waits
        for that event."""
        ids = ids_of(ids, "ledger.wait_running")

        def running() -> list[str]:
            histories = self.event_histories() if accepted else self.histories()
            return [
                i for i in ids if i in histories and histories[i].count("task-started") and not histories[i].terminal
            ]

        return eventually(running, timeout=timeout, what=f"one of {len(ids)} tasks to be running")[0]

    def wait_started(self, task: str | Sent, timeout: float = 10.0) -> None:
        """Wait until the task has started on a worker (ended or not); returns None."""
        one = id_of(task, "ledger.wait_started")
        eventually(
            lambda: self.history(one).count("task-started"), timeout=timeout, what=f"task {one} to start on a worker",
        )  # fmt: skip

    def wait_each_has(self, type: str, ids: TaskIds, timeout: float = 5.0) -> None:
        """Wait until each of ``ids`` has an event of ``type`` (a custom event the task sends, say); returns
        None. Only Celery's events carry those, and the journal may have ended the task before they arrive: a
        check made right after ``wait_settled`` could look too early."""
        ids = ids_of(ids, "ledger.wait_each_has")
        eventually(
            lambda: [i for i in ids if not self.history(i).count(type)], until=lambda missing: not missing,
            timeout=timeout, what=f"a {type} event for each of {len(ids)} tasks",
            progress=lambda missing: f"{len(ids) - len(missing)}/{len(ids)}",
        )  # fmt: skip

    def child_ids(self) -> list[str]:
        """The ids of the tasks that other tasks sent (seen so far)."""
        sends = self.sends()
        return [i for i, h in self.histories().items() if i not in sends and h.sent_by_a_task is not None]

    def wait_settled(self, ids: TaskIds | None = None, timeout: float = 30.0, children: bool = False) -> None:
        """Wait until every one of ``ids`` (default: every task the scenario sent) has ended; with
        ``children``, also every task those tasks sent (known once their senders have ended); returns None.

        Ended as the first witness to see it says: often the journal, with Celery's event still on its way. A check
        of one witness's view (``event_histories``, a step's ``witnesses``, ``worker_events(witness=...)``) waits
        for that view itself, with ``harness.waiting.eventually``."""
        given = None if ids is None else ids_of(ids, "ledger.wait_settled")

        def pending() -> list[str]:
            wanted = list(self.sent_ids if given is None else given)
            histories = self.histories()
            left = [i for i in wanted if i not in histories or histories[i].terminal is None]
            if children:
                left += [i for i in self.child_ids() if histories[i].terminal is None and not unsent(i, histories)]
            return left

        def unsent(child: str, histories: dict) -> bool:
            """Its publish raised (say, the broker was down): it will never run, so it is settled (``unsent``).
            Known once the task that sent it has ended without the publish having returned."""
            history = histories[child]
            if history.count("task-published") or "events" in history.sent_by_a_task.witnesses:
                return False
            parent = histories.get(history.sent_by_a_task.fields.get("parent_id"))
            return parent is not None and parent.terminal is not None

        def describe(left: list[str]) -> str:
            histories = self.histories()
            last = [f"{i} ({histories[i].events[-1].type if i in histories and histories[i].events else 'no step'})"
                    for i in left[:3]]  # fmt: skip
            return f"{len(left)} not ended: {', '.join(last)}{' ...' if len(left) > 3 else ''}"

        eventually(
            pending, until=lambda left: not left, timeout=timeout,
            what="every task to end (succeeded or failed)" + (", children included" if children else ""),
            progress=describe,
        )  # fmt: skip

    def event_count(self, ids: TaskIds) -> int:
        """How many steps the witnesses saw for ``ids``, all together."""
        ids = ids_of(ids, "ledger.event_count")
        histories = self.histories()
        return sum(len(histories[i].events) for i in ids if i in histories)

    def assert_quiet(self, ids: TaskIds, for_: float, why: str) -> None:
        """Watch for ``for_`` seconds: no new step for any of ``ids`` (nothing redelivers or reruns them);
        returns None, and raises if a step came, saying ``why`` none should have."""
        ids = ids_of(ids, "ledger.assert_quiet")
        baseline = self.event_count(ids)
        never(
            lambda: self.event_count(ids), until=lambda n: n != baseline, for_=for_,
            what=f"a new step arrived for one of {len(ids)} tasks although {why}",
        )  # fmt: skip

    def held_by(self, live: Mapping[int, str]) -> dict[str, str]:
        """The tasks whose last receive was written by a worker process still alive (``live``: its pid -> its
        name): in flight on that worker, or ended. Only the journal knows which process received a task (an
        event names the worker, and a restarted worker keeps its name)."""
        if self.journal is None:
            return {}
        last: dict[str, Entry] = {}
        for entry in self.journal.entries():
            if (
                entry.type == "task-received"
                and entry.uuid
                and (entry.uuid not in last or entry.t >= last[entry.uuid].t)
            ):
                last[entry.uuid] = entry
        return {task_id: live[entry.pid] for task_id, entry in last.items() if entry.pid in live}

    def verdict(
        self,
        queued: Iterable[str] | Mapping[str, str] = (),
        unacked: int | None = 0,
        connections_cut: bool = False,
        live: Mapping[int, str] | None = None,
        unacked_ids: Mapping[str, str] | None = None,
    ) -> Verdict:
        """Every sent task's fate, as a ``Verdict``: ``queued`` the tasks whose message waits (or task id -> its
        queue), ``unacked`` the messages the broker holds unacknowledged (None: unknown), ``live`` the worker
        processes that run now (pid -> name; a task one of them holds is never lost), ``unacked_ids`` the tasks whose
        message the broker holds unacknowledged, where it can say which (Redis). ``stack.verdict()`` reads them
        itself: use that."""
        held = self.held_by(live) if live else None
        histories, blind = self.histories(), self.blind()
        # The tasks a beat sent are judged on their own (``Verdict.periodic``, by the stack): not "unexpected" here.
        periodic = self.beat_sends()
        verdict = judge(
            self.sends(), {i: h for i, h in histories.items() if i not in periodic}, queued, unacked, blind,
            connections_cut=connections_cut, held=held, unacked_ids=unacked_ids,
        )  # fmt: skip
        if periodic:
            sends = {i: Send(i, True, s.at) for i, s in periodic.items()}
            verdict.periodic_tasks = judge(
                sends, {i: h for i, h in histories.items() if i in periodic}, queued, unacked, blind,
                connections_cut=connections_cut, held=held, unacked_ids=unacked_ids,
            )  # fmt: skip
        return verdict
