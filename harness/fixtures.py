"""The plugin's fixtures. Each can be overridden by redefining it in a conftest or test module.

Session: ``broker_options`` / ``broker`` (the RabbitMQ provider, started once), ``harness_workdir``,
``app_info`` (what the app under test declares, read in a process of its own).
Scenario: ``stack_spec`` (what to run) and ``celery_config`` (the ``celery_config`` marker), ``vhost``
(the scenario's own), ``ledger`` (every task's history, listening before anything is sent),
``timeline``, ``stack`` (the app under supervisord, ready), ``producer``, ``net``, ``web``, ``owned_broker`` (for
broker faults; skips on a broker the harness does not own), ``dead_letters`` (a dead-letter queue for
one of the app's queues).

A problem the user must fix (no broker, an app that does not import, a worker that cannot start) makes
the scenarios that need it error with one sentence, shown in pytest's summary; the user's other tests
run on. Whatever the harness started is removed on the way out, Ctrl-C included.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import pytest

from harness import options, screen
from harness.app_info import AppInfo, introspect, own_transport
from harness.brokers import TRANSPORTS
from harness.brokers.base import Broker
from harness.brokers.select import BrokerOptions, make_broker, resolve_transport
from harness.errors import HarnessError, HarnessWarning
from harness.introspect import routed_queues
from harness.ledger import Ledger
from harness.netfaults import NetFaults
from harness.options import broker_options_from
from harness.sent import Sender
from harness.space import ScenarioSpace
from harness.spec import StackSpec, WebSpec, WorkerSpec
from harness.stack import AppStack
from harness.terminal import notice
from harness.timeline import DepthSampler, Timeline
from harness.waiting import progress_shown
from harness.web import WebClient
from harness.xdist_root import workers_root

T = TypeVar("T")


def harness_error(error: HarnessError | str) -> NoReturn:
    """End the current test with the one sentence, as an error (not a traceback from a library). Call it
    outside an ``except`` block, or pytest shows the exception it replaces too."""
    pytest.fail(f"harness: {error}", pytrace=False)


def attempt(action: Callable[[], T]) -> T:
    """``action()``, or the test ends with the one sentence of the HarnessError it raised."""
    try:
        return action()
    except HarnessError as error:
        problem = error
    harness_error(problem)


@contextmanager
def opened(open_: Callable[[], T]) -> Iterator[T]:
    """Open a scenario resource, failing the test with its one sentence if it cannot be; close it after."""
    resource = attempt(open_)
    try:
        yield resource
    finally:
        resource.close()  # type: ignore[attr-defined]


# -- session ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def harness_workdir(pytestconfig: pytest.Config) -> Iterator[Path]:
    """One temporary directory for the run (broker node, supervisord configs, logs); removed after."""
    path = Path(tempfile.mkdtemp(prefix="harness-", dir=workers_root(pytestconfig)))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def broker_options(
    pytestconfig: pytest.Config, harness_workdir: Path, _introspections: dict[tuple, AppInfo]
) -> BrokerOptions:
    """The run's broker options, the family resolved: ``--harness-transport auto`` follows the app's own broker
    (the default stack's app, read once)."""
    chosen = broker_options_from(pytestconfig, str(harness_workdir))
    app_transport = None
    if chosen.transport == "auto" and not chosen.url:
        spec = attempt(lambda: default_spec(pytestconfig))
        info = app_info_for(spec, pytestconfig, _introspections, harness_workdir)
        app_transport = attempt(lambda: own_transport(info.result())) if info is not None else None
    transport, why = attempt(lambda: resolve_transport(chosen, app_transport))
    if why:
        notice(pytestconfig, f"harness: transport {transport} (auto: {why})")
    return dataclasses.replace(chosen, transport=transport)


@pytest.fixture(scope="session")
def broker(broker_options: BrokerOptions, pytestconfig: pytest.Config) -> Iterator[Broker]:
    """The session's RabbitMQ, started once; stopped (if the harness owns it) at the end."""
    instance = attempt(lambda: make_broker(broker_options))
    if instance.owned and progress_shown():
        notice(pytestconfig, f"harness: starting the {instance.kind} broker")
    try:
        attempt(instance.start)
    except BaseException:  # the one sentence, or Ctrl-C during the boot: stop what was started
        instance.close()
        raise
    try:
        attempt(lambda: instance.check_version(broker_options.rabbitmq_version))
        if instance.owned:
            notice(pytestconfig, f"harness: {instance.product} {instance.server_version()} ({instance.kind} broker)")
    except BaseException:
        instance.close()
        raise
    problem = getattr(instance, "management_problem", None)
    if problem:
        notice(pytestconfig, f"harness: {problem}", yellow=True)
    try:
        yield instance
    finally:
        instance.close()
        if instance.kind == "warm":
            notice(pytestconfig, "harness: the warm broker stays up for the next run (python -m harness broker stop)")


@pytest.fixture(scope="session")
def rabbitmq_version(broker: Broker) -> tuple[int, ...]:
    """The broker's RabbitMQ version as numbers, e.g. ``(4, 0, 5)``: a scenario whose outcome depends on it
    asserts per version (``if rabbitmq_version >= (4,): ...``) instead of skipping."""
    return tuple(int(part) for part in re.findall(r"\d+", attempt(broker.server_version))[:3])


@pytest.fixture(scope="session")
def _introspections() -> dict[tuple, AppInfo]:
    return {}


@pytest.fixture
def app_info(
    stack_spec: StackSpec, pytestconfig: pytest.Config, _introspections: dict, harness_workdir: Path
) -> AppInfo | None:
    """What the stack's Celery app declares (queues, tasks, settings); read once per app and session, in the
    background (``app_info.result()`` or ``app_info["queues"]`` wait for it)."""
    return app_info_for(stack_spec, pytestconfig, _introspections, harness_workdir)


def app_info_for(
    stack_spec: StackSpec, pytestconfig: pytest.Config, _introspections: dict, harness_workdir: Path
) -> AppInfo | None:
    """The reading of ``stack_spec``'s app, started once per app and session (None: the stack names no app)."""
    stack_spec = as_named(stack_spec, pytestconfig)
    if not stack_spec.celery_app:
        return None
    cwd = str(Path(stack_spec.cwd or pytestconfig.rootpath).resolve())
    key = (stack_spec.celery_app, cwd, stack_spec.python, tuple(sorted(stack_spec.env.items())))
    if key not in _introspections:
        app = stack_spec.celery_app
        from_option = app == options.get(pytestconfig, "celery_app")
        named_by = (options.origin(pytestconfig, "celery_app") if from_option else None) or "the stack's celery_app"

        _introspections[key] = AppInfo(
            lambda: introspect(app, cwd, stack_spec.python, harness_workdir, env=stack_spec.env, named_by=named_by)
        )
    return _introspections[key]


# -- a scenario ------------------------------------------------------------------------------------


@pytest.fixture
def owned_broker(broker: Broker) -> Iterator[Broker]:
    """The broker, for scenarios that stop, freeze or reconfigure it; skipped on a broker the harness does not own.
    What a scenario changed on the whole broker (Redis's persistence) is undone after it."""
    if not broker.owned:
        pytest.skip(f"the {broker.kind} broker is not the harness's to stop or freeze (it did not start it)")
    try:
        yield broker
    finally:
        broker.after_scenario()


@pytest.fixture
def app_queues(app_info: AppInfo | None) -> Callable[[], tuple[str, ...]]:
    """The queues the app declares (when first needed): purged on a shared (url, no management) vhost, the
    verdict's fallback, and what a queue named in a scenario is checked against."""
    return lambda: attempt(lambda: tuple(app_info["queues"])) if app_info else ()


@pytest.fixture
def scenario_dir(harness_workdir: Path) -> Path:
    """The scenario's own directory: supervisord's config and logs, the programs' journals."""
    return Path(tempfile.mkdtemp(prefix="sc-", dir=harness_workdir))


def someone_watches(config: pytest.Config) -> bool:
    """Whether a person is likely to look at the broker while the run goes on: the output is not captured
    (``-s``), or a failed scenario stays up for them (``--keep-on-failure``)."""
    return config.getoption("capture", default=None) == "no" or bool(options.get(config, "keep_on_failure"))


@pytest.fixture
def vhost(
    broker: Broker, request: pytest.FixtureRequest, app_queues: Callable[[], tuple[str, ...]]
) -> Iterator[ScenarioSpace]:
    """The scenario's own space on the broker: a fresh vhost on RabbitMQ with the management API, a database of
    its own on a Redis the harness started (see ``harness.space``); with ``-s`` or ``--keep-on-failure``, where
    RabbitMQ's management UI is is said on the terminal."""
    for family in TRANSPORTS:  # a story of one broker family's behaviour runs on that family only
        if request.node.get_closest_marker(family) is not None and broker.transport != family:
            pytest.skip(f"a {family} story; this run's transport is {broker.transport} (--harness-transport {family})")
    label = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name).strip("-")
    with opened(lambda: broker.open_space(label, app_queues)) as scenario_vhost:
        if someone_watches(request.config) and broker.transport == "rabbitmq":
            endpoint = broker.endpoint
            where = screen.management_where(
                endpoint.management_url, endpoint.user, endpoint.password, scenario_vhost.name
            )
            notice(request.config, f"harness: {request.node.name}: RabbitMQ UI {where}")
        yield scenario_vhost


