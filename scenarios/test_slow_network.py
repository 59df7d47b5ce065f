"""A slow network between the worker and RabbitMQ (another region, a congested VPN): latency, not loss."""

import pytest

from app_under_test.stack import PATIENT_READY_S, WORKER, demo, worker
from harness.producers import DirectProducer

pytestmark = [pytest.mark.catalogue, pytest.mark.network_fault]

TASKS, LATENCY_MS = 20, 150
RTT_S = 2 * LATENCY_MS / 1000
LAB = demo(ready_timeout=PATIENT_READY_S, workers=(worker(version="tasks_lab"),)).replace(
    producer=DirectProducer("nap", celery_app="app_under_test.tasks_lab:app", args=(0.01,))
)


def prefetch(name: str, **settings):
    return pytest.param(name, marks=[pytest.mark.celery_config(**settings)] if settings else [], id=name)


@pytest.mark.parametrize("stack_spec", [LAB], indirect=True, ids=["10ms-tasks"])
@pytest.mark.parametrize(
    "setting",
    [prefetch("default"), prefetch("prefetch-1-acks-late", worker_prefetch_multiplier=1, task_acks_late=True)],
)
def test_latency_to_the_broker_costs_a_round_trip_per_task_with_prefetch_1(
    stack, producer, ledger, setting, record_property
):
    """The worker is 150 ms away from RabbitMQ (each way) and drains twenty 10 ms tasks.

    What a user sees: with Celery's default prefetch (4 per process) the latency is paid about once: the
    next messages are already in the worker when a task ends. With ``worker_prefetch_multiplier = 1`` and
    ``task_acks_late`` (the settings recommended against starvation and for long tasks) each task waits
    for its predecessor's acknowledgement to reach the broker and the next delivery to come back: a full
    round trip (300 ms) per task, twenty times (measured: about 0.5 s a task, the task's events crossing
    the same slow link). Nothing is lost either way; the price is time. (The drain is timed from the
    worker's first receipt to its last task's end.)
    """
    with stack.net.latency(WORKER, ms=LATENCY_MS):
        sends = producer.send_many(TASKS)
        ledger.wait_settled([s.task_id for s in sends], timeout=60)

    # The drain: the worker's first receipt to its last task's end (both on the worker's clock), so a slow
    # first delivery on a loaded machine is not counted as per-task latency.
    histories = [ledger.history(s.task_id) for s in sends]
    first_received = min(e.timestamp for h in histories for e in h.events if e.type == "task-received")
    drain_s = max(h.terminal.timestamp for h in histories) - first_received
    record_property("drain_s", round(drain_s, 2))
    print(f"{setting}: {TASKS} tasks drained in {drain_s:.2f}s with {LATENCY_MS} ms each way")
    stack.verdict().assert_counts(succeeded=TASKS)
    if setting == "default":
        assert drain_s < (TASKS - 1) * RTT_S / 2, f"{drain_s:.1f}s: the default prefetch should hide most round trips"
    else:
        assert drain_s >= (TASKS - 1) * RTT_S, f"{drain_s:.1f}s is less than a round trip per task"
