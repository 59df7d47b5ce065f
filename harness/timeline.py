"""What happened when, during one scenario: operator and fault actions, and queue depth over time.

The stack and the broker report each action (worker stopped, killed, broker restarted...) as a typed
fault (``harness.faults``) that the scenario's timeline records; a sampler thread reads the vhost's
queues every 100 ms on its own AMQP connection. With the ledger's task histories, this is what the run
report plots.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field

from harness.faults import (
    BROKER_DOWN,
    BROKER_UP,
    BrokerAlarm,
    BrokerAlarmCleared,
    BrokerFault,
    BrokerFrozen,
    BrokerReconfigured,
    ConnectionsKilled,
    Fault,
    NetworkFault,
    NetworkHealed,
)
from harness.space import ScenarioSpace


@dataclass(frozen=True)
class DepthSample:
    at: float
    queue: str
    ready: int | None  # None: the reading failed (the broker was down or frozen)
    unacked: int | None


def fault_kind(fault: Fault) -> str:
    if isinstance(fault, BrokerFault | BrokerAlarm | BrokerAlarmCleared | BrokerReconfigured | ConnectionsKilled):
        return "broker"
    if isinstance(fault, NetworkFault | NetworkHealed):
        return "network"
    return "program"


@dataclass
class Timeline:
    started: float = field(default_factory=time.time)
    faults: list[Fault] = field(default_factory=list)
    samples: list[DepthSample] = field(default_factory=list)

    def record(self, fault: Fault) -> None:
        self.faults.append(fault)

    def last(self, kinds: tuple[type[Fault], ...]) -> float:
        """When the latest fault of one of ``kinds`` happened (the scenario's start if none did)."""
        return max((f.at for f in self.faults if isinstance(f, kinds)), default=self.started)

    def broker_down(self) -> list[dict]:
        """The spans the broker was down or frozen (from each stop or freeze to the next start or resume; ``end``
        None if it never came back), each with what to call it."""
        spans: list[dict] = []
        for fault in self.faults:
            if isinstance(fault, BROKER_DOWN) and (not spans or spans[-1]["end"] is not None):
                what = "broker frozen" if isinstance(fault, BrokerFrozen) else "broker down"
                spans.append({"start": fault.at, "end": None, "what": what})
            elif isinstance(fault, BROKER_UP) and spans and spans[-1]["end"] is None:
                spans[-1]["end"] = fault.at
        return spans

    def as_dict(self) -> dict:
        return {
            "started": self.started,
            "marks": [{"at": f.at, "label": f.label, "kind": fault_kind(f)} for f in self.faults],
            "broker_down": self.broker_down(),
            "samples": [asdict(s) for s in list(self.samples)],
        }


UNACKED_REFRESH_S = 0.5  # the management API's counters refresh this often (collect_statistics_interval)


class DepthSampler:
    """Samples every queue of the vhost into a timeline until stopped; readings that fail (broker down) are
    kept as gaps. The list of queues is read again every second, so queues the app declares later appear."""

    def __init__(self, vhost: ScenarioSpace, timeline: Timeline, interval: float = 0.1, refresh_every: int = 10):
        self._reader = vhost.reader()  # its own connection: the scenario's is not thread-safe
        self._timeline = timeline
        self._interval = interval
        self._refresh_every = refresh_every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="harness-depth-sampler", daemon=True)

    def start(self) -> DepthSampler:
        self._thread.start()
        return self

    def _run(self) -> None:
        queues: list[str] = []
        round_ = 0
        while not self._stop.is_set():
            if round_ % self._refresh_every == 0:
                try:
                    queues = self._reader.queue_names()
                except Exception:  # broker restarting: keep the last list
                    pass
            round_ += 1
            for queue in queues:
                try:
                    depth = self._reader.depth(queue, unacked_within=UNACKED_REFRESH_S)
                except Exception:  # broker restarting or unreachable: a gap in the plot says so
                    self._timeline.samples.append(DepthSample(time.time(), queue, None, None))
                    continue
                self._timeline.samples.append(DepthSample(time.time(), queue, depth.ready, depth.unacked))
            self._stop.wait(self._interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._reader.disconnect()