@pytest.fixture
def space(vhost: ScenarioSpace) -> ScenarioSpace:
    """The ``vhost`` fixture under the name that fits every broker family (a Redis database is no vhost)."""
    return vhost


@pytest.fixture
def ledger(vhost: ScenarioSpace, scenario_dir: Path) -> Iterator[Ledger]:
    """Every task's history: Celery events (listening before anything is sent) and the programs' journals."""
    with opened(lambda: Ledger(vhost.url, scenario_dir / "journal").start()) as task_ledger:
        yield task_ledger


@pytest.fixture
def timeline(broker: Broker, vhost: ScenarioSpace, ledger: Ledger) -> Iterator[Timeline]:
    """The scenario's timeline: queue depths sampled every 100 ms, and every operator or fault action.

    The broker's faults are recorded on it and followed by the ledger: once a stopped or frozen broker
    is back, the fault call returns only when the ledger listens again.
    """
    scenario_timeline = Timeline()
    sampler = DepthSampler(vhost, scenario_timeline).start()
    with ExitStack() as stack:
        stack.enter_context(broker.faults.subscribed(scenario_timeline.record))
        stack.enter_context(broker.faults.subscribed(ledger.observe))
        try:
            yield scenario_timeline
        finally:
            sampler.stop()


@pytest.fixture
def celery_config(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The scenario's Celery settings: every ``@pytest.mark.celery_config(...)`` on it, the closest winning."""
    settings: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers("celery_config"))):
        if marker.args:
            raise pytest.UsageError(
                "@pytest.mark.celery_config takes settings as keywords: celery_config(task_acks_late=True)"
            )
        settings.update(marker.kwargs)
    return settings


