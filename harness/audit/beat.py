"""The audit's beat rows: the app's own ``beat_schedule`` (as ``harness.introspect`` reads it), run in seconds.

Each interval entry of the app is run as an entry of the audit's beat: the same entry name, the probe in place
of its task (or the task itself if ``--audit-task`` names it, with the entry's own arguments), its options
(``expires``, routing) kept, sent to the queue the entry's send is routed to, and its time compressed: the
interval becomes ``AUDIT_EVERY_S`` and ``expires`` shrinks with it (30 s of a 60 s interval becomes 0.5 s), so
that a worker outage of a few intervals takes seconds. The rows say so. What the audit cannot run that way it
names, with why: a crontab or solar entry (its due times are not evenly spaced), an ``expires`` that is not a
number of seconds, a scheduler whose entries live in a database. Pure logic.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from harness.probe import PROBE_NAME
from harness.spec import BeatSpec, StackSpec

AUDIT_EVERY_S = 1.0  # every interval entry runs this often in the audit
MIN_EXPIRES_S = 0.25  # a compressed expires is never shorter: a delivery takes milliseconds, not nothing
OUTAGE_RUNS = 4  # the worker is down while beat sends this many runs of each entry
OVERLAP_RUNS = 3  # the new beat sends this many runs of each entry while the old one still runs
AUDIT_BEAT, NEW_BEAT = "audit_beat", "audit_beat_new"
# Celery's own schedulers: their state is a schedule file (or memory), and nothing stops a second beat.
CELERY_SCHEDULERS = ("celery.beat:PersistentScheduler", "celery.beat:Scheduler")
RUN_WITH = "celery.beat:PersistentScheduler"
NO_BEAT = "the app has no beat_schedule"
TWO_BEATS = "beat_two_beats"


def seconds(value: float) -> str:
    """``60s``, ``0.5s``, ``1.5h`` for 5400: how a row says a duration."""
    if value >= 3600 and value % 360 == 0:
        return f"{value / 3600:g}h"
    return f"{value:g}s"


def scheduler_key(name: str | None) -> str:
    """``celery.beat:PersistentScheduler`` for ``celery.beat.PersistentScheduler`` too."""
    name = name or RUN_WITH
    if ":" not in name and "." in name:
        module, _, attr = name.rpartition(".")
        name = f"{module}:{attr}"
    return name


@dataclass(frozen=True)
class AuditedEntry:
    """One entry of the app's schedule as the audit runs it (``sent``: the entry of its beat, plain data)."""

    name: str
    task: str  # the app's task
    every: float  # the app's interval, seconds
    expires: float | None  # the app's (the entry's option, else the task's own)
    expires_from: str  # "the entry's options", "the task's expires", ""
    queue: str
    sent: dict[str, Any]

    @property
    def ratio(self) -> float:
        return AUDIT_EVERY_S / self.every

    @property
    def audit_expires(self) -> float | None:
        return None if self.expires is None else max(MIN_EXPIRES_S, round(self.expires * self.ratio, 3))

    def compression(self) -> str:
        """``nightly-report: every 60s ran as every 1s; expires 30s as 0.5s; the probe in place of proj.report,
        sent to reports``."""
        said = [f"every {seconds(self.every)} ran as every {seconds(AUDIT_EVERY_S)}"]
        if self.expires is not None:
            floor = " (its share, shorter, would expire in transit)" if self.audit_expires == MIN_EXPIRES_S else ""
            said.append(f"expires {seconds(self.expires)} ({self.expires_from}) as {seconds(self.audit_expires)}"
                        f"{floor}")  # fmt: skip
        what = f"the probe in place of {self.task}" if self.sent["task"] == PROBE_NAME else f"{self.task} itself"
        said.append(f"{what}, sent to {self.queue}")
        return f"{self.name}: " + "; ".join(said)


