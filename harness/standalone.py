"""A scenario's stack without pytest, for the tools that run outside it (``harness up``, ``harness.bench``).

``running(broker, spec, work_root, label)`` opens what the fixtures give a scenario, in the same order
and with the same wiring: the scenario's own vhost, the ledger (listening before anything is sent), the
timeline with its depth sampler (both following the broker's faults), and the app under supervisord,
every program ready. Everything is closed, in reverse order, when the block ends or fails.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.brokers.base import Broker
from harness.ledger import Ledger
from harness.space import ScenarioSpace
from harness.spec import StackSpec
from harness.stack import AppStack
from harness.timeline import DepthSampler, Timeline


@dataclass(frozen=True)
class Running:
    """What is up: the vhost, the ledger, the timeline and the app, and the scenario's directory."""

    vhost: ScenarioSpace
    ledger: Ledger
    timeline: Timeline
    stack: AppStack
    workdir: Path


@contextmanager
def running(
    broker: Broker,
    spec: StackSpec,
    work_root: Path,
    label: str,
    queues: tuple[str, ...] = (),
    celery_config: Mapping[str, Any] | None = None,
    cwd: str | None = None,
) -> Iterator[Running]:
    """The same resources a scenario's fixtures open, without pytest; ``queues`` are the app's declared
    queues (needed only on a broker without a management API, where they are purged)."""
    with ExitStack() as resources:
        vhost = broker.open_space(label, queues)
        resources.callback(vhost.close)
        workdir = Path(tempfile.mkdtemp(prefix="sc-", dir=work_root))
        ledger = Ledger(vhost.url, workdir / "journal")
        resources.callback(ledger.close)
        ledger.start()
        timeline = Timeline()
        sampler = DepthSampler(vhost, timeline).start()
        resources.callback(sampler.stop)
        resources.enter_context(broker.faults.subscribed(timeline.record))
        resources.enter_context(broker.faults.subscribed(ledger.observe))
        stack = AppStack(spec, vhost, ledger, workdir, timeline, celery_config, cwd=cwd)
        resources.callback(stack.close)
        stack.launch()
        yield Running(vhost, ledger, timeline, stack, workdir)
