"""A renamed task: the worker does not know the name, refuses the message, and it is gone."""

import pytest

from app_under_test.stack import HELLO_QUEUE, demo
from harness.producers import assert_all_queued

pytestmark = pytest.mark.seed

CLICKS = 5
WATCH_S = 2.0  # a requeued message would be redelivered to the idle worker within milliseconds

RENAMED = demo(producer="renamed")


@pytest.mark.parametrize("stack_spec", [RENAMED], indirect=True, ids=["web-v3-renamed+worker-v1"])
def test_a_task_name_the_worker_does_not_know_is_rejected_and_never_runs(stack, producer, vhost, ledger):
    """v3 of the web app renamed ``say_hello`` to ``send_greeting``; the workers were not redeployed.

    What a user sees: every click answers 202. The worker receives each message, does not know the
    task name, logs an error, reports it failed with ``NotRegistered`` and rejects the message without
    requeueing it. The task never runs, and with no dead-letter exchange the message is dropped: it is
    in no queue and will not come back when the new worker is deployed.
    """
    clicks = producer.send_many(CLICKS)
    assert_all_queued(clicks, within=1.0)
    ledger.wait_settled(timeout=10)

    verdict = stack.verdict()
    verdict.assert_counts(failed=CLICKS)
    assert verdict.exception_types() == {"NotRegistered": CLICKS}
    assert ledger.count("task-started") == 0, "an unknown task cannot have started"
    vhost.wait_for_empty(HELLO_QUEUE, timeout=5)
    ledger.assert_quiet(
        verdict.ids("failed"), for_=WATCH_S, why="a rejected message is not requeued: nothing redelivers it"
    )


@pytest.mark.parametrize("stack_spec", [RENAMED], indirect=True, ids=["web-v3-renamed+worker-v1"])
def test_with_a_dead_letter_exchange_the_renamed_tasks_are_kept_for_the_new_worker(
    dead_letter_queue, stack, producer, vhost, ledger
):
    """The same deploy, with a dead-letter exchange on hello_queue (a broker policy).

    What a user sees: the worker still refuses every message, but the broker now keeps each one in
    the dead-letter queue instead of dropping it: once workers that know ``send_greeting`` are
    deployed, the messages can be moved back and the work done.
    """
    clicks = producer.send_many(CLICKS)
    ledger.wait_settled(timeout=10)

    vhost.wait_for_ready(dead_letter_queue, CLICKS, timeout=5)
    assert sorted(vhost.peek_task_ids(dead_letter_queue)) == sorted(c.task_id for c in clicks)
    stack.verdict().assert_counts(failed=CLICKS)  # failed for Celery; kept by the broker
