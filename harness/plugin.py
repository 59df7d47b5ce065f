"""The pytest plugin (registered through the ``pytest11`` entry point): options, markers and hooks.

The fixtures live in ``harness.fixtures``, the options in ``harness.options``, the run report in
``harness.report``; this module wires them in. A test is a scenario because it uses the ``stack``
fixture (or carries ``@pytest.mark.scenario``), wherever it lives; nothing about brokers or Docker is
probed unless a scenario is collected.
"""

from __future__ import annotations

import signal
import threading
import uuid
from pathlib import Path

import pytest

from harness import options
from harness.audit.results import FOLDER as AUDIT_FOLDER
from harness.audit.results import AuditRecorder, is_audit_run
from harness.brokers.select import auto_reason, choose_kind, resolve_transport
from harness.bytecode import RunBytecodeCache, cache_for_run
from harness.errors import HarnessError
from harness.keep import KeepOnFailure
from harness.report import ReportPlugin
from harness.stack import AppStack
from harness.terminal import TerminalProgress, notice
from harness.waiting import WaitTimeout, set_progress_sink
from harness.xdist_root import WorkersRoot

pytest_plugins = ["harness.fixtures", "harness.deploy.fixtures"]

MARKERS = (
    "scenario: a failure scenario that runs against the real stack (added to every test that uses the stack)",
    "celery_config(**settings): Celery settings the harness applies to the app in every program of the scenario",
    "audit(*failures): a scenario of the resilience audit, and the failures (rows of its table) it fills in",
    "worker_fault: failures of a worker (killed, stopped, shut down)",
    "pools: the worker faults that differ by pool (prefork, threads, solo, gevent), and a container's stop",
    "broker_fault: failures of the broker (restarted, unreachable, its timeouts); skipped on a url broker",
    "beat: celery beat: periodic runs sent twice, missed, caught up or run stale (verdict.periodic)",
    "bad_message: undecodable or unaccepted messages",
    "limits: time limits, retries and broker timeouts",
    "quorum: quorum queues (RabbitMQ 3.8+; what changes with RabbitMQ 4 and Celery 5.5+)",
    "network_fault: the network between a program and the broker (blackholed, reset, slow, partitioned)",
    "rabbitmq: a story of RabbitMQ's behaviour: runs only with --harness-transport rabbitmq (skipped on another)",
    "redis: a story of Redis's behaviour: runs only with --harness-transport redis (skipped on another)",
)


BYTECODE = pytest.StashKey[RunBytecodeCache | None]()


def pytest_addoption(parser: pytest.Parser) -> None:
    options.add_options(parser)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.hookimpl(trylast=True)  # after the terminal reporter exists
def pytest_configure(config: pytest.Config) -> None:
    # SIGTERM (a CI runner cancelling a job, `kill`) ends pytest with no teardown at all: make it a Ctrl-C,
    # whose teardown stops brokers and programs and removes their folders.
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt)
    for marker in MARKERS:
        config.addinivalue_line("markers", marker)
    if not hasattr(config, "workerinput"):  # the run's first process: the workers and programs inherit it
        config.stash[BYTECODE] = cache_for_run()
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    wanted = options.get(config, "harness_progress")
    if reporter is not None and (wanted == "on" or (wanted == "auto" and reporter.isatty)):
        set_progress_sink(TerminalProgress(config))
    if options.get(config, "keep_on_failure") and not hasattr(config, "workerinput"):
        config.pluginmanager.register(KeepOnFailure(config), "harness-keep-on-failure")
    folder = report_folder(config)
    if folder and not options.get(config, "harness_no_report"):
        path = Path(folder)
        if not path.is_absolute():
            path = config.rootpath / path
        worker = getattr(config, "workerinput", None)  # a pytest-xdist worker: records only, the controller writes
        run_id = worker.get("harness_report_run_id", "run") if worker else uuid.uuid4().hex[:12]
        config.pluginmanager.register(ReportPlugin(path, run_id, writes_page=worker is None), "harness-report")
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(AuditRecorder(audit_json_path(config)), "harness-audit")
        if config.pluginmanager.hasplugin("xdist"):
            config.pluginmanager.register(WorkersRoot(), "harness-workers-root")


