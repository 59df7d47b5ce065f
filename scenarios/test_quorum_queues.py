"""Quorum queues (Celery 5.5+: ``task_create_missing_queue_type="quorum"``): what changes for a Celery app
against classic queues, and between RabbitMQ 3.x and 4.x (run with ``--harness-rabbitmq-version 4``).

A scenario whose outcome depends on the broker's version asserts per version (``rabbitmq_version``)."""

import dataclasses

import pytest

from app_under_test.stack import HELLO_QUEUE, WORKER
from app_under_test.stack import demo as demo_stack
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


def demo(**options):
    """The demo's stack, its workers given 30 s to say they are online: a worker on quorum queues declares
    Celery's 28 delayed-delivery queues first (quorum queues too), which on a loaded machine takes seconds."""
    return dataclasses.replace(demo_stack(**options), ready_timeout=30)


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
        vhost.wait_for_empty(HELLO_QUEUE, timeout=30)
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
    RabbitMQ 4's limit of 20, so one crash changes nothing; a task that crashes its worker every time does (the
    poison-task lesson).
    """
    ids, running = stack.busy_worker(4)
    stack.kill(WORKER)
    stack.start(WORKER)
    ledger.wait_settled(ids, timeout=20)

    stack.verdict().assert_counts(succeeded=3, duplicated=1)
    assert stack.verdict().ids("duplicated") == [running]


@pytest.mark.broker_fault
@by_queue_type(pytest.mark.celery_config(task_default_delivery_mode="transient"))
@pytest.mark.parametrize("stack_spec", [demo()], indirect=True, ids=["demo"])
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


COUNTDOWN_S = 6.0


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
    """A task sent with a 6 s countdown to a quorum queue; the worker restarts during the delay.

    What a user sees: the task runs once, not before its time. Where it waits depends on how the queue is
    declared: Celery's native delayed delivery (the ``celery_delayed_*`` exchanges and queues on the broker)
    is used only when the queue is bound to a topic exchange (``route-queue``: a queue Celery makes from a
    route has a direct exchange, Celery logs a warning and the worker holds the task unacknowledged in
    memory until its time; a restart returns it to the queue and the next worker holds it again).

    Seen on the way: a worker reports itself online before it has bound its queues for delayed delivery; a
    countdown task published in that window (a fresh vhost, web and worker started together) is routed
    nowhere and lost without an error (2 runs in 5 on 4.0.5 here). Once any worker has bound them, the bindings stay.
    """
    topic = "topic" in request.node.callspec.id
    if topic:  # the worker binds the queue for delayed delivery after it says it is online: wait for that
        eventually(lambda: (HELLO_QUEUE, f"#.{HELLO_QUEUE}") in vhost.bindings(HELLO_QUEUE), timeout=10,
                   what="hello_queue bound to celery_delayed_delivery by the worker")  # fmt: skip
    sent = producer.send()
    if topic:  # on the broker, in the delayed queue of its countdown's bits
        eventually(lambda: delayed_ready(vhost), until=lambda n: n == 1, timeout=COUNTDOWN_S - 2,
                   what="the countdown task in a celery_delayed_* queue")  # fmt: skip
    else:  # already with the worker, which holds it until its time
        ledger.wait_received([sent.task_id], timeout=COUNTDOWN_S - 2)
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


BIG_BYTES = 17 * 2**20  # above RabbitMQ 4.0's default max_message_size (16 MiB), below 3.x's (128 MiB)


@pytest.mark.bad_message
@pytest.mark.parametrize(
    "confirms", [pytest.param("confirms", marks=pytest.mark.celery_config(**QUORUM)), "no-confirms"]
)
@pytest.mark.parametrize(
    "stack_spec", [demo(worker_version="tasks_quorum", env={"HELLO_PADDING_BYTES": str(BIG_BYTES)})],
    indirect=True, ids=["17MiB"],
)  # fmt: skip
def test_a_task_above_16_mib_is_refused_by_rabbitmq_4(stack, producer, ledger, rabbitmq_version, confirms):
    """The web app sends a task with a 17 MiB argument (a document, an image inlined as base64).

    What a user sees on RabbitMQ 4: the broker refuses the message (its ``max_message_size`` is 16 MiB by
    default, 128 MiB on 3.x). With publisher confirms (``confirm_publish``, which quorum queues want) the
    publish raises and the page answers 503: the producer knows. Without them (Celery's default) the publish
    returns, the page says "queued", and the broker closes the channel behind it: the task is lost silently.
    On RabbitMQ 3 the task runs.
    """
    sent = producer.send()
    if rabbitmq_version < (4,):
        ledger.wait_settled([sent.task_id], timeout=20)
        stack.verdict().assert_counts(succeeded=1)
    elif confirms == "confirms":
        assert not sent.ok, "the publish failed and the page said so"
        stack.verdict().assert_counts(unsent=1)
    else:
        assert sent.ok, "the page said queued"
        never(lambda: ledger.history(sent.task_id).count("task-received"), for_=3, what="the big task delivered")
        stack.verdict().assert_counts(lost=1)


def two_workers(**env: str):
    """worker_a and worker_b, -c 1 each; the task named world-0 works 4 s, the others 0.05 s."""
    from app_under_test.stack import worker

    workers = (worker("worker_a", "tasks_quorum"), worker("worker_b", "tasks_quorum"))
    return demo(workers=workers, env={"HELLO_LONG_NAME": "world-0", "HELLO_LONG_SECONDS": "4", **env})


PREFETCH_ONE = {**QUORUM, "task_acks_late": True, "worker_prefetch_multiplier": 1}


@pytest.mark.parametrize(
    "lever",
    [
        "classic",
        pytest.param("quorum", marks=pytest.mark.celery_config(**QUORUM)),
        pytest.param("quorum-acks-late-prefetch-1", marks=pytest.mark.celery_config(**PREFETCH_ONE)),
    ],
)
@pytest.mark.parametrize("stack_spec", [two_workers()], indirect=True, ids=["two-workers"])
def test_short_tasks_wait_behind_a_long_one_under_prefetch(stack, producer, ledger, lever):
    """One long task (4 s) and six short ones, on two idle workers (``-c 1``, Celery's default prefetch).

    What a user sees: some short tasks wait 4 s behind the long one although the other worker is idle: the
    busy worker had prefetched them (Celery acknowledges a task when it starts, so the long task leaves room
    for four more). Quorum queues change nothing here: Celery turns global QoS off for them (per-consumer
    prefetch, as kombu does on any queue of RabbitMQ 4), and one worker's prefetch is the same number. The
    lever is the same for both queue types: ``task_acks_late`` with ``worker_prefetch_multiplier = 1``; then
    no short task waits behind the long one.
    """
    long_id = producer.send(0).task_id
    ledger.wait_running([long_id], timeout=10)
    short = [producer.send(n).task_id for n in range(1, 7)]
    ledger.wait_settled([long_id, *short], timeout=30)

    stack.verdict().assert_counts(succeeded=7)
    long_run = ledger.history(long_id)
    busy, long_end = long_run.finished_by, long_run.terminal.timestamp
    held = [i for i in short if ledger.history(i).finished_by == busy and first(ledger, i, "task-started") >= long_end]
    if lever.startswith("quorum-acks-late"):
        assert held == [], "every short task ran on the idle worker"
    else:
        assert 1 <= len(held) <= 4, f"{len(held)} short tasks waited for the long one on its worker"


def first(ledger, task_id: str, event_type: str) -> float:
    return next(e.timestamp for e in ledger.history(task_id).events if e.type == event_type)
