"""Quorum queues (Celery 5.5+: ``task_create_missing_queue_type="quorum"``): what changes for a Celery app
against classic queues, and between RabbitMQ 3.x and 4.x (run with ``--harness-rabbitmq-version 4``).

A scenario whose outcome depends on the broker's version asserts per version (``rabbitmq_version``)."""

import pytest

from app_under_test.stack import HELLO_QUEUE, WORKER, demo
from harness.waiting import eventually, never

pytestmark = [pytest.mark.catalogue, pytest.mark.quorum]

# Celery's quorum-queue settings: its queues declared as quorum queues, and publisher confirms (which
# Celery's documentation says quorum queues need).
QUORUM = {"task_create_missing_queue_type": "quorum", "broker_transport_options": {"confirm_publish": True}}
ACKS_LATE = {"task_acks_late": True, "task_reject_on_worker_lost": True}
# How long the worker waits for a killed pool process's result before it declares it lost (default 10 s).
QUICK_LOSS = {"worker_lost_wait": 0.2}
# RabbitMQ 4.0's default delivery-limit for quorum queues (3.x: none): a message returned 20 times (rejected,
# or its consumer's channel closed) is dropped, so it is delivered 21 times (measured on 4.0.5, x-delivery-count 20).
DELIVERY_LIMIT_4 = 20
POISON = demo(worker_version="tasks_quorum", env={"HELLO_CRASH_POOL": "1"})


def deliveries(ledger, task_id: str) -> int:
    return ledger.history(task_id).count("task-received")


@pytest.mark.worker_fault
@pytest.mark.celery_config(**QUORUM, **ACKS_LATE, **QUICK_LOSS)
@pytest.mark.parametrize("stack_spec", [POISON], indirect=True, ids=["poison"])
def test_poison_task_on_a_quorum_queue_is_dropped_after_the_delivery_limit_on_rabbitmq_4(
    stack, producer, vhost, ledger, rabbitmq_version
):
    """A task kills the process running it every time (out of memory, a crashing C extension), with
    ``task_acks_late`` and ``task_reject_on_worker_lost``: the worker rejects it back to the queue each time.

    What a user sees on RabbitMQ 4: after its 21st delivery (20 returns) the quorum queue drops the message (its default
    ``delivery-limit``), nothing is logged by Celery, and the task is gone: lost. On 3.x there is no default
    limit: the task is delivered again and again, a crash loop that never ends (the worker restarts a pool
    process each time), and it is still in the queue when the worker stops.
    """
    task_id = producer.send().task_id

    if rabbitmq_version >= (4,):
        eventually(lambda: deliveries(ledger, task_id), until=lambda n: n > DELIVERY_LIMIT_4, timeout=90,
                   what="the poison task's 21st delivery", progress=str)  # fmt: skip
        vhost.wait_for_empty(HELLO_QUEUE, timeout=10)
        watched = never(lambda: deliveries(ledger, task_id), until=lambda n: n > DELIVERY_LIMIT_4 + 1, for_=3,
                        what="a delivery past the limit")  # fmt: skip
        stack.stop(WORKER)
        stack.verdict().assert_counts(lost=1)
        assert deliveries(ledger, task_id) == DELIVERY_LIMIT_4 + 1, f"the first delivery and 20 more ({watched} looks)"
    else:
        eventually(lambda: deliveries(ledger, task_id), until=lambda n: n > DELIVERY_LIMIT_4 + 5, timeout=90,
                   what="the poison task delivered past 4.0's limit", progress=str)  # fmt: skip
        stack.stop(WORKER)
        vhost.wait_for_ready(HELLO_QUEUE, 1, timeout=10)  # still there, for the next worker to crash on
        stack.verdict().assert_counts(duplicated=1)


def by_queue_type(*marks):
    """The scenario on a classic queue (Celery's default) and on a quorum queue."""
    return pytest.mark.parametrize(
        "queue_type",
        [
            pytest.param("classic", marks=marks),
            pytest.param("quorum", marks=[*marks, pytest.mark.celery_config(**QUORUM)]),
        ],
    )


@pytest.mark.worker_fault
@by_queue_type(pytest.mark.celery_config(**ACKS_LATE))
@pytest.mark.parametrize("stack_spec", [demo(work_seconds=3)], indirect=True, ids=["long"])
def test_worker_killed_with_acks_late_on_a_quorum_queue_reruns_the_task_as_on_classic(stack, ledger, queue_type):
    """The worker dies (SIGKILL) mid-task, with ``task_acks_late`` and ``task_reject_on_worker_lost``, on a
    classic and on a quorum queue.

    What a user sees: the same on both, on RabbitMQ 3 and 4: the running task runs again (duplicated) and the
    three prefetched tasks run once. A quorum queue counts the return (its delivery count goes to 1), far from
    RabbitMQ 4's limit of 20, so one crash changes nothing; a task that crashes its worker every time does (above).
    """
    ids, running = stack.busy_worker(4)
    stack.kill(WORKER)
    stack.start(WORKER)
    ledger.wait_settled(ids, timeout=20)

    stack.verdict().assert_counts(succeeded=3, duplicated=1)
    assert stack.verdict().ids("duplicated") == [running]


