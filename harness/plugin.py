"""The pytest plugin (registered through the ``pytest11`` entry point).

Fixtures, each overridable by redefining it in a conftest or test module:

- ``broker_options`` / ``broker`` (session): the RabbitMQ provider, started once per run;
- ``app_queues``: the queues a scenario's verdict and purges look at;
- ``vhost``: the scenario's own vhost on that broker (``harness.vhost.ScenarioVhost``);
- ``ledger``: Celery events of the scenario, listening before anything is sent;
- ``stack_spec`` / ``stack``: the app under test (web + workers) under supervisord, ready;
- ``web``: the HTTP client that clicks the app's button.

A problem the user must fix (no rabbitmq-server, a bad URL, a worker that cannot import) ends the
run with one sentence (``HarnessError``) instead of a traceback; every process and temporary
directory the harness made is removed on the way out, Ctrl-C included.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn, TypeVar

import pytest

from harness.brokers.base import Broker
from harness.brokers.docker import DEFAULT_IMAGE, NETWORKS
from harness.brokers.select import KINDS, BrokerOptions, choose_kind, make_broker
from harness.errors import HarnessError
from harness.ledger import Ledger
from harness.report import ReportPlugin
from harness.stack import AppStack, StackSpec
from harness.timeline import DepthSampler, Timeline
from harness.vhost import ScenarioVhost
from harness.waiting import progress_shown, set_progress_sink
from harness.web import WebClient

T = TypeVar("T")

EXIT_HARNESS_ERROR = 4  # pytest's "usage error": the run could not be set up as asked


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "Celery failure harness")
    group.addoption(
        "--broker",
        choices=KINDS,
        default=os.environ.get("HARNESS_BROKER", "auto"),
        help="RabbitMQ provider: local (a private rabbitmq-server node), url (an existing broker), "
        "docker, or auto (env HARNESS_BROKER; default auto)",
    )
    group.addoption(
        "--broker-url",
        default=os.environ.get("HARNESS_BROKER_URL"),
        help="AMQP URL of an existing broker for --broker url (env HARNESS_BROKER_URL)",
    )
    group.addoption(
        "--management-url",
        default=os.environ.get("HARNESS_MANAGEMENT_URL"),
        help="management API of the --broker-url broker (default: http://<host>:15672 if it answers)",
    )
    group.addoption(
        "--rabbitmq-server",
        default=os.environ.get("HARNESS_RABBITMQ_SERVER"),
        help="rabbitmq-server script for --broker local (default: the one on PATH)",
    )
    group.addoption("--rabbitmq-port", type=int, default=None, help="AMQP port of the local node (default: a free one)")
    group.addoption(
        "--rabbitmq-image",
        default=os.environ.get("HARNESS_RABBITMQ_IMAGE"),
        help=f"image for --broker docker (env HARNESS_RABBITMQ_IMAGE; default {DEFAULT_IMAGE})",
    )
    group.addoption(
        "--docker-network",
        choices=NETWORKS,
        default=os.environ.get("HARNESS_DOCKER_NETWORK", "bridge"),
        help="bridge: published ports (default); host: the container shares the host's network, for machines "
        "where containers may only use loopback (env HARNESS_DOCKER_NETWORK)",
    )
    group.addoption(
        "--docker-ryuk",
        action="store_true",
        default=False,
        help="let testcontainers' reaper (Ryuk) run too; off by default: the harness removes its own containers",
    )
    group.addoption(
        "--report",
        default=os.environ.get("HARNESS_REPORT", "harness-report"),
        help="folder for the run report (index.html + data/*.json); default harness-report in the rootdir",
    )
    group.addoption("--no-report", action="store_true", default=False, help="write no run report")
    group.addoption(
        "--progress",
        choices=("auto", "on", "off"),
        default="auto",
        help='show long waits\' progress ("hello_queue to drain: 12 ready"); auto: on a terminal only',
    )
    group.addoption(
        "--broker-boot-timeout",
        type=float,
        default=float(os.environ.get("HARNESS_BROKER_BOOT_TIMEOUT", 90)),
        help="seconds a local node or container may take to answer (default 90)",
    )


def _to_terminal(config: pytest.Config, write) -> None:
    """Write to the terminal from inside a test, past pytest's output capture."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    if capture is None:
        write(reporter)
        return
    with capture.global_and_fixture_disabled():
        write(reporter)


