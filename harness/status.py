"""What a stack that is up is doing now, for a person watching it (``harness up``'s status line, ``harness ctl
status``): each queue's ready and unacknowledged messages, the workers online, the tasks so far.

Read from what any process can reach through the state file (``harness.state``): the management API (or
AMQP, for the app's declared queues, without one), supervisord, and the programs' journal. A worker is
online when supervisord runs it and its current process has announced itself (``worker-online`` in its
journal) and not said goodbye. Tasks are counted from the journal: sent (the producer's ``task-sent``),
running, succeeded, failed (with the exception types).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from amqp.exceptions import NotFound
from kombu import Connection

from harness import evidence
from harness.journal import JournalReader
from harness.management import ManagementAPI
from harness.state import StackState
from harness.supervisor import Supervisor
from harness.vhost import is_internal

FAILED = ("task-failed", "task-rejected", "task-revoked")


@dataclass
class Status:
    programs: dict[str, str] = field(default_factory=dict)  # name -> supervisord state
    queues: dict[str, dict[str, int | None]] = field(default_factory=dict)  # name -> ready, unacked
    workers_online: list[str] = field(default_factory=list)
    tasks: dict[str, int] = field(default_factory=dict)  # sent, running, succeeded, failed
    failures: dict[str, int] = field(default_factory=dict)  # exception type -> tasks
    problems: list[str] = field(default_factory=list)  # what could not be read, and why

    def line(self) -> str:
        queues = ", ".join(
            f"{name} {q['ready']} ready {'?' if q['unacked'] is None else q['unacked']} unacked"
            for name, q in self.queues.items()
        )
        failed = f"{self.tasks.get('failed', 0)} failed"
        if self.failures:
            failed += " (" + ", ".join(f"{kind} {n}" for kind, n in self.failures.items()) + ")"
        tasks = ", ".join(f"{self.tasks.get(k, 0)} {k}" for k in ("sent", "running", "succeeded")) + f", {failed}"
        parts = [
            queues or "no queue yet",
            f"workers online: {', '.join(self.workers_online) or 'none'}",
            f"tasks: {tasks}",
        ]
        return " | ".join(parts + [f"({p})" for p in self.problems])

    def as_dict(self) -> dict:
        return asdict(self)


class StatusReader:
    """Reads a stack's status again and again (the journal incrementally)."""

    def __init__(self, state: StackState) -> None:
        self.state = state
        self.journal = JournalReader(state.journal_dir)
        self.supervisor = Supervisor.attach(Path(state.supervisor_conf), Path(state.supervisor_socket))
        self.management = (
            ManagementAPI(state.management_url, state.user, state.password, timeout=2.0)
            if state.management_url
            else None
        )

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
        try:
            status.queues = self._queues()
        except Exception as exc:  # the broker is down or restarting
            status.problems.append(f"queues: {type(exc).__name__}")
        histories = evidence.merge({}, entries)
        counts: Counter[str] = Counter()
        failures: Counter[str] = Counter()
        for history in histories.values():
            if history.count("task-sent"):
                counts["sent"] += 1
            terminal = history.terminal
            if terminal is not None and terminal.type == "task-succeeded":
                counts["succeeded"] += 1
            elif terminal is not None and terminal.type in FAILED:
                counts["failed"] += 1
                failures[history.exception_type or "?"] += 1
            elif history.count("task-started"):
                counts["running"] += 1
        status.tasks = {k: counts.get(k, 0) for k in ("sent", "running", "succeeded", "failed")}
        status.failures = dict(failures)
        return status

    def _queues(self) -> dict[str, dict[str, int | None]]:
        """Ready counts exact, over AMQP (a passive declare), as ``ScenarioVhost.depth`` reads them; unacknowledged
        ones from the management API (none without a consumer); the queue names from it too, or the app's."""
        stats = self.management.queues(self.state.vhost) if self.management is not None else {}
        names = sorted(q for q in stats if not is_internal(q)) if self.management is not None else self.state.queues
        depths: dict[str, dict[str, int | None]] = {}
        with Connection(self.state.amqp_url, connect_timeout=2, transport_options={"max_retries": 1}) as connection:
            for name in names:
                channel = connection.channel()
                try:
                    _, ready, consumers = channel.queue_declare(queue=name, passive=True)
                except NotFound:  # deleted meanwhile
                    continue
                finally:
                    try:
                        channel.close()
                    except Exception:  # already closed by the broker's answer to a missing queue
                        pass
                unacked = (stats[name].unacked if name in stats else None) if consumers else 0
                depths[name] = {"ready": ready, "unacked": unacked}
        return depths


def _online(name: str, info: dict, entries: list) -> bool:
    """supervisord runs it, and its current process wrote worker-online and not worker-offline since."""
    if info.get("statename") != "RUNNING":
        return False
    mine = [e.type for e in entries if e.program == name and e.pid == info.get("pid")]
    return "worker-online" in mine and "worker-offline" not in mine[mine.index("worker-online") :]
