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
from harness.audit.plan import AuditPlan, make_plan
from harness.audit.runner import Audit
from harness.brokers.base import Broker
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


@pytest.fixture
def stack_spec(audit_plan: AuditPlan) -> StackSpec:
    return audit_plan.spec


@pytest.fixture(scope="session")
def broker_facts(broker: Broker) -> dict[str, Any]:
    """The broker's version, as its management API tells it."""
    management = getattr(broker, "management", None)  # RabbitMQ only
    try:
        return {"rabbitmq_version": management.overview().get("rabbitmq_version")} if management else {}
    except HarnessError:
        return {}


@pytest.fixture
def audit(
    audit_plan: AuditPlan,
    stack: AppStack,
    ledger: Ledger,
    vhost: ScenarioSpace,
    broker_facts: dict[str, Any],
    request: pytest.FixtureRequest,
) -> Audit:
    recorder = request.config.pluginmanager.get_plugin("harness-audit")
    if recorder is None:  # an xdist worker (pytest --pyargs harness.audit -n ...): its rows would reach no table
        pytest.fail("the audit runs in one process (its table gathers every row): leave out -n", pytrace=False)
    helper = Audit(audit_plan, stack, ledger, vhost, recorder, request.node.nodeid)
    helper.broker.update(broker_facts)
    return helper