@pytest.mark.broker_fault
@by_queue_type(pytest.mark.celery_config(task_default_delivery_mode="transient"))
def test_broker_restart_keeps_transient_tasks_on_a_quorum_queue_only(
    owned_broker, stack, producer, vhost, ledger, queue_type
):
    """The broker restarts while 10 tasks wait, and the app publishes them as transient messages
    (``task_default_delivery_mode = "transient"``, a common speed-up).

    What a user sees: on a classic queue every waiting task vanishes (transient messages live in memory); on a
    quorum queue all 10 run once after the restart: a quorum queue writes every message to its log, persistent
    or not. On RabbitMQ 3 and 4 alike.
    """
    stack.stop(WORKER)
    ids = [sent.task_id for sent in producer.send_many(10)]
    vhost.wait_for_ready(HELLO_QUEUE, 10, timeout=5)

    owned_broker.restart_broker(how="app")

    vhost.wait_for_ready(HELLO_QUEUE, 10 if queue_type == "quorum" else 0, timeout=10)
    stack.start(WORKER)
    if queue_type == "quorum":
        ledger.wait_settled(ids, timeout=30)
        stack.verdict().assert_counts(succeeded=10)
    else:
        stack.wait_worker_reconnected(WORKER)
        stack.stop(WORKER)
        stack.verdict().assert_counts(lost=10)


COUNTDOWN_S = 4.0


@pytest.mark.worker_fault
@pytest.mark.parametrize(
    "stack_spec",
    [
        pytest.param(demo(worker_version="tasks_quorum", env={"HELLO_COUNTDOWN": str(COUNTDOWN_S)}), id="route-queue"),
        pytest.param(
            demo(worker_version="tasks_quorum", env={"HELLO_COUNTDOWN": str(COUNTDOWN_S), "HELLO_QUORUM_TOPIC": "1"}),
            id="topic-queue",
        ),
    ],
    indirect=True,
)
@pytest.mark.celery_config(**QUORUM)
def test_countdown_task_on_a_quorum_queue_survives_a_worker_restart_during_its_delay(
    stack, producer, vhost, ledger, request
):
    """A task sent with a 4 s countdown to a quorum queue; the worker restarts during the delay.

    What a user sees: the task runs once, not before its time. Where it waits depends on how the queue is
    declared: Celery's native delayed delivery (the ``celery_delayed_*`` exchanges and queues on the broker)
    is used only when the queue is bound to a topic exchange (``route-queue``: a queue Celery makes from a
    route has a direct exchange, Celery logs a warning and the worker holds the task unacknowledged in
    memory until its time; a restart returns it to the queue and the next worker holds it again).

    Seen on the way: a worker reports itself online before it has bound its queues for delayed delivery; a
    countdown task published in that window (a fresh vhost, web and worker started together) is routed
    nowhere and lost without an error (3 runs in 7 here). Once any worker has bound them, the bindings stay.
    """
    topic = "topic" in request.node.callspec.id
    if topic:  # the worker binds the queue for delayed delivery after it says it is online: wait for that
        eventually(lambda: (HELLO_QUEUE, f"#.{HELLO_QUEUE}") in vhost.bindings(HELLO_QUEUE), timeout=10,
                   what="hello_queue bound to celery_delayed_delivery by the worker")  # fmt: skip
    sent = producer.send()
    if topic:  # on the broker, in the delayed queue of its countdown's bits
        eventually(lambda: delayed_ready(vhost), until=lambda n: n == 1, timeout=COUNTDOWN_S / 2,
                   what="the countdown task in a celery_delayed_* queue")  # fmt: skip
    else:  # already with the worker, which holds it until its time
        ledger.wait_received([sent.task_id], timeout=COUNTDOWN_S / 2)
    stack.restart(WORKER)
    ledger.wait_settled([sent.task_id], timeout=COUNTDOWN_S + 20)

    stack.verdict().assert_counts(succeeded=1)
    history = ledger.history(sent.task_id)
    ran = next(e for e in history.events if e.type == "task-started")
    sent_event = next(e for e in history.events if e.type == "task-sent")
    assert ran.timestamp - sent_event.timestamp >= COUNTDOWN_S - 0.1, history.describe()
    assert ran.timestamp - sent_event.timestamp < COUNTDOWN_S + 5, history.describe()
    assert history.count("task-received") == (1 if topic else 2), "held by the worker: received again after the restart"


def delayed_ready(vhost) -> int:
    """Messages waiting in Celery's native delayed-delivery queues (``celery_delayed_0`` ... ``_27``)."""
    return sum(vhost.depth(q).ready for q in vhost.queue_names() if q.startswith("celery_delayed_"))
