"""harness.spec: what a scenario runs, as plain data."""

from __future__ import annotations

import pytest

from harness.errors import HarnessError
from harness.spec import StackSpec, WorkerSpec


def test_a_worker_without_a_concurrency_of_its_own_takes_the_stacks() -> None:
    """One pool process in a scenario (a fault lands on one known task); the app's own where the stack says None."""
    assert StackSpec().concurrency_of(WorkerSpec()) == 1
    assert StackSpec().concurrency_of(WorkerSpec(concurrency=4)) == 4
    assert StackSpec(worker_concurrency=None).concurrency_of(WorkerSpec()) is None
    assert StackSpec(worker_concurrency=None).concurrency_of(WorkerSpec(concurrency=2)) == 2


def test_a_concurrency_below_one_is_one_sentence() -> None:
    with pytest.raises(HarnessError, match=r"WorkerSpec\(concurrency=0\) must be at least 1"):
        WorkerSpec(concurrency=0)


def test_a_worker_without_a_pool_of_its_own_takes_the_stacks() -> None:
    """prefork in a scenario (the catalogue's stories are told for it); the app's own (no -P) where the stack says
    None, as the resilience audit runs it."""
    assert StackSpec().pool_of(WorkerSpec()) == "prefork"
    assert StackSpec().pool_of(WorkerSpec(pool="gevent")) == "gevent"
    assert StackSpec(worker_pool=None).pool_of(WorkerSpec()) is None
    assert StackSpec(worker_pool=None).pool_of(WorkerSpec(pool="threads")) == "threads"


def test_an_unknown_pool_is_one_sentence() -> None:
    with pytest.raises(
        HarnessError, match=r"WorkerSpec\(pool='eventlet'\) is not one of prefork, threads, solo, gevent"
    ):
        WorkerSpec(pool="eventlet")
