"""``python -m harness.bench``: how long the harness's parts take, measured in one run.

Figures (seconds):

- raw_broker_boot_s: a plain ``rabbitmq-server`` (same isolated config) from exec to answering on
  AMQP and the management API, polled every 20 ms; the yardstick for broker_boot_s;
- raw_container_boot_s (``--broker docker``): a plain ``docker run`` of the same image and settings to
  answering, polled every 20 ms; the yardstick for the docker provider;
- broker_boot_s: the harness's provider (``--broker``) from nothing to ready;
- worker_boot_s: ``supervisorctl start`` of the stack's first worker to its consuming of its queues (its journal's
  ``worker-online``, Celery's ``worker_ready``);
- scenario_overhead_s: vhost + ledger + supervisord + web + worker up and down around an empty scenario;
- outage_scenario_s: one scenario file (``--outage``, default ``scenarios/test_worker_outage.py``) run by
  pytest against the broker already up: its set-up, body and tear-down as JUnit times them;
- seed_suite_s: ``pytest scenarios -m seed`` once, against the broker already up (target <= 60 s);
- cold_single_scenario_s / warm_single_scenario_s: the outage scenario as one pytest run, with a broker
  booted for it / with the warm broker (``--harness-broker warm``); warm_beyond_body_s: the warm run's wall
  time beyond the scenario's body (target <= 2.0 s);
- suite_serial_s / suite_parallel_s (``--suite``): the whole scenario suite on the local provider, serial and
  with ``-n`` the first of ``--workers`` (target: parallel <= 0.30 x serial at -n 4); suite_parallel_<N>_workers_s for
  each count of ``--workers 3,4,6``;
- with ``--transport redis``: raw_broker_boot_s is a plain ``redis-server`` with the same config to answering
  PING, broker_boot_s the ``local`` Redis provider, and the figures above run on Redis; ``--redis-suite`` adds
  redis_suite_s and redis_suite_cpu_s, the Redis catalogue (``pytest scenarios -m redis``) serially on its own
  private server: wall time and CPU-seconds (user + system, every process it started and waited for);
- with ``--cpu``, only these: the suite (``--cpu-select``, default the RabbitMQ suite ``scenarios -m 'not redis'``)
  once at ``-n`` the first of ``--workers``, with its run report: suite_cpu_wall_s, suite_cpu_s (the CPU-seconds
  of every process of the run, daemons included) and cpu_<kind>_s by kind of process (``harness.cpu``: broker,
  broker tools, supervisord, worker, web, pytest less the report's drawing, other), cpu_report_drawing_s; and the
  ten scenarios that cost most, from their records (the pytest process's CPU from set-up to the verdict, the
  programs' and supervisord's, the drawing's; a broker serves many scenarios, so its share is not split);
- audit_s: the resilience audit (``pytest --pyargs harness.audit``) once, from its broker being up to its
  end, its run report and JSON written (target <= 60 s). Its broker faults need a broker it owns, so it
  boots its own (``--broker`` local or docker; not measured with ``--broker url``), and the clock starts
  once that broker answers.

The stack is ``--stack module:attribute`` (a StackSpec or a function returning one), by default the
``harness_stack`` ini key of the checkout in the working directory; scenarios are run from the
working directory. Targets: broker_boot_s <= 1.1 x the raw boot; scenario_overhead_s <= worker_boot_s
+ 1.5. The timeline and ledger run as in a scenario, but the run report (a pytest plugin) is not drawn.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import requests

from harness.benchclock import CLOCK
from harness.brokers.base import Broker
from harness.brokers.containers import docker_client
from harness.brokers.rabbitmq.docker import DEFAULT_IMAGE, NETWORKS, DockerBroker, container_settings
from harness.brokers.rabbitmq.local import LocalBroker
from harness.brokers.rabbitmq.url import UrlBroker
from harness.errors import HarnessError
from harness.fixtures import load_stack
from harness.options import ini_value
from harness.ports import free_ports
from harness.spec import StackSpec
from harness.standalone import running

# The worker-outage story of each family: the scenario file --outage times by default.
OUTAGE = {
    "rabbitmq": "scenarios/test_worker_outage.py",
    "redis": "scenarios/redis/test_worker_faults_on_redis.py::"
    "test_worker_outage_on_redis_tasks_wait_in_the_list_and_all_run_once",
}


def _answer(amqp_port: int, management_port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", amqp_port), timeout=0.2).close()
        url = f"http://127.0.0.1:{management_port}/api/overview"
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
        while not _answer(node.port, node.management_port):
            if process.poll() is not None or time.monotonic() - started > 120:
                raise RuntimeError("the raw rabbitmq-server did not come up")
            time.sleep(0.02)
        return time.monotonic() - started
    finally:
        import signal

        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        shutil.rmtree(node.dir, ignore_errors=True)


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL")}


def timed(action: Callable[[], object]) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


def worker_boot(broker: Broker, spec: StackSpec, work_root: Path) -> float:
    worker = spec.workers[0].name
    with running(broker, spec, work_root, "bench-worker") as up:
        up.stack.stop(worker)
        return timed(lambda: up.stack.start(worker))


def empty_scenario(broker: Broker, spec: StackSpec, work_root: Path) -> float:
    def run() -> None:
        with running(broker, spec, work_root, "bench-empty"):
            pass

    return timed(run)


def broker_args(broker: Broker) -> list[str]:
    """Run pytest against the already running broker."""
    e = broker.endpoint
    if broker.transport == "redis":
        return ["--harness-transport", "redis", "--harness-broker", "url", "--harness-broker-url", e.url(),
                "--harness-no-report"]  # fmt: skip
    args = ["--harness-broker", "url", "--harness-broker-url", e.amqp_url(), "--harness-no-report"]
    return args + (["--harness-management-url", e.management_url] if e.management_url else [])


def junit_seconds(path: Path) -> float:
    """The sum of the test cases' times in a JUnit XML file (set-up, body and tear-down of each)."""
    import xml.etree.ElementTree as ElementTree

    return sum(float(case.get("time", 0)) for case in ElementTree.parse(path).iter("testcase"))