def report_folder(config: pytest.Config) -> str:
    """The run report's folder: ``--harness-report`` as given, else the configured one (``harness-report``
    by default), with the audit's report in its ``audit`` subfolder so that it leaves the scenarios' be."""
    folder = options.get(config, "harness_report")
    if folder and config.getoption("harness_report", default=None) is None and is_audit_run(config):
        return str(Path(folder) / AUDIT_FOLDER)
    return folder


def audit_json_path(config: pytest.Config) -> Path:
    """``--audit-json``, else ``audit.json`` in the report folder; relative to the rootdir."""
    path = Path(options.get(config, "audit_json") or Path(report_folder(config)) / "audit.json")
    return path if path.is_absolute() else config.rootpath / path


def pytest_unconfigure(config: pytest.Config) -> None:
    set_progress_sink(None)
    cache = config.stash.get(BYTECODE, None)
    if cache is not None:
        cache.close()


def is_scenario(item: pytest.Item) -> bool:
    return "stack" in getattr(item, "fixturenames", ()) or item.get_closest_marker("scenario") is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "stack" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.scenario)


def pytest_report_header(config: pytest.Config) -> str:
    """The broker family asked for, and on RabbitMQ the version (the one that ran is said once the broker answers,
    and in the report)."""
    transport = options.get(config, "harness_transport")
    if transport != "rabbitmq":
        return f"harness: transport {transport} (--harness-transport)"
    return f"harness: RabbitMQ version {options.get(config, 'harness_rabbitmq_version')} (--harness-rabbitmq-version)"


def pytest_collection_finish(session: pytest.Session) -> None:
    """Say which broker the scenarios will use, once, and only if any scenario was collected."""
    if not any(is_scenario(item) for item in session.items) or hasattr(session.config, "workerinput"):
        return
    broker_options = options.broker_options_from(session.config)
    try:
        transport, _ = resolve_transport(broker_options)
        if broker_options.transport == "auto":
            return  # the app decides: the broker fixture says which, once it has read the app
        kind = choose_kind(broker_options)
    except HarnessError:
        return  # each scenario will say why
    why = f" (auto: {auto_reason(kind, transport)})" if broker_options.kind == "auto" else ""
    notice(session.config, f"harness: broker {kind}{why}, transport {transport}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    # A problem the user must fix, met inside a test body: its one sentence, not a traceback.
    if call.excinfo is not None and call.excinfo.errisinstance(HarnessError) and report.failed:
        report.longrepr = f"harness: {call.excinfo.value}"
    # A failed scenario's report carries what a reader needs: each program's stderr and every task's
    # history, with the witness that saw each step.
    app = getattr(item, "funcargs", {}).get("stack")
    if report.when == "call" and report.failed and isinstance(app, AppStack):
        try:
            if stopped := app.not_running():  # the likeliest cause first: a program that exited
                report.sections.append(("harness: programs not running", "\n".join(stopped)))
            if idle := app.unconsumed():  # then a queue whose tasks wait for a consumer that never comes
                report.sections.append(("harness: queues no one consumes", "\n".join(idle)))
            for name, text in app.logs().items():
                report.sections.append((f"{name} stderr (tail)", text))
            if call.excinfo is not None and call.excinfo.errisinstance(WaitTimeout):  # something did not happen
                for name, text in app.stacks().items():
                    report.sections.append((f"{name} threads (py-spy dump)", text))
            verdict = app.verdict()
            report.sections.append(("task ledger", verdict.explain() or "no tasks"))
            if verdict.children is not None and verdict.children.total():
                report.sections.append(("tasks sent by tasks", verdict.children.explain() or "none"))
            if verdict.periodic is not None:
                report.sections.append(("periodic runs (celery beat)", str(verdict.periodic)))
                if verdict.periodic_tasks is not None:
                    report.sections.append(("tasks sent by beat", verdict.periodic_tasks.explain() or "none"))
        except Exception as exc:  # the stack may be what broke; the failure itself matters more
            report.sections.append(("harness", f"could not collect logs: {exc!r}"))
    return report
