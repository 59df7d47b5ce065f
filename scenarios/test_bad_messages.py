"""Messages the worker cannot use: it survives them, and each one's fate is counted."""

import pickle

import pytest

from app_under_test.stack import HELLO_QUEUE, WORKER
from harness.messages import task_headers

pytestmark = [pytest.mark.catalogue, pytest.mark.bad_message]

GOOD_CLICKS = 5


def test_bad_messages_are_dropped_and_the_worker_keeps_serving(stack, producer, vhost, ledger):
    """Two broken messages reach hello_queue before real clicks: one whose JSON body cannot be
    decoded, and one in pickle, a content type the worker does not accept (Celery accepts JSON only
    by default, since unpickling is code execution).

    What a user sees: the worker logs each one and carries on with the good tasks. Neither broken
    task ever runs and neither stays in the queue. The undecodable one is gone without a trace: no
    Celery event and no signal says so, so only its absence tells (lost). The refused one sends no
    event either, so a monitor built on events never sees it; Celery's ``task_rejected`` signal does,
    and the harness's journal records the refusal (failed). (Where each went is the next scenario.)
    """
    undecodable, disallowed = publish_bad_messages(vhost, ledger)
    clicks = producer.send_many(GOOD_CLICKS)
    ledger.wait_settled([c.task_id for c in clicks], timeout=10)
    vhost.wait_for_empty(HELLO_QUEUE, timeout=5)

    assert stack.state(WORKER) == "RUNNING", "the worker must survive bad messages"
    stack.stop(WORKER)  # no consumer left: what is neither done nor queued is gone
    verdict = stack.verdict()
    verdict.assert_counts(succeeded=GOOD_CLICKS, lost=1, failed=1)
    assert verdict.ids("lost") == [undecodable] and verdict.ids("failed") == [disallowed]
    refusal = ledger.history(disallowed).terminal
    assert refusal.type == "task-rejected" and refusal.witnesses == {"journal"}, "only the journal saw the refusal"


def test_with_a_dead_letter_exchange_the_refused_message_is_kept(dead_letter_queue, stack, producer, vhost, ledger):
    """The same two messages, with a dead-letter exchange on hello_queue (a broker policy).

    What a user sees: the two are dropped differently. The undecodable one is *acknowledged*
    (Celery's decode-error handler acks it): it is gone for good. The disallowed one is *rejected*
    without requeue, so the broker dead-letters it: it waits in the dead-letter queue, where
    someone can inspect and replay it.
    """
    _, disallowed = publish_bad_messages(vhost, ledger)
    ledger.wait_settled([c.task_id for c in producer.send_many(GOOD_CLICKS)], timeout=10)
    vhost.wait_for_empty(HELLO_QUEUE, timeout=5)

    vhost.wait_for_ready(dead_letter_queue, 1, timeout=5)
    assert vhost.peek_task_ids(dead_letter_queue) == [disallowed], "only the rejected message is dead-lettered"


def publish_bad_messages(vhost, ledger) -> tuple[str, str]:
    """Publish the two broken task messages; record them as sent by the scenario; return their ids."""
    undecodable, disallowed = task_headers("say_hello"), task_headers("say_hello")
    vhost.publish_raw(HELLO_QUEUE, b"{not json", "application/json", undecodable)
    vhost.publish_raw(HELLO_QUEUE, pickle.dumps((["x"], {}, {})), "application/x-python-serialize", disallowed)
    for headers in (undecodable, disallowed):
        ledger.record_send(headers["id"])
    return undecodable["id"], disallowed["id"]