class TerminalProgress:
    """Shows a long wait's progress on a line of its own, rewritten in place (terminals only)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.active = False

    def __call__(self, text: str, final: bool) -> None:
        _to_terminal(self.config, lambda reporter: self._show(reporter, text, final))

    def _show(self, reporter, text: str, final: bool) -> None:
        if not self.active:
            reporter.ensure_newline()
            self.active = True
        reporter.rewrite(f"  harness: {text}", light=not final)
        if final:
            reporter.write("\n")
            self.active = False


@pytest.hookimpl(trylast=True)  # after the terminal reporter exists
def pytest_configure(config: pytest.Config) -> None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    wanted = config.getoption("progress")
    if reporter is not None and (wanted == "on" or (wanted == "auto" and reporter.isatty)):
        set_progress_sink(TerminalProgress(config))
    folder = config.getoption("report")
    if folder and not config.getoption("no_report") and not hasattr(config, "workerinput"):
        path = Path(folder)
        if not path.is_absolute():
            path = config.rootpath / path
        config.pluginmanager.register(ReportPlugin(path), "harness-report")


def _broker_options(config: pytest.Config, work_root: str | None = None) -> BrokerOptions:
    return BrokerOptions(
        kind=config.getoption("broker"),
        url=config.getoption("broker_url"),
        management_url=config.getoption("management_url"),
        rabbitmq_server=config.getoption("rabbitmq_server"),
        rabbitmq_port=config.getoption("rabbitmq_port"),
        work_root=work_root,
        image=config.getoption("rabbitmq_image"),
        docker_network=config.getoption("docker_network"),
        docker_ryuk=config.getoption("docker_ryuk"),
        boot_timeout=config.getoption("broker_boot_timeout"),
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    set_progress_sink(None)


def pytest_report_header(config: pytest.Config) -> str:
    options = _broker_options(config)
    try:
        kind = choose_kind(options)
    except HarnessError:
        return "harness: no broker available (a scenario that needs one will say why)"
    if options.kind != "auto":
        return f"harness: broker {kind}"
    why = {
        "url": "a broker URL was given",
        "docker": "a Docker engine answers and has the image",
        "local": f"no Docker engine with image {options.image or DEFAULT_IMAGE} answered; rabbitmq-server found",
    }[kind]
    return f"harness: broker {kind} (auto: {why})"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "scenarios" in Path(str(item.path)).parts:
            item.add_marker(pytest.mark.scenario)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    # A failed scenario's report carries what a reader needs: each program's stderr and every
    # task's event history.
    app = getattr(item, "funcargs", {}).get("stack")
    if report.when == "call" and report.failed and isinstance(app, AppStack):
        try:
            for name, text in app.logs().items():
                report.sections.append((f"{name} stderr (tail)", text))
            report.sections.append(("task ledger", app.verdict().explain() or "no tasks"))
        except Exception as exc:  # the stack may be what broke; the failure itself matters more
            report.sections.append(("harness", f"could not collect logs: {exc!r}"))
    return report


def _fail_run(error: HarnessError) -> NoReturn:
    pytest.exit(f"harness: {error}", returncode=EXIT_HARNESS_ERROR)


@contextmanager
def _opened(open_: Callable[[], T]) -> Iterator[T]:
    """Open a scenario resource, ending the run with its one sentence if it cannot be; close it after."""
    try:
        resource = open_()
    except HarnessError as error:
        _fail_run(error)
    try:
        yield resource
    finally:
        resource.close()  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def harness_workdir() -> Iterator[Path]:
    """One temporary directory for the run (broker node, supervisord configs, logs); removed after."""
    path = Path(tempfile.mkdtemp(prefix="harness-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def broker_options(pytestconfig: pytest.Config, harness_workdir: Path) -> BrokerOptions:
    return _broker_options(pytestconfig, str(harness_workdir))


@pytest.fixture(scope="session")
def broker(broker_options: BrokerOptions, request: pytest.FixtureRequest) -> Iterator[Broker]:
    """The session's RabbitMQ, started once; stopped (if the harness owns it) at the end."""
    try:
        instance = make_broker(broker_options)
    except HarnessError as error:
        _fail_run(error)
    if instance.owned and progress_shown():
        starting = f"\nharness: starting the {instance.kind} broker"
        _to_terminal(request.config, lambda reporter: reporter.write_line(starting))
    try:
        instance.start()
    except HarnessError as error:
        instance.close()
        _fail_run(error)
    except BaseException:  # Ctrl-C during the boot: stop what was started before the workdir goes
        instance.close()
        raise
    problem = getattr(instance, "management_problem", None)
    if problem:
        _to_terminal(request.config, lambda reporter: reporter.write_line(f"\nharness: {problem}", yellow=True))
    try:
        yield instance
    finally:
        instance.close()


