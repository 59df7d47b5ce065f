"""Canvas under failure: a chord (a group of tasks, then a callback on all their results) whose member
fails, or whose result backend drops out. The chord's state lives in the result backend: here a private
Redis (``private_redis``), never the system's."""

import json
import uuid

import pytest
import redis

from app_under_test.stack import PATIENT_READY_S, demo, worker
from harness.producers import DirectProducer
from harness.waiting import eventually

pytestmark = [pytest.mark.catalogue]

MEMBERS = 4
QUIET_S = 3.0


def lab(work_seconds: float = 0.05):
    spec = demo(ready_timeout=PATIENT_READY_S, workers=(worker(version="tasks_lab"),), work_seconds=work_seconds)
    return spec.replace(producer=DirectProducer("fan_out", celery_app="app_under_test.tasks_lab:app"))


@pytest.fixture
def celery_config(celery_config, private_redis):
    """The scenario's settings, with the private Redis as every program's result backend."""
    return {**celery_config, "result_backend": private_redis.url}


def stored(private_redis, task_id: str) -> dict | None:
    raw = redis.Redis.from_url(private_redis.url).get(f"celery-task-meta-{task_id}")
    return json.loads(raw) if raw else None


def members(ledger) -> list[str]:
    return eventually(
        ledger.child_ids, until=lambda ids: len(ids) == MEMBERS, timeout=10, what="every member of the chord to be sent"
    )


def ended(ledger, ids: list[str]) -> list[str]:
    """Members whose run is over as their pool process wrote it (``task-postrun`` in the journal)."""
    return [i for i in ids if ledger.history(i).count("task-postrun")]


@pytest.mark.parametrize("stack_spec", [lab()], indirect=True, ids=["chord"])
def test_chord_whose_member_fails_never_runs_its_callback(stack, producer, ledger, private_redis):
    """A task fans out a chord of four members (one raises) and a callback that sums their results.

    What a user sees: the three good members succeed, the bad one fails, and the callback never runs: it
    is never even sent. Celery marks it failed in the result backend (``ChordError: Dependency ... raised
    ValueError``) when the last member reports, so only a caller that looks the callback's result up
    learns of it; no worker event, no failure handler of the callback's own.
    """
    callback_id = str(uuid.uuid4())
    sent = producer.send_call((MEMBERS, 1, callback_id), {})
    ledger.wait_settled([sent.task_id], timeout=10)
    ledger.wait_settled(members(ledger), timeout=20)

    meta = eventually(lambda: stored(private_redis, callback_id), timeout=10, what="the callback's stored result")
    ledger.assert_quiet([callback_id], for_=QUIET_S, why="the callback of a failed chord is never sent")
    assert (meta["status"], meta["result"]["exc_type"]) == ("FAILURE", "ChordError"), meta
    stack.verdict().assert_counts(succeeded=1)
    stack.verdict().children.assert_counts(succeeded=MEMBERS - 1, failed=1)


@pytest.mark.parametrize("stack_spec", [lab(work_seconds=1.0)], indirect=True, ids=["chord-1s-members"])
def test_chord_when_the_result_backend_drops_out_loses_its_callback(stack, producer, ledger, private_redis):
    """The same chord, four 1 s members on a ``-c 1`` worker, and the result backend (a Redis without
    persistence) crashes while the members run, and is back, empty, two members later.

    What a user sees: the members that ended while Redis was away ran (their pool process says so) but
    did not succeed: the worker could not store their results; one fails with ``ConnectionError``, and the
    first one to meet the outage was seen with no outcome at all (no success, no failure event). The chord's
    counter died with Redis, so the callback never runs and is never marked failed either: the chord is
    silently gone, while the later members succeed as if nothing happened.
    """
    callback_id = str(uuid.uuid4())
    sent = producer.send_call((MEMBERS, 0, callback_id), {})
    ledger.wait_settled([sent.task_id], timeout=10)
    ids = members(ledger)
    ledger.wait_running(ids, timeout=10, accepted=True)

    private_redis.stop()
    eventually(lambda: ended(ledger, ids), until=lambda done: len(done) >= 2, timeout=10, what="two members to end")
    private_redis.start()

    eventually(lambda: ended(ledger, ids), until=lambda done: len(done) == MEMBERS, timeout=20, what="every run")
    ledger.assert_quiet([callback_id], for_=QUIET_S, why="the chord's counter was lost with Redis")
    children = stack.verdict().children
    no_outcome = [i for i in ids if ledger.history(i).terminal is None]
    print(f"members: {children.summary()} ({len(no_outcome)} with no outcome at all); the callback never ran")
    assert children.count("succeeded") <= MEMBERS - 2, children.explain()
    failed = [ledger.history(i).terminal.exception or "" for i in children.ids("failed")]
    assert all("ConnectionError" in e for e in failed), failed
    assert children.count("succeeded") + children.count("failed") + len(no_outcome) == MEMBERS, children.explain()
    assert stored(private_redis, callback_id) is None
