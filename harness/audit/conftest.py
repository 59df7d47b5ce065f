"""The audit's fixtures: its plan (once per session), the stack it runs, and the ``audit`` helper.

Every scenario here runs the user's app (``--celery-app``, or the ``harness_stack`` of the project) with
the audit's plan: the worker that consumes the audited task's queue, no web app, and the probe task
registered on the app (``--audit-like`` picks the real task it imitates).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness import options
from harness.app_info import introspect
from harness.audit.failures import row_settings, select, visibility_of
from harness.audit.plan import AuditPlan, make_plan
from harness.audit.results import MARKER, AuditRecorder, Row
from harness.audit.runner import Audit
from harness.brokers.base import Broker
from harness.brokers.select import BrokerOptions
from harness.errors import HarnessError
from harness.fixtures import default_spec, harness_error
from harness.ledger import Ledger
from harness.space import ScenarioSpace
from harness.spec import StackSpec
from harness.stack import AppStack


def _plan(config: pytest.Config) -> AuditPlan:
    base = default_spec(config)
    if not base.celery_app:
        raise HarnessError("the audit needs your Celery app: --celery-app proj.celery:app (or the celery_app ini key)")
    cwd = str(Path(base.cwd or config.rootpath).resolve())
    return make_plan(
        base, introspect(base.celery_app, cwd, base.python),
        like=options.get(config, "audit_like"), task=options.get(config, "audit_task"),
        args=options.get(config, "audit_args"), work_s=options.get(config, "audit_work"),
        config=options.get(config, "audit_config"), expect=options.get(config, "audit_expect"),
        persistence=options.get(config, "audit_redis_persistence"),
    )  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The audit runs one worker on the audited task's queue by design: the app's other queues having no consumer
    # is its plan, not the user's mistake the stack's warning is for.
    for item in items:
        item.add_marker(pytest.mark.filterwarnings("ignore::harness.errors.HarnessWarning"))


@pytest.fixture(scope="session", autouse=True)
def audit_plan(pytestconfig: pytest.Config) -> AuditPlan:
    """What the audit runs. Made first (autouse, session): a problem with the options or the app is every
    scenario's one sentence, before any broker boots."""
    try:
        return _plan(pytestconfig)
    except HarnessError as error:
        problem = error
    harness_error(problem)


def _recorder(config: pytest.Config) -> AuditRecorder | None:
    return config.pluginmanager.get_plugin("harness-audit")


@pytest.fixture
def audit_failures(request: pytest.FixtureRequest, broker_options: BrokerOptions, audit_plan: AuditPlan) -> list:
    """The scenario's failures (its ``@pytest.mark.audit``) as the audit runs them on this run's broker family. A
    failure that does not apply there gets a "not applicable" row saying why (its definition in
    ``harness.audit.failures`` declares its families); a scenario none of whose failures applies is skipped before
    anything starts."""
    marker = request.node.get_closest_marker(MARKER)
    keys = list(marker.args) if marker is not None else []
    runs, not_applicable = select(keys, broker_options.transport, audit_plan.not_for_app())
    recorder = _recorder(request.config)
    for key, why in not_applicable.items():
        if recorder is not None:
            recorder.not_applicable(key, why, request.node.nodeid)
    if keys and not runs:
        pytest.skip(
            f"not applicable on {broker_options.transport}: " + "; ".join(dict.fromkeys(not_applicable.values()))
        )
    # A failure that applies but that the audit cannot judge for this app (a crontab-only beat_schedule): its row
    # says why, never a fate.
    cannot = {f.key: why for f in runs if (why := audit_plan.cannot_judge(f.key))}
    if cannot and len(cannot) == len(runs):
        pytest.skip("; ".join(dict.fromkeys(cannot.values())))
    for key, why in cannot.items():
        if recorder is not None:
            recorder.add(Row.of(key, outcome="skipped", notes=[why], nodeid=request.node.nodeid))
    return [f for f in runs if f.key not in cannot]


@pytest.fixture(autouse=True)
def _audit_applies(audit_failures: list) -> None:
    """Every audit scenario asks first whether its failures apply on this run's broker (autouse: before its stack
    or its broker settings)."""


@pytest.fixture
def stack_spec(audit_plan: AuditPlan, audit_failures: list) -> StackSpec:
    """The plan's stack, with the settings the scenario's failures run with on this family (on Redis, a short
    ``visibility_timeout`` for a killed worker's messages), merged over the app's own; for the beat rows, the
    audit's beats on the app's periodic tasks (``harness.audit.beat``)."""
    extra = row_settings(audit_failures, audit_plan.transport_options)
    spec = audit_plan.spec
    if extra:
        spec = spec.replace(celery_config={**spec.celery_config, **extra})
    if any(f.periodic for f in audit_failures) and audit_plan.beat is not None:
        spec = audit_plan.beat.stack(spec)  # the audit's beats on the app's entries, time compressed
    return spec


@pytest.fixture(scope="session")
def broker_facts(broker: Broker, audit_plan: AuditPlan) -> dict[str, Any]:
    """Which broker the audit ran on: its family, product and version (RabbitMQ: its management API's word), and
    on Redis the app's own ``visibility_timeout`` and the server's persistence for the restart rows."""
    facts: dict[str, Any] = {"transport": broker.transport, "product": broker.product}
    try:
        facts["version"] = broker.server_version()
    except Exception:  # a url broker without its management API: the table says it does not know
        facts["version"] = None
    if broker.transport == "rabbitmq":
        management = broker.management
        try:
            facts["rabbitmq_version"] = management.overview().get("rabbitmq_version") if management else None
        except HarnessError:
            facts["rabbitmq_version"] = None
        facts["version"] = facts["version"] or facts["rabbitmq_version"]
    else:
        facts["visibility_timeout"], facts["visibility_from"] = visibility_of(audit_plan.transport_options)
        facts["persistence"] = audit_plan.redis_persistence if broker.owned else "unknown (a url server)"
    return facts


@pytest.fixture
def _audit_persistence(request: pytest.FixtureRequest, broker: Broker, audit_plan: AuditPlan, audit_failures: list):
    """The server's persistence, where a failure says it decides the outcome (a Redis restart): set from
    ``--audit-redis-persistence`` on a server the harness owns, and undone after."""
    if not any(f.persistence for f in audit_failures) or not broker.owned:
        yield
        return
    broker.persistence(audit_plan.redis_persistence)
    try:
        yield
    finally:
        broker.after_scenario()


@pytest.fixture
def audit(
    audit_plan: AuditPlan,
    stack: AppStack,
    ledger: Ledger,
    vhost: ScenarioSpace,
    broker_facts: dict[str, Any],
    audit_failures: list,
    _audit_persistence: None,
    request: pytest.FixtureRequest,
) -> Audit:
    recorder = _recorder(request.config)
    if recorder is None:  # an xdist worker (pytest --pyargs harness.audit -n ...): its rows would reach no table
        pytest.fail("the audit runs in one process (its table gathers every row): leave out -n", pytrace=False)
    helper = Audit(audit_plan, stack, ledger, vhost, recorder, request.node.nodeid, audit_failures)
    helper.broker.update(broker_facts)
    return helper