@dataclass(frozen=True)
class BeatPlan:
    """The app's periodic tasks as the audit runs them: ``entries`` (none: ``why_not`` or ``cannot`` says why),
    the entries it leaves out and why (``left_out``), the app's scheduler and the one the audit's beats run."""

    scheduler: str | None
    entries: tuple[AuditedEntry, ...] = ()
    left_out: tuple[str, ...] = ()
    why_not: str | None = None  # not applicable: the app declares no periodic task
    cannot: str | None = None  # it has some, and the audit cannot run any: why
    runs_with: str = RUN_WITH

    @property
    def own_scheduler(self) -> bool:
        return scheduler_key(self.scheduler) in CELERY_SCHEDULERS

    def schedule(self) -> dict[str, dict[str, Any]]:
        return {entry.name: entry.sent for entry in self.entries}

    def queues(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(entry.queue for entry in self.entries))

    def not_applicable(self, key: str) -> str | None:
        """Why a beat row does not apply to this app (None: it does)."""
        return self.why_not

    def cannot_judge(self, key: str) -> str | None:
        """Why the audit cannot judge a beat row for this app, though it applies (None: it can)."""
        if self.cannot:
            return self.cannot
        if key == TWO_BEATS and not self.own_scheduler:
            return (f"cannot judge: whether two beats send twice depends on the app's beat_scheduler "
                    f"{self.scheduler} (one with a lock, such as celery-redbeat's, lets one beat send), and the audit "
                    "runs Celery's own schedulers only")  # fmt: skip
        return None

    def notes(self) -> list[str]:
        said = [entry.compression() for entry in self.entries]
        said += [f"not audited: {line}" for line in self.left_out]
        if not self.own_scheduler:
            said.append(f"the app's beat_scheduler {self.scheduler} may hold entries of its own (a database) the "
                        f"audit cannot read: only its beat_schedule is audited, run by {self.runs_with}")  # fmt: skip
        return said

    def facts(self) -> dict[str, Any]:
        expires = {entry.name: entry.expires for entry in self.entries}
        return {
            "expires": expires,
            "every_entry_expires": bool(expires) and all(v is not None for v in expires.values()),
            "beat_scheduler": self.scheduler,
            "beat_entries": len(self.entries),
        }

    def beats(self) -> tuple[BeatSpec, BeatSpec]:
        """The audit's beat, and a second one left stopped (a deploy's new beat), both on the audited entries."""
        scheduler = None if self.own_scheduler else self.runs_with
        return (BeatSpec(AUDIT_BEAT, schedule=self.schedule(), scheduler=scheduler),
                BeatSpec(NEW_BEAT, schedule=self.schedule(), scheduler=scheduler, autostart=False))  # fmt: skip

    def stack(self, spec: StackSpec) -> StackSpec:
        """``spec`` with the audit's beats, its worker consuming the queues the entries are sent to as well."""
        worker = spec.workers[0]
        queues = tuple(dict.fromkeys([*(worker.queues or ()), *self.queues()]))
        return spec.replace(beats=self.beats(), workers=(worker.replace(queues=queues), *spec.workers[1:]))


def _expires(entry: dict[str, Any]) -> tuple[Any, str]:
    own = (entry.get("options") or {}).get("expires")
    if own is not None:
        return own, "the entry's options"
    if entry.get("task_expires") is not None:
        return entry["task_expires"], "the task's expires"
    return None, ""


