"""Redis's visibility timeout: a message held unacknowledged longer than it is delivered again, whoever holds it."""

import pytest

from app_under_test.stack import PATIENT_READY_S, demo, worker
from harness.brokers.redis.settings import visibility
from harness.producers import DirectProducer
from harness.waiting import eventually

pytestmark = [pytest.mark.catalogue, pytest.mark.limits]

VISIBILITY_TIMEOUT_S = 3
COUNTDOWN_S = 8.0  # more than twice the visibility timeout
REMINDER = DirectProducer("say_hello", args=("world-{n}",), options={"countdown": COUNTDOWN_S})
TWO_WORKERS = (worker("worker_a"), worker("worker_b"))


@pytest.mark.celery_config(broker_transport_options=visibility(VISIBILITY_TIMEOUT_S))
@pytest.mark.parametrize(
    "stack_spec",
    [demo(workers=TWO_WORKERS, ready_timeout=PATIENT_READY_S).replace(producer=REMINDER)],
    indirect=True, ids=["countdown-8s-visibility-3s"],
)  # fmt: skip
def test_a_countdown_longer_than_the_visibility_timeout_runs_the_task_several_times(stack, producer, ledger):
    """One task sent with ``countdown=8`` (a reminder), two workers, ``visibility_timeout`` 3 s.

    What a user sees: the reminder is sent several times. A worker receives a countdown task at once and holds
    it unacknowledged until it is due; every ``visibility_timeout`` the message goes back to the queue, another
    worker (or the same) receives it too, and at the due time each holder runs its copy. The Celery docs' rule:
    the visibility timeout must exceed the longest countdown or ETA in use (one hour by default: a countdown of
    more than an hour runs several times).
    """
    sent = producer.send()

    # Done when no copy is left anywhere and no step came for longer than a restore takes.
    stack.wait_every_copy_ran([sent.task_id], quiet=VISIBILITY_TIMEOUT_S + 2, timeout=COUNTDOWN_S + 30)

    verdict = stack.verdict()
    verdict.assert_counts(duplicated=1)
    runs = ledger.history(sent.task_id).count("task-succeeded")
    assert runs >= 2, f"ran {runs} time(s)"


ACKS_LATE_LONG = demo(workers=TWO_WORKERS, work_seconds=VISIBILITY_TIMEOUT_S * 3, ready_timeout=PATIENT_READY_S)


@pytest.mark.celery_config(
    task_acks_late=True, worker_prefetch_multiplier=1, broker_transport_options=visibility(VISIBILITY_TIMEOUT_S)
)
@pytest.mark.parametrize("stack_spec", [ACKS_LATE_LONG], indirect=True, ids=["9s-task-visibility-3s"])
def test_an_acks_late_task_longer_than_the_visibility_timeout_runs_twice_at_once(stack, producer, ledger):
    """A 9-second task with ``task_acks_late``, two workers, ``visibility_timeout`` 3 s.

    What a user sees: the task runs twice, the second run starting while the first still works: its message is
    unacknowledged until the first run ends, so once it is older than the visibility timeout it goes back to
    the queue and the idle worker takes it. Long acks-late tasks need a visibility timeout longer than their
    longest run.
    """
    sent = producer.send()
    eventually(
        lambda: ledger.history(sent.task_id).count("task-started"), until=lambda n: n >= 2,
        timeout=VISIBILITY_TIMEOUT_S * 3, what="a second run of the task to start while the first still works",
    )  # fmt: skip
    history = ledger.history(sent.task_id)
    first_end = next((e.timestamp for e in history.events if e.type == "task-succeeded"), None)
    second_start = [e for e in history.events if e.type == "task-started"][1].timestamp
    assert first_end is None or second_start < first_end, history.describe()
    assert len({e.hostname for e in history.events if e.type == "task-started"}) == 2, history.describe()
    ledger.wait_settled([sent.task_id], timeout=30)
    assert stack.verdict().count("duplicated") == 1
