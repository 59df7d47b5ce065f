"""Prefetch starvation: short tasks wait behind a long one on a busy worker while another worker idles."""

import pytest

from app_under_test.stack import PATIENT_READY_S, demo, worker
from harness.producers import DirectProducer

pytestmark = [pytest.mark.catalogue, pytest.mark.limits]

LONG_S, SHORT_S, SHORTS = 4.0, 0.05, 8


def two_workers(**options) -> object:
    """Two ``-c 1`` workers of the lab tasks; the producer sends ``nap`` from the test process."""
    workers = tuple(worker(name, "tasks_lab", **options) for name in ("worker_a", "worker_b"))
    return demo(ready_timeout=PATIENT_READY_S, workers=workers).replace(
        producer=DirectProducer("nap", celery_app="app_under_test.tasks_lab:app", args=(SHORT_S,))
    )


def variant(name: str, stuck_at_most: int, stuck_at_least: int = 0, spec=None, **settings):
    marks = [pytest.mark.celery_config(**settings)] if settings else []
    return pytest.param(spec or two_workers(), stuck_at_least, stuck_at_most, marks=marks, id=name)


@pytest.mark.parametrize(
    ("stack_spec", "stuck_at_least", "stuck_at_most"),
    [
        variant("default-prefetch", stuck_at_least=2, stuck_at_most=SHORTS),
        variant("prefetch-1-fair", stuck_at_most=1, spec=two_workers(fair=True), worker_prefetch_multiplier=1),
        variant("prefetch-1-acks-late", stuck_at_most=0, worker_prefetch_multiplier=1, task_acks_late=True),
    ],
    indirect=["stack_spec"],
)
def test_short_tasks_starve_behind_a_long_one(stack, producer, ledger, stuck_at_least, stuck_at_most, record_property):
    """One 4 s task, then eight 0.05 s tasks, on two ``-c 1`` workers (a report export among quick emails).

    What a user sees: with Celery's default prefetch (``worker_prefetch_multiplier = 4``) the worker running
    the long task has already reserved several short ones, which wait the whole 4 s although the other
    worker is idle. ``worker_prefetch_multiplier = 1`` with ``-O fair`` still lets one short task wait:
    the long task is acknowledged as it starts (early acks), which frees a prefetch slot for one more. Only
    ``task_acks_late`` with a prefetch of 1 keeps every short task off the busy worker.
    """
    long_id = producer.send_call((LONG_S,), {}).task_id
    ledger.wait_running([long_id], timeout=10)
    shorts = [s.task_id for s in producer.send_many(SHORTS)]
    ledger.wait_settled([long_id, *shorts], timeout=30)

    sends, histories = ledger.sends(), ledger.histories()
    latency = {i: histories[i].terminal.timestamp - sends[i].at for i in shorts}
    stuck = sorted(i for i, s in latency.items() if s >= LONG_S / 2)
    record_property("short_latency_max_s", round(max(latency.values()), 2))
    record_property("stuck_behind_long", len(stuck))
    print(f"{len(stuck)} of {SHORTS} short tasks waited for the long one; slowest {max(latency.values()):.2f}s")
    assert stuck_at_least <= len(stuck) <= stuck_at_most, f"{len(stuck)} short tasks waited behind the long one"
    stack.verdict().assert_counts(succeeded=SHORTS + 1)
