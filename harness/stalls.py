"""The stalled consumer: a worker whose process lives, whose queue holds tasks, and that takes none of them.

The failure Celery users on Redis report most (a worker that stays up after a reconnect but stops consuming:
the queue grows, nothing runs, the process answers health checks) is invisible to task fates: every task is
simply ``queued``. This module names it from observed facts only: the worker's process runs (supervisord), it
holds no unfinished task (so a full prefetch is not mistaken for a stall), its queues have held ready messages
continuously (the timeline's depth samples) and it has received nothing (both witnesses) for at least
``after`` seconds. Pure logic over those facts; ``AppStack.stalled`` gathers them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

STALL_AFTER_S = 20.0  # what "nothing received for a while" means by default; a scenario may ask for less


@dataclass(frozen=True)
class WorkerFacts:
    name: str  # the program
    queues: tuple[str, ...]  # what it consumes
    running: bool  # its process runs
    holding: int  # tasks it received that have not ended
    last_received: float | None  # when it last received a task (or came online), None: never seen


def ready_since(samples: Sequence[tuple[float, int | None]], now: float) -> float | None:
    """Since when a queue has held ready messages without a break, from its depth samples (time, ready; None: a
    failed reading, which breaks the run); None if it holds none at the last sample."""
    since = None
    for at, ready in samples:
        if not ready:
            since = None
        elif since is None:
            since = at
    return since if since is not None and since <= now else None


def stalled(
    workers: Sequence[WorkerFacts],
    ready: Mapping[str, int],
    since: Mapping[str, float | None],
    now: float,
    after: float = STALL_AFTER_S,
) -> list[str]:
    """One line per stalled worker: ``stalled: worker X alive, N ready in Q, nothing received for S s``."""
    lines = []
    for worker in workers:
        if not worker.running or worker.holding:
            continue
        waiting = {q: ready.get(q, 0) for q in worker.queues if ready.get(q, 0) and since.get(q) is not None}
        if not waiting:
            continue
        # Idle since its last receive, while messages waited since the queue filled: the later of the two.
        start = max([since[q] for q in waiting] + ([worker.last_received] if worker.last_received else []))
        idle = now - start
        if idle >= after:
            where = ", ".join(f"{n} ready in {q}" for q, n in waiting.items())
            lines.append(f"stalled: worker {worker.name} alive, {where}, nothing received for {idle:.0f} s")
    return lines