@pytest.fixture
def owned_broker(broker: Broker) -> Broker:
    """The broker, for scenarios that stop or freeze it; skipped on a broker the harness does not own."""
    if not broker.owned:
        pytest.skip(f"the {broker.kind} broker is not the harness's to stop or freeze (it did not start it)")
    return broker


@pytest.fixture
def app_queues() -> tuple[str, ...]:
    """The application's queues: purged when vhosts are shared, peeked for the verdict."""
    return ("hello_queue",)


@pytest.fixture
def vhost(broker: Broker, request: pytest.FixtureRequest, app_queues: tuple[str, ...]) -> Iterator[ScenarioVhost]:
    label = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name).strip("-")
    with _opened(lambda: ScenarioVhost.open(broker, label, app_queues)) as scenario_vhost:
        yield scenario_vhost


@pytest.fixture
def dead_letter_queue(vhost: ScenarioVhost) -> str:
    """hello_queue's dead letters: where rejected messages go instead of vanishing (needs the management API)."""
    if not vhost.isolated:
        pytest.skip("dead-lettering needs the broker's management API, which this url broker does not offer")
    return vhost.dead_letter("hello_queue")


@pytest.fixture
def ledger(vhost: ScenarioVhost) -> Iterator[Ledger]:
    with _opened(lambda: Ledger(vhost.amqp_url).start()) as task_ledger:
        yield task_ledger


@pytest.fixture
def timeline(broker: Broker, vhost: ScenarioVhost, ledger: Ledger, app_queues: tuple[str, ...]) -> Iterator[Timeline]:
    """The scenario's timeline: queue depths sampled every 100 ms, and every operator or fault action.

    Each broker fault call is marked on it; once a stopped or frozen broker is back, the call returns
    only when the ledger listens to Celery events again, so no event after it can be missed.
    """
    scenario_timeline = Timeline()
    sampler = DepthSampler(vhost, app_queues, scenario_timeline).start()

    def on_fault(what: str) -> None:
        scenario_timeline.mark(what)
        if what in ("broker back", "broker resumed"):
            ledger.wait_listening_since(scenario_timeline.last_mark_of(("broker stopped", "broker frozen")))

    broker.on_fault = on_fault
    try:
        yield scenario_timeline
    finally:
        broker.on_fault = None
        sampler.stop()


@pytest.fixture
def stack_spec(request: pytest.FixtureRequest) -> StackSpec:
    """What the scenario runs: the default app, or a StackSpec given by indirect parametrization
    (``@pytest.mark.parametrize("stack_spec", [StackSpec(...)], indirect=True)``); redefine this
    fixture to change it for a whole module."""
    return getattr(request, "param", StackSpec())


@pytest.fixture
def stack(
    stack_spec: StackSpec,
    vhost: ScenarioVhost,
    ledger: Ledger,
    timeline: Timeline,
    harness_workdir: Path,
) -> Iterator[AppStack]:
    workdir = Path(tempfile.mkdtemp(prefix="sc-", dir=harness_workdir))
    app = AppStack(stack_spec, vhost, ledger, workdir, timeline)
    try:
        try:
            app.start()
        except HarnessError as error:
            _fail_run(error)
        yield app
    finally:
        app.close()


@pytest.fixture
def web(stack: AppStack) -> WebClient:
    if stack.web is None:
        pytest.skip("this scenario's stack_spec runs no web app")
    return stack.web
