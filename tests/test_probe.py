"""harness.probe: the audit's probe goes where the real task goes and is delivered as the real task is."""

from __future__ import annotations

from pathlib import Path

import pytest
from celery import Celery
from kombu import Connection

from harness.audit.producer import AuditProducer
from harness.probe import COPIED_OPTIONS, PROBE_NAME, ProbeError, register_probe, route_of
from harness.spec import ProbeSpec, StackSpec, WorkerSpec

HERE = Path(__file__).parent
REAL = "mail.send"


def mail_app() -> Celery:
    import probe_app

    return probe_app.app


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> Celery:
    monkeypatch.syspath_prepend(str(HERE))
    return mail_app()


def test_the_probe_is_routed_like_the_real_task_and_carries_its_options(app: Celery) -> None:
    probe = register_probe(app, REAL)
    real = app.tasks[REAL]
    mine, theirs = route_of(app, probe), route_of(app, real)
    assert (mine["queue"].name, mine["routing_key"], mine["priority"]) == ("emails", "emails", 3)
    assert (mine["queue"].name, mine["routing_key"], mine["priority"]) == (
        theirs["queue"].name, theirs["routing_key"], theirs["priority"],
    )  # fmt: skip
    assert {k: getattr(probe, k, None) for k in COPIED_OPTIONS} == {k: getattr(real, k, None) for k in COPIED_OPTIONS}
    assert (probe.acks_late, probe.reject_on_worker_lost, probe.time_limit, probe.rate_limit) == (
        True, True, 30, "100/s",
    )  # fmt: skip


def test_the_probe_only_sleeps_and_imitating_an_unknown_task_is_one_sentence(app: Celery) -> None:
    probe = register_probe(app, REAL)
    assert probe.run(0.01) == "probe"
    with pytest.raises(ProbeError, match=r"the app has no task 'mail\.nope' to imitate; its tasks: mail\.send"):
        register_probe(app, "mail.nope")


def test_without_a_task_to_imitate_the_probe_has_the_apps_defaults(app: Celery) -> None:
    probe = register_probe(app)
    assert route_of(app, probe)["queue"].name == "celery" and probe.acks_late is False


PROBE_STACK = StackSpec(
    celery_app="probe_app:app", cwd=str(HERE), workers=(WorkerSpec("worker", queues=("emails",)),),
    producer=AuditProducer("probe_app:app", like=REAL), probe=ProbeSpec(like=REAL),
)  # fmt: skip


def peek_headers(amqp_url: str, queue: str) -> dict:
    """The headers of the first message in ``queue``, left in place (fetched unacknowledged, then the
    channel is closed)."""
    with Connection(amqp_url) as connection:
        channel = connection.channel()
        message = channel.basic_get(queue=queue, no_ack=False)
        headers = dict(message.headers)
        channel.close()
    return headers


@pytest.mark.parametrize("stack_spec", [PROBE_STACK], indirect=True, ids=["mail"])
def test_a_probe_lands_in_the_real_tasks_queue_and_the_worker_runs_it_with_its_options(stack, vhost, ledger):
    stack.stop("worker")
    probe_id = stack.producer.send(0.0).task_id

    vhost.wait_for_ready("emails", 1, timeout=5)
    assert vhost.peek_task_ids("emails") == [probe_id], "the probe waits in the real task's queue"
    assert "celery" not in vhost.queue_names() or vhost.ready("celery") == 0, "and not in the default queue"
    headers = peek_headers(vhost.amqp_url, "emails")
    assert (headers["task"], headers["timelimit"]) == (PROBE_NAME, [30, 20]), "the real task's time limits"

    stack.start("worker")
    ledger.wait_settled([probe_id], timeout=10)
    stack.verdict().assert_counts(succeeded=1)
    tasks = ledger.program_config("worker")["tasks"]
    options = ("acks_late", "reject_on_worker_lost", "time_limit", "soft_time_limit", "max_retries", "rate_limit")
    assert {k: tasks[PROBE_NAME][k] for k in options} == {k: tasks[REAL][k] for k in options}, "as the worker saw it"
    assert tasks[PROBE_NAME]["queue"] == tasks[REAL]["queue"] == "emails"