def pytest_run(broker: Broker, work_root: Path, *args: str) -> float:
    """Run pytest on the working directory's scenarios against the broker; the JUnit time of its tests."""
    report = Path(tempfile.mkdtemp(dir=work_root)) / "junit.xml"
    command = [sys.executable, "-m", "pytest", *args, "-q", f"--junitxml={report}", *broker_args(broker)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"pytest {' '.join(args)} failed:\n{done.stdout[-3000:]}")
    return junit_seconds(report)


def outage_scenario(broker: Broker, work_root: Path, path: str) -> float:
    return pytest_run(broker, work_root, path)


def seed_suite(broker: Broker, work_root: Path) -> float:
    """``pytest scenarios -m seed`` against the already running broker: the seed set's own time (wall)."""
    started = time.monotonic()
    pytest_run(broker, work_root, "scenarios", "-m", "seed")
    return time.monotonic() - started


def provider_args(options: argparse.Namespace) -> list[str]:
    """The bench's own broker provider, for a pytest run that needs a broker it owns."""
    if options.broker == "docker":
        return ["--harness-broker", "docker", "--harness-rabbitmq-image", options.rabbitmq_image,
                "--harness-docker-network", options.docker_network]  # fmt: skip
    return ["--harness-broker", options.broker]


def audit(options: argparse.Namespace, work_root: Path) -> float:
    """``pytest --pyargs harness.audit`` once with a broker of its own: seconds from that broker being up to
    the end of the run (``harness.benchclock``)."""
    folder = Path(tempfile.mkdtemp(dir=work_root))
    clock = folder / "clock"
    command = [  # as a team runs it: with the run report and the audit's JSON (written under the bench's folder)
        sys.executable, "-m", "pytest", "--pyargs", "harness.audit", "-p", "harness.benchclock", "-q",
        f"--harness-report={folder / 'report'}", f"--harness-stack={options.stack_path}", *provider_args(options),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, CLOCK: str(clock)})
    if done.returncode != 0:
        raise RuntimeError(f"the audit failed:\n{done.stdout[-3000:]}")
    return float(clock.read_text())


