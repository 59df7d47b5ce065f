"""Redis down or out of memory while users click: what the app says, and what becomes of the tasks."""

import pytest

from app_under_test.stack import HELLO_QUEUE, WORKER
from harness.producers import assert_all_queued

pytestmark = [pytest.mark.catalogue, pytest.mark.broker_fault]

CLICKS = 5
ERROR_BOUND_S = 5.0  # the app's own bound: a 2 s connect timeout and 2 quick publish retries
QUIET_S = 2.0


def test_clicks_while_redis_is_down_fail_fast_and_clearly_then_work_again(owned_broker, stack, producer, ledger):
    """Redis is down (crashed, restarting) while users keep clicking.

    What a user sees: each click answers within seconds with an error (503): the publish fails and the app
    knows it; none of those tasks ever runs, and none is silently lost. When Redis is back the next clicks
    work, and the worker, reconnected by itself, runs them.
    """
    with owned_broker.stopped("crash"):
        refused = producer.send_many(CLICKS)

    assert all(c.status == 503 and not c.queued for c in refused), f"clicks while Redis was down: {refused}"
    slowest = max(c.seconds for c in refused)
    assert slowest < ERROR_BOUND_S, f"a click took {slowest:.1f}s to fail; the app must answer within {ERROR_BOUND_S}s"

    stack.wait_worker_reconnected(WORKER)
    accepted = producer.send_many(CLICKS)
    assert_all_queued(accepted, within=ERROR_BOUND_S)
    ledger.wait_settled([c.task_id for c in accepted], timeout=20)
    stack.verdict().assert_counts(succeeded=CLICKS, unsent=CLICKS)


def test_redis_at_maxmemory_with_noeviction_refuses_new_tasks_and_keeps_the_backlog(
    owned_broker, stack, producer, vhost, ledger
):
    """Redis reaches ``maxmemory`` with the ``noeviction`` policy (the safe one for a broker) while tasks wait.

    What a user sees: new clicks fail with an error (Redis answers "OOM command not allowed"), so the app knows
    and says so; the tasks already queued are all kept and run once memory is available again.
    """
    stack.stop(WORKER)
    waiting = producer.send_many(CLICKS)
    assert_all_queued(waiting, within=1.0)
    vhost.wait_for_ready(HELLO_QUEUE, CLICKS, timeout=5)

    with owned_broker.maxmemory("1b", "noeviction"):  # below what it uses already: every write is refused
        refused = producer.send_many(CLICKS)
        assert vhost.ready(HELLO_QUEUE) == CLICKS

    assert all(c.status == 503 and not c.queued for c in refused), f"clicks at maxmemory: {refused}"
    stack.start(WORKER)
    ledger.wait_settled([c.task_id for c in waiting], timeout=20)
    stack.verdict().assert_counts(succeeded=CLICKS, unsent=CLICKS)


def test_redis_at_maxmemory_with_allkeys_lru_evicts_the_queue_silently(owned_broker, stack, producer, vhost, ledger):
    """The same Redis is also the app's cache, with ``maxmemory-policy allkeys-lru`` (right for a cache), and the
    cache fills it up while tasks wait for a stopped worker.

    What a user sees: the clicks all said "queued", and the tasks are gone. To make room Redis evicts the least
    recently used keys, and a queue nobody has touched since the backlog formed is one of them: no error
    anywhere, no trace in Celery. A Redis that is a broker must use ``noeviction`` (or be a server of its own).
    """
    stack.stop(WORKER)
    assert_all_queued(producer.send_many(CLICKS), within=1.0)
    vhost.wait_for_ready(HELLO_QUEUE, CLICKS, timeout=5)

    limit = owned_broker.used_memory() + 512 * 1024
    with owned_broker.maxmemory(str(limit), "allkeys-lru"):
        owned_broker.fill_cache(bytes_=4 * 1024 * 1024)  # the app's cache writes 4 MB, past the limit
        assert vhost.ready(HELLO_QUEUE) == 0, "the queue was evicted"

    stack.start(WORKER)
    ledger.assert_quiet(ledger.sent_ids, for_=QUIET_S, why="the evicted tasks are gone")
    stack.verdict().assert_counts(lost=CLICKS)
