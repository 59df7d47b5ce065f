"""``python -m harness.bench``: how long the harness's parts take, measured in one run.

Figures (seconds):

- raw_broker_boot_s: a plain ``rabbitmq-server`` (same isolated config) from exec to answering on
  AMQP and the management API, polled every 20 ms; the yardstick for broker_boot_s;
- broker_boot_s: the harness's provider (``--broker local``) from nothing to ready;
- worker_boot_s: ``supervisorctl start worker_hello`` to its ``worker-online`` event;
- scenario_overhead_s: vhost + ledger + supervisord + web + worker up and down around an empty scenario;
- outage_scenario_s: the worker-outage scenario, fixtures included.

Targets: broker_boot_s <= 1.1 x raw_broker_boot_s; scenario_overhead_s <= worker_boot_s + 1.5.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from harness.brokers.base import Broker
from harness.brokers.local import LocalBroker
from harness.brokers.url import UrlBroker
from harness.ledger import Ledger
from harness.stack import PROJECT_ROOT, AppStack, StackSpec
from harness.vhost import ScenarioVhost


def _answers(broker: LocalBroker) -> bool:
    try:
        socket.create_connection(("127.0.0.1", broker.port), timeout=0.2).close()
        url = f"{broker.endpoint.management_url}/api/overview"
        return requests.get(url, auth=("guest", "guest"), timeout=0.5).status_code == 200
    except (OSError, requests.RequestException):
        return False


def raw_broker_boot(work_root: str) -> float:
    """Boot the same node config with a bare Popen and a bare polling loop: no harness code."""
    node = LocalBroker(work_root=work_root)  # only for its directory, config and ports
    started = time.monotonic()
    process = subprocess.Popen(
        [str(node.server)], env={**_base_env(), **node._environment()}, cwd=node.dir,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        while not _answers(node):
            if process.poll() is not None or time.monotonic() - started > 120:
                raise RuntimeError("the raw rabbitmq-server did not come up")
            time.sleep(0.02)
        return time.monotonic() - started
    finally:
        import os
        import signal

        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        shutil.rmtree(node.dir, ignore_errors=True)


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL")}


def timed(action: Callable[[], object]) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


@contextmanager
def scenario(broker: Broker, work_root: Path, label: str) -> Iterator[tuple[ScenarioVhost, Ledger, AppStack]]:
    """The same fixtures a scenario gets, without pytest."""
    vhost = ScenarioVhost.open(broker, label, ("hello_queue",))
    ledger = Ledger(vhost.amqp_url).start()
    stack = AppStack(StackSpec(), vhost, ledger, Path(tempfile.mkdtemp(prefix="sc-", dir=work_root)))
    try:
        stack.start()
        yield vhost, ledger, stack
    finally:
        stack.close()
        ledger.close()
        vhost.close()


def worker_boot(broker: Broker, work_root: Path) -> float:
    with scenario(broker, work_root, "bench-worker") as (_, _, stack):
        stack.stop("worker_hello")
        return timed(lambda: stack.start_program("worker_hello"))


def empty_scenario(broker: Broker, work_root: Path) -> float:
    def run() -> None:
        with scenario(broker, work_root, "bench-empty"):
            pass

    return timed(run)


def outage_scenario(broker: Broker, work_root: Path) -> float:
    if str(PROJECT_ROOT) not in sys.path:  # scenarios/ is a folder of the checkout, not a package
        sys.path.insert(0, str(PROJECT_ROOT))
    from scenarios.test_worker_outage import (
        test_worker_outage_tasks_wait_in_the_queue_and_all_run_once_after_restart as outage,
    )

    def run() -> None:
        with scenario(broker, work_root, "bench-outage") as (vhost, ledger, stack):
            outage(stack, stack.web, vhost, ledger)

    return timed(run)


def measure(broker_kind: str, broker_url: str | None, repeat: int) -> dict[str, float]:
    work_root = Path(tempfile.mkdtemp(prefix="harness-bench-"))
    figures: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        figures.setdefault(name, []).append(value)

    try:
        broker: Broker | None = None
        if broker_kind == "local":
            for _ in range(repeat):  # alternate, so neither side always boots on a warm cache
                add("raw_broker_boot_s", raw_broker_boot(str(work_root)))
                candidate = LocalBroker(work_root=str(work_root))
                add("broker_boot_s", timed(candidate.start))
                if broker is None:
                    broker = candidate
                else:
                    candidate.close()
        else:
            broker = UrlBroker(broker_url or "amqp://guest:guest@127.0.0.1:5672//")
            add("broker_boot_s", timed(broker.start))
        try:
            for _ in range(repeat):
                add("worker_boot_s", worker_boot(broker, work_root))
                add("scenario_overhead_s", empty_scenario(broker, work_root))
                add("outage_scenario_s", outage_scenario(broker, work_root))
        finally:
            broker.close()
    finally:
        shutil.rmtree(work_root, ignore_errors=True)
    return {name: round(statistics.median(values), 3) for name, values in figures.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", choices=("local", "url"), default="local")
    parser.add_argument("--broker-url", help="for --broker url (default: the guest broker on 127.0.0.1:5672)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the median is reported")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    figures = measure(args.broker, args.broker_url, args.repeat)
    width = max(map(len, figures))
    print(f"{'figure':<{width}}  seconds (median of {args.repeat}, --broker {args.broker})")
    for name, value in figures.items():
        print(f"{name:<{width}}  {value:8.3f}")
    if "raw_broker_boot_s" in figures:
        ratio = figures["broker_boot_s"] / figures["raw_broker_boot_s"]
        print(f"{'broker boot / raw':<{width}}  {ratio:8.2f}x (target <= 1.10)")
    beyond = figures["scenario_overhead_s"] - figures["worker_boot_s"]
    print(f"{'overhead - worker boot':<{width}}  {beyond:8.3f} (target <= 1.5)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
