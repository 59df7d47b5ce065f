"""The harness on a Flask app-factory app it was not written for: three failures, every task counted."""

import pytest

WORKER = "worker"  # the worker the plugin starts from --celery-app / celery_app


def test_a_stopped_worker_delays_signups_but_loses_none(stack, producer, vhost, ledger):
    """Ops stop the worker while people sign up: every form still redirects, the emails wait in
    Celery's default queue, and all go out once the worker is back."""
    stack.stop(WORKER)
    producer.send_many(10)
    vhost.wait_for_ready("celery", 10, timeout=5)
    stack.start(WORKER)
    ledger.wait_settled(timeout=30)
    stack.verdict().assert_counts(succeeded=10)


def test_a_killed_worker_loses_the_email_it_was_sending(stack, ledger):
    """The worker's machine dies mid-email: with Celery's early acknowledgement that email is lost;
    the three it had prefetched are requeued and sent by the restarted worker."""
    ids, sending = stack.busy_worker(4)
    stack.kill(WORKER)
    stack.start(WORKER)
    ledger.wait_settled([i for i in ids if i != sending], timeout=30)
    stack.stop(WORKER)  # no consumer left: neither done nor queued means lost
    stack.verdict().assert_counts(succeeded=3, lost=1)


@pytest.mark.celery_config(task_acks_late=True, task_reject_on_worker_lost=True)
def test_with_late_acks_a_killed_worker_sends_that_email_twice(stack, ledger):
    """The same death with late acknowledgement: nothing is lost, but the email being sent goes out
    again (started twice), so the task must be safe to repeat."""
    ids, _ = stack.busy_worker(4)
    stack.kill(WORKER)
    stack.start(WORKER)
    ledger.wait_settled(ids, timeout=30)
    stack.verdict().assert_counts(succeeded=3, duplicated=1)
