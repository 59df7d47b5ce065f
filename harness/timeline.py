"""What happened when, during one scenario: operator and fault actions, and queue depth over time.

The stack and the broker mark each action (worker stopped, killed, broker restarted...) on the
scenario's timeline; a sampler thread reads the application's queues every 100 ms on its own AMQP
connection. With the ledger's task events, this is what the run report plots.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field

from harness.vhost import ScenarioVhost


@dataclass(frozen=True)
class Mark:
    at: float  # epoch seconds, like Celery's event timestamps
    label: str


@dataclass(frozen=True)
class DepthSample:
    at: float
    queue: str
    ready: int | None  # None: the reading failed (the broker was down or frozen)
    unacked: int | None


@dataclass
class Timeline:
    started: float = field(default_factory=time.time)
    marks: list[Mark] = field(default_factory=list)
    samples: list[DepthSample] = field(default_factory=list)

    def mark(self, label: str) -> None:
        self.marks.append(Mark(time.time(), label))

    def last_mark_of(self, labels: tuple[str, ...]) -> float:
        """When the latest mark with one of ``labels`` was made (the scenario's start if none was)."""
        return max((m.at for m in self.marks if m.label in labels), default=self.started)

    def as_dict(self) -> dict:
        return {
            "started": self.started,
            "marks": [asdict(m) for m in self.marks],
            "samples": [asdict(s) for s in list(self.samples)],
        }


class DepthSampler:
    """Samples queue depths into a timeline until stopped; readings that fail (broker down) are skipped."""

    def __init__(self, vhost: ScenarioVhost, queues: tuple[str, ...], timeline: Timeline, interval: float = 0.1):
        self._reader = vhost.reader()  # its own connection: the scenario's is not thread-safe
        self._queues = queues
        self._timeline = timeline
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="harness-depth-sampler", daemon=True)

    def start(self) -> DepthSampler:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            for queue in self._queues:
                try:
                    depth = self._reader.depth(queue)
                except Exception:  # broker restarting or unreachable: a gap in the plot says so
                    self._timeline.samples.append(DepthSample(time.time(), queue, None, None))
                    continue
                self._timeline.samples.append(DepthSample(time.time(), queue, depth.ready, depth.unacked))
            self._stop.wait(self._interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._reader.disconnect()