def load_stack(path: str) -> StackSpec:
    """``--harness-stack module:attribute``: a StackSpec, or a function returning one."""
    from harness.launcher import LaunchError, load_object

    try:
        found = load_object(path, "--harness-stack")
    except LaunchError as error:
        raise HarnessError(str(error)) from None
    spec = found() if callable(found) and not isinstance(found, StackSpec) else found
    if not isinstance(spec, StackSpec):
        raise HarnessError(f"--harness-stack {path} gave a {type(spec).__name__}, not a StackSpec")
    return spec


def spec_from(stack: str | None, celery_app: str | None, web_app: str | None, rootpath: Path) -> StackSpec:
    """``stack`` (``--harness-stack``) if given, imported from ``rootpath``, with the apps ``--celery-app`` /
    ``--web-app`` name in place of its own (an app named is never ignored); else the stack from those two: one
    worker, and the web app if one is named."""
    if stack:
        if str(rootpath) not in sys.path:
            sys.path.insert(0, str(rootpath))
        return with_apps(load_stack(stack), celery_app, web_app)
    return StackSpec(celery_app=celery_app, web=WebSpec(app=web_app) if web_app else None, workers=(WorkerSpec(),))


def with_apps(spec: StackSpec, celery_app: str | None, web_app: str | None) -> StackSpec:
    """``spec`` with the apps named in place of its own (None: its own stays)."""
    if celery_app and celery_app != spec.celery_app:
        spec = spec.replace(celery_app=celery_app)
    if web_app and (spec.web is None or web_app != spec.web.app):
        spec = spec.replace(web=spec.web.replace(app=web_app) if spec.web else WebSpec(app=web_app))
    return spec


