"""The audit: messages the worker cannot use arrive on the app's queue."""

import pickle

import pytest

from harness.messages import task_headers
from harness.probe import PROBE_NAME

GOOD = 5  # as the catalogue's bad-message scenario

pytestmark = [pytest.mark.bad_message]


@pytest.mark.audit("bad_message")
def test_a_bad_message_on_the_apps_queue(stack, audit, vhost, ledger):
    """Two broken messages reach the audited queue before good ones: one whose JSON body cannot be
    decoded (a buggy producer), and one in pickle (a foreign producer).

    What the table tells: the worker should survive both and run the good tasks; the undecodable
    message is acknowledged and gone (lost), the pickled one refused (failed), unless the app accepts
    pickle, when it runs: then anyone who can publish can run code on the worker.
    """
    undecodable, pickled = task_headers(PROBE_NAME), task_headers(PROBE_NAME)
    vhost.publish_raw(audit.queue, b"{not json", "application/json", undecodable)
    vhost.publish_raw(audit.queue, pickle.dumps(([0], {}, {})), "application/x-python-serialize", pickled)
    ids = [ledger.record_send(headers["id"]).task_id for headers in (undecodable, pickled)]
    ids += [s.task_id for s in audit.send_many(GOOD)]

    audit.settle(ids)
    if audit.exited():
        audit.note("bad_message", "the worker exited")
    audit.finish(ids)  # the worker stopped if a task did not end: what is neither done nor queued is lost
    audit.record(stack.verdict(), bad_message=ids)
