"""harness.stalls: a worker alive, its queue holding tasks, nothing received for a while, is called stalled."""

from __future__ import annotations

from harness.stalls import WorkerFacts, ready_since, stalled

NOW = 1000.0


def worker(**changes) -> WorkerFacts:
    facts = {"name": "worker_hello", "queues": ("hello_queue",), "running": True, "holding": 0, "last_received": 900.0}
    return WorkerFacts(**{**facts, **changes})


def test_a_live_idle_worker_beside_a_queue_full_for_longer_than_the_bound_is_stalled() -> None:
    lines = stalled([worker()], {"hello_queue": 3}, {"hello_queue": 950.0}, NOW, after=20)
    assert lines == ["stalled: worker worker_hello alive, 3 ready in hello_queue, nothing received for 50 s"]


def test_a_worker_that_received_recently_is_not_stalled() -> None:
    assert stalled([worker(last_received=995.0)], {"hello_queue": 3}, {"hello_queue": 950.0}, NOW, after=20) == []


def test_a_queue_that_filled_recently_is_not_a_stall_yet() -> None:
    assert stalled([worker()], {"hello_queue": 3}, {"hello_queue": 990.0}, NOW, after=20) == []


def test_a_busy_worker_with_a_full_prefetch_is_not_stalled() -> None:
    assert stalled([worker(holding=4)], {"hello_queue": 3}, {"hello_queue": 900.0}, NOW, after=20) == []


def test_a_stopped_worker_is_not_stalled_it_is_stopped() -> None:
    assert stalled([worker(running=False)], {"hello_queue": 3}, {"hello_queue": 900.0}, NOW, after=20) == []


def test_an_empty_queue_or_another_workers_queue_is_no_stall() -> None:
    assert stalled([worker()], {"hello_queue": 0}, {"hello_queue": None}, NOW, after=20) == []
    assert stalled([worker()], {"other": 5}, {"other": 900.0}, NOW, after=20) == []


def test_ready_since_is_the_start_of_the_last_unbroken_run_of_ready_samples() -> None:
    samples = [(1.0, 0), (2.0, 3), (3.0, 4), (4.0, None), (5.0, 2), (6.0, 2)]
    assert ready_since(samples, NOW) == 5.0
    assert ready_since([*samples, (7.0, 0)], NOW) is None