def as_named(spec: StackSpec, config: pytest.Config) -> StackSpec:
    """The apps ``--celery-app`` / ``--web-app`` name on the command line in place of the spec's, whichever
    fixture made it (a conftest's own ``stack_spec``, a parametrized one): an app typed there is never ignored."""
    return with_apps(spec, config.getoption("celery_app", default=None), config.getoption("web_app", default=None))


def default_spec(config: pytest.Config) -> StackSpec:
    """The stack the options name (or their ini keys): see ``spec_from``."""
    return spec_from(
        options.get(config, "harness_stack"),
        options.get(config, "celery_app"),
        options.get(config, "web_app"),
        config.rootpath,
    )


@pytest.fixture
def stack_spec(request: pytest.FixtureRequest, pytestconfig: pytest.Config) -> StackSpec:
    """What the scenario runs: the default stack, or a StackSpec given by indirect parametrization
    (``@pytest.mark.parametrize("stack_spec", [StackSpec(...)], indirect=True)``); redefine this fixture to
    change it for a module or a whole suite."""
    param = getattr(request, "param", None)
    if isinstance(param, StackSpec):
        return param
    base = attempt(lambda: default_spec(pytestconfig))
    if param is None:
        return base
    if callable(param):  # a change to the default stack: lambda spec: spec.with_worker_app("proj.v2:app")
        return param(base)
    harness_error(
        f"a stack_spec parameter must be a StackSpec or a function of the default one, not {type(param).__name__} "
        f"{param!r}; a fixture that redefines stack_spec receives the parameter first: read request.param there"
    )


def parameter_undone(request: pytest.FixtureRequest, spec: StackSpec) -> str | None:
    """Why this test's ``stack_spec`` parameter is not what runs, if so: the default fixture applied it, then a
    redefinition of ``stack_spec`` that does not read ``request.param`` changed the spec again, over it."""
    callspec = getattr(request.node, "callspec", None)
    if callspec is None or "stack_spec" not in callspec.params:
        return None
    # The fixtures named stack_spec this test sees, the most specific last (pytest keeps them there).
    definitions = getattr(getattr(request.node, "_fixtureinfo", None), "name2fixturedefs", {}).get("stack_spec", ())
    if len(definitions) < 2 or "request" in definitions[-1].argnames:  # not redefined, or it reads the parameter
        return None
    param = callspec.params["stack_spec"]
    wanted = param if isinstance(param, StackSpec) else param(spec) if callable(param) else spec
    if wanted == spec:
        return None
    where = inspect.getsourcefile(definitions[-1].func) or "a conftest.py"
    return (
        f"this test's stack_spec parameter is undone by the stack_spec fixture of {os.path.relpath(where)}, which "
        "changes the spec after the parameter was applied: take `request` in that fixture and apply request.param "
        "last (docs/guides/your-app.md: 'If you redefine the stack_spec fixture')"
    )