def given(overrides: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    """``--audit-config``'s ``beat_schedule`` / ``beat_scheduler`` as ``harness.introspect`` describes the app's: a
    plain-data entry's schedule is a number of seconds (anything else the audit cannot run in seconds), its queue
    the one its task is routed to."""
    beat: dict[str, Any] = {}
    if "beat_scheduler" in overrides:
        beat["scheduler"] = overrides["beat_scheduler"]
    if "beat_schedule" in overrides:
        tasks = info.get("tasks") or {}
        entries = {}
        for name, entry in dict(overrides["beat_schedule"] or {}).items():
            entry = dict(entry)
            every = entry.get("schedule")
            number = isinstance(every, int | float) and not isinstance(every, bool)
            options = dict(entry.get("options") or {})
            task = (tasks.get(entry.get("task")) or {}).get("options") or {}
            entries[name] = {
                "task": entry.get("task"), "every": float(every) if number else None,
                "kind": "interval" if number else "schedule", "schedule": repr(every), "args": entry.get("args") or [],
                "kwargs": entry.get("kwargs") or {}, "options": options, "task_expires": None,
                "queue": options.get("queue") or task.get("queue"),
            }  # fmt: skip
        beat["entries"] = entries
    return beat


def beat_plan(info: dict[str, Any], task: str = PROBE_NAME, overrides: dict[str, Any] | None = None) -> BeatPlan:
    """How the audit runs the app's periodic tasks, from what ``harness.introspect`` read (its ``beat``). ``task``
    is what the audit sends (the probe, or the real task ``--audit-task`` names): an entry of that task sends it with
    the entry's own arguments; every other entry sends the probe. ``overrides``: ``--audit-config``, whose
    ``beat_schedule`` (plain data, schedules in seconds) and ``beat_scheduler`` replace the app's."""
    beat = info.get("beat")
    if overrides and ("beat_schedule" in overrides or "beat_scheduler" in overrides):
        beat = {**(beat or {}), **given(overrides, info)}
    if not isinstance(beat, dict):
        return BeatPlan(None, cannot="cannot judge: the app's beat_schedule was not read (an older introspection)")
    scheduler = beat.get("scheduler")
    declared = dict(beat.get("entries") or {})
    if not declared:
        if scheduler_key(scheduler) in CELERY_SCHEDULERS:
            return BeatPlan(scheduler, why_not=NO_BEAT)
        why = (f"cannot judge: the app's beat_schedule is empty and its beat_scheduler {scheduler} keeps its entries "
               "elsewhere (a database), which the audit cannot read")  # fmt: skip
        return BeatPlan(scheduler, cannot=why)
    entries, left_out = [], []
    default_queue = info.get("default_queue") or "celery"
    for name, entry in declared.items():
        every = entry.get("every")
        if every is None:
            left_out.append(f"{name} ({entry.get('kind')} {entry.get('schedule')}): its due times are not evenly "
                            "spaced, so the audit cannot run it in seconds")  # fmt: skip
            continue
        if float(every) <= 0:
            left_out.append(f"{name}: its interval is {every}s")
            continue
        expires, expires_from = _expires(entry)
        if expires is not None and not isinstance(expires, int | float):
            left_out.append(f"{name}: its expires {expires!r} is not a number of seconds (a moment), so the audit "
                            "cannot scale it")  # fmt: skip
            continue
        options = {k: v for k, v in dict(entry.get("options") or {}).items() if k != "expires"}
        queue = entry.get("queue") or default_queue
        if not any(k in options for k in ("queue", "exchange", "routing_key")):
            options["queue"] = queue  # the probe is sent by name: routed where the entry's task goes
        real = entry.get("task") == task and task != PROBE_NAME
        audited = AuditedEntry(name, str(entry.get("task")), float(every), None if expires is None else float(expires),
                               expires_from, queue, {})  # fmt: skip
        if audited.audit_expires is not None:
            options["expires"] = audited.audit_expires
        sent = {
            "task": entry["task"] if real else PROBE_NAME,
            "schedule": AUDIT_EVERY_S,
            "args": list(entry.get("args") or []) if real else [0.0],
            "kwargs": dict(entry.get("kwargs") or {}) if real else {},
            "options": options,
        }
        entries.append(dataclasses.replace(audited, sent=sent))
    if not entries:
        why = "cannot judge: no entry of the app's beat_schedule has an interval schedule the audit can run in seconds"
        return BeatPlan(scheduler, left_out=tuple(left_out), cannot=f"{why}: " + "; ".join(left_out))
    return BeatPlan(scheduler, tuple(entries), tuple(left_out))
