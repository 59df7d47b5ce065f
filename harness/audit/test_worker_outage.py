"""The audit: a stopped worker, and the queue it leaves behind."""

import pytest

TASKS = 20  # as the catalogue's worker-outage scenario

pytestmark = [pytest.mark.worker_fault]


@pytest.mark.audit("worker_outage")
def test_worker_outage_and_drain(stack, audit):
    """The worker is stopped (a deploy, a crash loop, ops at work) while the app keeps sending tasks,
    then started again.

    What the table tells: how many of the tasks sent during the outage ran once after it. A durable
    queue with persistent messages keeps them all; a message TTL or a length limit on the queue
    drops some.
    """
    stack.stop(audit.worker)
    sent = [s.task_id for s in audit.send_many(TASKS)]
    waited = audit.waiting(TASKS)
    audit.note("worker_outage", f"{waited} of {TASKS} waited in {audit.queue} while the worker was stopped")

    stack.start(audit.worker)
    audit.settle(sent)
    audit.finish(sent)  # the worker stopped if a task did not end: what is neither done nor queued is lost
    audit.record(stack.verdict(), worker_outage=sent)
