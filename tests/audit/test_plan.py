"""harness.audit.plan: the worker, queue, task and settings the audit runs, from the options and the app."""

from __future__ import annotations

import pytest

from harness.audit.plan import make_plan
from harness.errors import HarnessError
from harness.probe import PROBE_NAME
from harness.spec import StackSpec, WebSpec, WorkerSpec

INFO = {  # what harness.introspect says of the app
    "default_queue": "celery",
    "tasks": {"mail.send": {"options": {"queue": "emails"}}, "mail.tidy": {"options": {"queue": "celery"}}},
}
BASE = StackSpec(celery_app="proj:app", web=WebSpec(app="proj.wsgi:app"), workers=(WorkerSpec("worker"),))


def test_the_probe_goes_where_the_real_task_goes_on_the_worker_that_consumes_it() -> None:
    plan = make_plan(BASE, INFO, like="mail.send", config='{"task_acks_late": true}', expect="lost=0")
    assert (plan.task, plan.queue, plan.spec.probe.like) == (PROBE_NAME, "emails", "mail.send")
    assert plan.spec.web is None and plan.spec.workers == (WorkerSpec("worker", queues=("emails",)),)
    assert plan.spec.celery_config == {"task_acks_late": True}
    assert plan.expectations.limits("worker_killed") == {"lost": 0}


def test_a_named_worker_for_the_queue_is_the_one_audited() -> None:
    base = BASE.replace(workers=(WorkerSpec("default", queues=("celery",)), WorkerSpec("mail", queues=("emails",))))
    assert make_plan(base, INFO, like="mail.send").worker.name == "mail"
    with pytest.raises(HarnessError, match=r"queue 'emails', which no worker of the stack consumes \(default: celery"):
        make_plan(base.replace(workers=base.workers[:1]), INFO, like="mail.send")


def test_a_real_task_is_sent_with_its_arguments() -> None:
    plan = make_plan(BASE, INFO, task="mail.tidy", args="[1, 2]")
    assert (plan.task, plan.args, plan.queue, plan.real_task) == ("mail.tidy", (1, 2), "celery", True)


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"like": "mail.nope"}, "--audit-like mail.nope: the app has no such task; its tasks: mail.send, mail.tidy"),
        ({"config": "{not json"}, "--audit-config '{not json' is not JSON"),
        ({"args": '{"a": 1}'}, "--audit-args .* must be a JSON list"),
        ({"work_s": 0}, "--audit-work 0 must be a positive number of seconds"),
        ({"expect": "lost"}, "is not fate=N"),
    ],
)
def test_bad_options_are_one_sentence(options: dict, says: str) -> None:
    with pytest.raises(HarnessError, match=says):
        make_plan(BASE, INFO, **options)


def test_the_audit_needs_an_app() -> None:
    with pytest.raises(HarnessError, match="the audit needs your Celery app"):
        make_plan(StackSpec(), INFO)


@pytest.mark.parametrize(
    ("worker", "app_settings", "audit_config", "said"),
    [
        (WorkerSpec("worker"), {}, None, "Celery's default (worker_concurrency unset: the CPUs the worker may use)"),
        (WorkerSpec("worker"), {"worker_concurrency": 8}, None, "the app's own (worker_concurrency=8)"),
        (
            WorkerSpec("worker"),
            {"worker_concurrency": 8},
            '{"worker_concurrency": 2}',
            "--audit-config (worker_concurrency=2)",
        ),
        (WorkerSpec("worker", concurrency=3), {"worker_concurrency": 8}, None, "the stack's WorkerSpec(concurrency=3)"),
    ],
    ids=["celery-default", "the-apps", "audit-config", "the-stacks"],
)
def test_the_audited_worker_runs_the_apps_own_concurrency_unless_the_stack_says_otherwise(
    worker: WorkerSpec, app_settings: dict, audit_config: str | None, said: str
) -> None:
    """The audit passed ``-c 1`` (WorkerSpec's old default) whatever the app's ``worker_concurrency``: it audited
    a worker the team does not run. A worker whose WorkerSpec says nothing runs without ``-c`` now."""
    plan = make_plan(BASE.replace(workers=(worker,)), {**INFO, "settings": app_settings}, config=audit_config)
    assert plan.spec.concurrency_of(plan.spec.workers[0]) == worker.concurrency, "no -c unless the stack gives one"
    assert plan.concurrency_from == said and plan.as_dict()["worker"]["concurrency_from"] == said


@pytest.mark.parametrize(
    ("worker", "app_settings", "audit_config", "pool", "said"),
    [
        (WorkerSpec("worker"), {}, None, None, "Celery's default (worker_pool='prefork')"),
        (WorkerSpec("worker"), {"worker_pool": "prefork"}, None, None, "Celery's default (worker_pool='prefork')"),
        (WorkerSpec("worker"), {"worker_pool": "threads"}, None, "threads", "the app's own (worker_pool='threads')"),
        (
            WorkerSpec("worker"),
            {"worker_pool": "threads"},
            '{"worker_pool": "gevent"}',
            "gevent",
            "--audit-config (worker_pool='gevent')",
        ),
        (
            WorkerSpec("worker", pool="solo"),
            {"worker_pool": "threads"},
            None,
            "solo",
            "the stack's WorkerSpec(pool='solo')",
        ),
    ],
    ids=["celery-default", "read-back-default", "the-apps", "audit-config", "the-stacks"],
)
def test_the_audited_worker_runs_the_apps_own_pool_and_says_which(
    worker: WorkerSpec, app_settings: dict, audit_config: str | None, pool: str | None, said: str
) -> None:
    """The audit passed ``-P prefork`` whatever the app's ``worker_pool``: a team running threads or gevent was
    audited on a pool it does not run. The pool found is passed as -P (a green pool is patched before the app is
    imported), and the plan says where it came from."""
    plan = make_plan(BASE.replace(workers=(worker,)), {**INFO, "settings": app_settings}, config=audit_config)
    assert plan.spec.pool_of(plan.spec.workers[0]) == pool
    assert plan.pool_from == said and plan.as_dict()["worker"]["pool_from"] == said


def test_an_app_pool_the_harness_cannot_run_is_one_sentence() -> None:
    with pytest.raises(HarnessError, match=r"pool comes from the app's own \(worker_pool='eventlet'\), which the"):
        make_plan(BASE, {**INFO, "settings": {"worker_pool": "eventlet"}})