def raw_container_boot(image: str, network: str) -> float:
    """``docker run`` of the same image and settings, polled every 20 ms: no testcontainers, no harness wait."""
    settings = container_settings(image, network, free_ports(3), f"raw-{uuid.uuid4().hex[:8]}@localhost")
    client = docker_client()
    ports = {inner: outer for inner, outer in settings.ports.items()}
    started = time.monotonic()
    container = client.containers.run(
        image, detach=True, environment=settings.env, ports=ports or None, labels=settings.labels, **settings.kwargs
    )
    try:
        while not _answer(settings.amqp_port, settings.management_port):
            if time.monotonic() - started > 120:
                raise RuntimeError("the raw container did not come up")
            time.sleep(0.02)
        return time.monotonic() - started
    finally:
        container.remove(force=True)
        client.close()


def raw_redis_boot(work_root: str) -> float:
    """A bare ``redis-server`` on the local provider's config, polled for PING every 20 ms: no harness code."""
    from harness.brokers.redis.local import LocalRedis

    server = LocalRedis(work_root=work_root)  # only for its folder, config and port
    started = time.monotonic()
    process = subprocess.Popen([server.server, str(server.config)], stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        while True:
            try:
                with socket.create_connection(("127.0.0.1", server.port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return time.monotonic() - started
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() - started > 30:
                raise RuntimeError("the raw redis-server did not come up")
            time.sleep(0.02)
    finally:
        process.kill()
        process.wait()
        shutil.rmtree(server.dir, ignore_errors=True)


def boot_redis(options: argparse.Namespace, work_root: Path, add: Callable[[str, float], None]) -> Broker:
    from harness.brokers.redis.local import LocalRedis
    from harness.brokers.redis.url import UrlRedis

    if options.broker == "url":
        broker: Broker = UrlRedis(options.broker_url or "redis://127.0.0.1:6379/15")
        add("broker_boot_s", timed(broker.start))
        return broker
    kept: Broker | None = None
    for _ in range(options.repeat):
        add("raw_broker_boot_s", raw_redis_boot(str(work_root)))
        candidate = LocalRedis(work_root=str(work_root))
        add("broker_boot_s", timed(candidate.start))
        if kept is None:
            kept = candidate
        else:
            candidate.close()
    assert kept is not None
    return kept


def redis_suite(add: Callable[[str, float], None]) -> None:
    """The Redis catalogue once, serially, on its own private server: wall time and CPU-seconds."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    seconds, _ = wall(["scenarios", "-m", "redis", "--harness-transport", "redis", "--harness-broker", "local",
                       "--harness-no-report"])  # fmt: skip
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    add("redis_suite_s", seconds)
    add("redis_suite_cpu_s", (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))


def boot(kind: str, options: argparse.Namespace, work_root: Path, add: Callable[[str, float], None]) -> Broker:
    """Measure the provider's boot (next to a raw boot of the same broker) ``repeat`` times; keep one."""
    if options.transport == "redis":
        return boot_redis(options, work_root, add)
    if kind == "url":
        broker: Broker = UrlBroker(options.broker_url or "amqp://guest:guest@127.0.0.1:5672//")
        add("broker_boot_s", timed(broker.start))
        return broker
    kept: Broker | None = None
    for _ in range(options.repeat):  # alternate, so neither side always boots on a warm cache
        if kind == "local":
            add("raw_broker_boot_s", raw_broker_boot(str(work_root)))
            candidate: Broker = LocalBroker(work_root=str(work_root))
        else:
            add("raw_container_boot_s", raw_container_boot(options.rabbitmq_image, options.docker_network))
            candidate = DockerBroker(options.rabbitmq_image, options.docker_network)
        add("broker_boot_s", timed(candidate.start))
        if kept is None:
            kept = candidate
        else:
            candidate.close()
    assert kept is not None
    return kept


def wall(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """A pytest command's wall time (it must pass) and the sum of its tests' times as JUnit reports them."""
    import os
    import xml.etree.ElementTree as ElementTree

    folder = Path(tempfile.mkdtemp(prefix="harness-bench-junit-"))
    report = folder / "junit.xml"
    try:
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "pytest", *command, "-q", "-p", "no:cacheprovider", f"--junitxml={report}"],
            capture_output=True, text=True, env={**os.environ, **(env or {})},
        )  # fmt: skip
        seconds = time.monotonic() - started
        if done.returncode != 0:
            raise RuntimeError(f"pytest {' '.join(command)} failed:\n{done.stdout[-3000:]}")
        return seconds, sum(float(case.get("time", 0)) for case in ElementTree.parse(report).iter("testcase"))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def single_scenario(options: argparse.Namespace, add: Callable[[str, float], None]) -> None:
    """One scenario file, as a person iterating on it runs it: cold (a broker booted for the run) and warm
    (``--harness-broker warm``, its node left up by a first run); and what the warm run costs beyond the
    scenario's body (its call time in JUnit)."""
    from harness.brokers.rabbitmq.warm import WarmBroker

    cold, _ = wall([options.outage, "--harness-broker", "local", "--harness-no-report"])
    add("cold_single_scenario_s", cold)
    home = tempfile.mkdtemp(prefix="harness-bench-warm-")
    env = {"HARNESS_WARM_HOME": home}
    try:
        wall([options.outage, "--harness-broker", "warm", "--harness-no-report"], env)  # boots the warm node
        for _ in range(options.repeat):
            seconds, body = wall([options.outage, "--harness-broker", "warm", "--harness-no-report", "-o",
                                  "junit_duration_report=call"], env)  # fmt: skip
            add("warm_single_scenario_s", seconds)
            add("warm_beyond_body_s", seconds - body)
    finally:
        import os

        os.environ["HARNESS_WARM_HOME"] = home
        try:
            found = WarmBroker.found()
            if found is not None:
                found.shut_down()
        finally:
            del os.environ["HARNESS_WARM_HOME"]
            shutil.rmtree(home, ignore_errors=True)


def whole_suite(options: argparse.Namespace, add: Callable[[str, float], None]) -> None:
    """The scenario suite on the local provider, serial and in parallel (``-n N`` for each N of ``--workers``,
    the first being the count the project uses: ``suite_parallel_s``), in the same run."""
    serial, _ = wall(["scenarios", "--harness-broker", "local", "--harness-no-report"])
    add("suite_serial_s", serial)
    for index, workers in enumerate(options.workers):
        try:
            parallel, _ = wall(["scenarios", "--harness-broker", "local", "--harness-no-report", "-n", str(workers)])
        except RuntimeError as failed:  # a failed run has no figure; the other counts are still measured
            print(f"suite_parallel_{workers}_workers_s: no figure, {failed}", file=sys.stderr, flush=True)
            continue
        add(f"suite_parallel_{workers}_workers_s", parallel)
        if index == 0:
            add("suite_parallel_s", parallel)


def suite_cpu(options: argparse.Namespace, add: Callable[[str, float], None]) -> None:
    """The scenarios (``--cpu-select``, default the whole suite) once at ``-n`` the first of ``--workers``, with
    their run report, as a contributor runs them: CPU-seconds in all (``suite_cpu_s``) and by kind of process
    (``cpu_<kind>_s``, from ``harness.cpu``; the pytest processes' share less the report's drawing, which the
    report's records measure), and each scenario's own, the ten dearest printed."""
    from harness.cpu import CpuAccount

    report = Path(tempfile.mkdtemp(prefix="harness-bench-cpu-report-"))
    command = [sys.executable, "-m", "pytest", *options.cpu_select, "--harness-broker", "local", "-q",
               "-p", "no:cacheprovider", "-n", str(options.workers[0]), f"--harness-report={report}"]  # fmt: skip
    try:
        with CpuAccount() as account:
            started = time.monotonic()
            done = account.run(command, capture_output=True, text=True)
            seconds = time.monotonic() - started
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}")
        kinds = account.by_kind()
        records = [json.loads(path.read_text()) for path in (report / "data").glob("*.json")]
        drawing = sum(record.get("cpu", {}).get("drawing_s", 0.0) for record in records)
        add("suite_cpu_wall_s", seconds)
        add("suite_cpu_s", sum(kinds.values()))
        for kind, value in kinds.items():
            add(f"cpu_{kind.replace(' ', '_')}_s", value - (drawing if kind == "pytest" else 0.0))
        add("cpu_report_drawing_s", drawing)
        dearest = sorted(records, key=lambda r: -sum(r.get("cpu", {}).values()))[:10]
        for record in dearest:
            cpu = record.get("cpu", {})
            parts = ", ".join(f"{name} {value:.1f}" for name, value in cpu.items())
            print(f"scenario cpu {sum(cpu.values()):6.1f} s  {record['nodeid']} ({parts})", file=sys.stderr)
    finally:
        shutil.rmtree(report, ignore_errors=True)


CPU_KINDS = {  # what each cpu_<kind>_s counts (harness.cpu sorts the processes)
    "broker": "the broker's nodes or servers (beam.smp, its port programs; redis-server)",
    "broker_tools": "the broker's command-line tools the harness runs (rabbitmqctl: restarts, alarms, settings)",
    "supervisord": "each scenario's supervisord",
    "worker": "the Celery workers and their pool processes",
    "web": "the web apps",
    "pytest": "the pytest processes (controller, xdist workers), less the report's drawing",
    "report_drawing": "the run report's plots, drawn by the processes that ran the scenarios",
    "other": "everything else: app introspection, the browser scenario's Chromium, ...",
}


def print_cpu(figures: dict[str, float], workers: int) -> None:
    """``--cpu``'s table: one run (no median), each kind's CPU-seconds and share, and what each kind counts."""
    total = figures["suite_cpu_s"]
    print(f"CPU-seconds of one run at -n {workers} (local broker): {total:.1f} in {figures['suite_cpu_wall_s']:.0f} s")
    for kind, what in CPU_KINDS.items():
        value = figures.get(f"cpu_{kind}_s", 0.0)
        print(f"  {kind.replace('_', ' '):<15} {value:7.1f}  {100 * value / total if total else 0:4.0f} %  {what}")


def measure(options: argparse.Namespace) -> dict[str, float]:
    work_root = Path(tempfile.mkdtemp(prefix="harness-bench-"))
    figures: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        figures.setdefault(name, []).append(value)
        print(f"{name} {value:.3f}", file=sys.stderr, flush=True)  # as measured: a long bench shows progress

    try:
        if options.cpu:  # on its own: the CPU of the run, not of a bench's broker booted beside it
            suite_cpu(options, add)
            return {name: round(statistics.median(values), 3) for name, values in figures.items()}
        broker = boot(options.broker, options, work_root, add)
        try:
            for _ in range(options.repeat):
                add("worker_boot_s", worker_boot(broker, options.spec, work_root))
                add("scenario_overhead_s", empty_scenario(broker, options.spec, work_root))
                add("outage_scenario_s", outage_scenario(broker, work_root, options.outage))
            if options.seed:
                add("seed_suite_s", seed_suite(broker, work_root))
        finally:
            broker.close()
        # After the bench's broker is gone (one boots at a time); the audit's own broker is RabbitMQ's here.
        if options.audit and options.broker != "url" and options.transport == "rabbitmq":
            add("audit_s", audit(options, work_root))
        if options.redis_suite:
            redis_suite(add)
        if options.single and options.transport == "rabbitmq":  # the warm broker is RabbitMQ's
            single_scenario(options, add)
        if options.suite:
            whole_suite(options, add)
    finally:
        shutil.rmtree(work_root, ignore_errors=True)
    return {name: round(statistics.median(values), 3) for name, values in figures.items()}


def _counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a worker count or a list like 3,4,6") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: worker counts are 1 or more")
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", choices=("local", "docker", "url"), default="local")
    parser.add_argument("--transport", choices=("rabbitmq", "redis"), default="rabbitmq", help="the broker family")
    parser.add_argument("--redis-suite", action="store_true", help="also run the Redis catalogue: wall and CPU")
    parser.add_argument("--rabbitmq-image", default=DEFAULT_IMAGE, help="for --broker docker")
    parser.add_argument("--docker-network", choices=NETWORKS, default="bridge", help="for --broker docker")
    parser.add_argument("--broker-url", help="for --broker url (default: the guest broker on 127.0.0.1:5672)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the median is reported")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument(
        "--no-seed", dest="seed", action="store_false", help="skip seed_suite_s (the seed scenarios, once)"
    )
    parser.add_argument(
        "--no-audit", dest="audit", action="store_false", help="skip audit_s (the resilience audit, once)"
    )
    parser.add_argument(
        "--no-single", dest="single", action="store_false",
        help="skip cold_single_scenario_s / warm_single_scenario_s (the outage scenario as one pytest run)",
    )  # fmt: skip
    parser.add_argument(
        "--suite", action="store_true", help="also suite_serial_s and suite_parallel_s (the whole suite, twice)"
    )
    parser.add_argument(
        "--workers", type=_counts, default=[3],
        help="pytest-xdist workers for suite_parallel_s; a list (3,4,6) also times the others",
    )  # fmt: skip
    parser.add_argument(
        "--cpu", action="store_true",
        help="only the CPU figures: the suite (or --cpu-select) at -n WORKERS, CPU-seconds by kind of process",
    )  # fmt: skip
    parser.add_argument(
        "--cpu-select", nargs="+", default=["scenarios", "-m", "not redis"], metavar="PYTEST_ARG",
        help="what --cpu runs (default: scenarios -m 'not redis', the RabbitMQ suite)",
    )  # fmt: skip
    parser.add_argument("--stack", default=None, help="module:attribute of the StackSpec (default: ini harness_stack)")
    parser.add_argument("--outage", default=None, help="the scenario file to time (default: the worker outage story)")
    args = parser.parse_args(argv)
    if args.outage is None:
        args.outage = OUTAGE[args.transport]
    if args.transport == "redis":
        args.seed = False  # the seed lessons are RabbitMQ's stories
    stack = args.stack or ini_value("harness_stack")
    if not stack:
        parser.error("no stack: pass --stack module:attribute, or set harness_stack in the pytest ini of this folder")
    sys.path.insert(0, str(Path.cwd()))
    args.stack_path = stack
    try:
        args.spec = load_stack(stack)
    except HarnessError as error:
        parser.error(str(error))
    figures = measure(args)
    if args.cpu:
        print_cpu(figures, args.workers[0])
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2) + "\n")
        return 0
    width = max(map(len, figures))
    print(f"{'figure':<{width}}  seconds (median of {args.repeat}, --broker {args.broker}, {args.transport})")
    for name, value in figures.items():
        print(f"{name:<{width}}  {value:8.3f}")
    raw = figures.get("raw_broker_boot_s") or figures.get("raw_container_boot_s")
    if raw:
        print(f"{'broker boot / raw':<{width}}  {figures['broker_boot_s'] / raw:8.2f}x (target <= 1.10)")
    beyond = figures["scenario_overhead_s"] - figures["worker_boot_s"]
    print(f"{'overhead - worker boot':<{width}}  {beyond:8.3f} (target <= 1.5)")
    if "warm_beyond_body_s" in figures:
        print(f"{'warm run beyond the body':<{width}}  {figures['warm_beyond_body_s']:8.3f} (target <= 2.0)")
    if "suite_serial_s" in figures:
        for workers in [n for n in args.workers if f"suite_parallel_{n}_workers_s" in figures]:
            ratio = figures[f"suite_parallel_{workers}_workers_s"] / figures["suite_serial_s"]
            print(f"{f'parallel ({workers} workers) / serial':<{width}}  {ratio:8.2f}x (target <= 0.30)")
    if "audit_s" in figures:
        print(f"{'audit, broker up':<{width}}  {figures['audit_s']:8.3f} (target <= 60)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