@pytest.fixture
def stack(
    stack_spec: StackSpec,
    vhost: ScenarioSpace,
    ledger: Ledger,
    timeline: Timeline,
    scenario_dir: Path,
    celery_config: Mapping[str, Any],
    app_info: AppInfo | None,
    pytestconfig: pytest.Config,
    request: pytest.FixtureRequest,
) -> Iterator[AppStack]:
    """The app under supervisord, every program ready, the producer bound."""
    if app_info is not None and app_info.error is not None:  # the app does not import: say why at once
        harness_error(app_info.error)
    undone = parameter_undone(request, stack_spec)
    if undone is not None:
        warnings.warn(HarnessWarning(undone), stacklevel=1)
    stack_spec = as_named(stack_spec, pytestconfig)
    ready_timeout = options.get(pytestconfig, "harness_ready_timeout")
    if stack_spec.ready_timeout is None and ready_timeout is not None:
        stack_spec = stack_spec.replace(ready_timeout=ready_timeout)
    app = attempt(
        lambda: AppStack(
            stack_spec, vhost, ledger, scenario_dir, timeline, celery_config, cwd=str(pytestconfig.rootpath)
        )
    )
    try:
        try:
            app.launch()
        except HarnessError as error:  # the reading of the app may say it better than a program's stderr
            problem = (app_info.error if app_info is not None and app_info.done else None) or error
        else:
            problem = None
        if problem is not None:
            harness_error(problem)
        if app_info is not None:
            attempt(lambda: check_worker_queues(stack_spec, app_info.result()))
            say_other_transport(pytestconfig, stack_spec, app_info.result(), vhost.transport)
            app.routed_queues = routed_queues(app_info.result())
            for line in app.unconsumed():  # every worker is consuming by now: what has no consumer has none
                warnings.warn(HarnessWarning(line), stacklevel=1)
        yield app
    finally:
        app.close()


_told_other_transport: set[str] = set()


def say_other_transport(config: pytest.Config, spec: StackSpec, info: dict[str, Any], transport: str) -> None:
    """An app configured for one broker family and tested on another is said so, once per app: its fates and its
    audit describe a broker it does not use."""
    own = own_transport(info)
    if own is None or own == transport or spec.celery_app in _told_other_transport:
        return
    _told_other_transport.add(spec.celery_app or "")
    notice(
        config,
        f"harness: {spec.celery_app} is configured for {own} but is tested on {transport}; test it on its own broker "
        f"with --harness-transport {own} (or auto)",
        yellow=True,
    )


def check_worker_queues(spec: StackSpec, app_info: dict[str, Any]) -> None:
    """A worker told to consume a queue the app does not declare would wait forever: say so at once."""
    declared = set(app_info["queues"])
    for worker in spec.workers:
        if worker.celery_app not in (None, spec.celery_app) or not worker.queues:
            continue
        unknown = sorted(set(worker.queues) - declared)
        if unknown:
            raise HarnessError(
                f"worker {worker.name} consumes {', '.join(map(repr, unknown))}, which the app does not declare; "
                f"its queues: {', '.join(sorted(declared))}; fix WorkerSpec(queues=...)"
            )


@pytest.fixture
def producer(stack: AppStack) -> Sender:
    """The stack's producer, bound: ``producer.send()``, ``producer.send_many(20)``."""
    if stack.producer is None:
        harness_error(
            "this scenario sends tasks but its stack has no producer: give the StackSpec a producer= "
            "(HttpProducer('/path', ...) for a web route, or DirectProducer('proj.tasks.name', args=...))"
        )
    return stack.producer


@pytest.fixture
def net(stack: AppStack) -> NetFaults:
    """The network between each program of the stack and the broker (``stack.net``): blackhole, partition,
    reset, latency."""
    return stack.net


@pytest.fixture
def web(stack: AppStack) -> WebClient:
    if stack.web is None:
        pytest.skip("this scenario's stack runs no web app")
    return stack.web


@pytest.fixture
def private_redis(scenario_dir: Path, timeline: Timeline) -> Iterator[Any]:
    """A private ``redis-server`` on a free port for the scenario (e.g. its result backend), stopped after;
    never the system Redis (see ``harness.redis_server``); its crashes are marked on the timeline."""
    from harness.redis_server import RedisServer

    with opened(
        lambda: RedisServer(scenario_dir / "redis", timeline.record, "result backend (redis)").start()
    ) as server:
        yield server


@pytest.fixture
def dead_letters(vhost: ScenarioSpace) -> Callable[[str], str]:
    """``dead_letters("queue")``: rejected messages of that app queue go to a dead-letter queue of the harness,
    whose name it returns (a broker policy; needs the management API, skipped without it)."""

    def make(queue: str) -> str:
        if not vhost.isolated:
            pytest.skip("dead-lettering needs the broker's management API, which this url broker does not offer")
        return attempt(lambda: vhost.dead_letter(queue))

    return make
