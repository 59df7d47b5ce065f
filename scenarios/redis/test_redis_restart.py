"""Redis restarts with a backlog: what survives depends on its persistence setting, not on Celery."""

import pytest

from app_under_test.stack import HELLO_QUEUE, WORKER
from harness.producers import assert_all_queued

pytestmark = [pytest.mark.catalogue, pytest.mark.broker_fault]

CLICKS = 10
QUIET_S = 2.0  # the worker is idle and connected: a surviving message would start within milliseconds


def backlog(stack, producer, vhost, clicks: int = CLICKS, waiting: int = 0) -> list:
    """``clicks`` tasks waiting for a stopped worker (``waiting`` already there)."""
    sent = producer.send_many(clicks)
    assert_all_queued(sent, within=1.0)
    vhost.wait_for_ready(HELLO_QUEUE, waiting + clicks, timeout=5)
    return sent


@pytest.mark.parametrize(
    ("persistence", "survive"),
    [("off", 0), ("aof-everysec", CLICKS), ("aof-always", CLICKS)],
    ids=["no-persistence", "aof-everysec", "aof-always"],
)
def test_redis_crash_with_a_backlog_keeps_what_its_persistence_wrote(
    owned_broker, stack, producer, vhost, ledger, persistence, survive
):
    """Redis crashes (SIGKILL: an OOM kill, a node lost) while tasks wait for a stopped worker.

    What a user sees: without persistence (a cache-style Redis, and many a container's default) every waiting
    task is gone, silently: the clicks all said "queued". With an append-only file every task survives, whether
    Redis syncs it every second or at each write: a process crash loses nothing the kernel already has, and
    Redis writes each command to the file before it answers; only a machine that loses power loses the last
    second of ``everysec``. Celery cannot change this: it is the Redis server's setting.
    """
    owned_broker.persistence(persistence)
    stack.stop(WORKER)
    backlog(stack, producer, vhost)

    owned_broker.restart_broker("crash")

    assert vhost.ready(HELLO_QUEUE) == survive
    stack.start(WORKER)
    if survive:
        ledger.wait_settled(timeout=20)
    else:
        ledger.assert_quiet(ledger.sent_ids, for_=QUIET_S, why="nothing survived the crash")
    stack.verdict().assert_counts(succeeded=survive, lost=CLICKS - survive)


def test_redis_crash_with_snapshots_loses_what_came_after_the_last_one(owned_broker, stack, producer, vhost, ledger):
    """Redis with its default snapshots (RDB) crashes: a snapshot was taken after the first half of a backlog.

    What a user sees: the tasks sent before the snapshot run after the restart; those sent after it are gone,
    silently. With Redis's default schedule a snapshot comes after an hour with one change, or five minutes
    with a hundred: on a quiet queue, the last hour of tasks.
    """
    owned_broker.persistence("rdb")
    stack.stop(WORKER)
    before = backlog(stack, producer, vhost)
    owned_broker.snapshot()
    after = backlog(stack, producer, vhost, waiting=CLICKS)

    owned_broker.restart_broker("crash")

    assert vhost.ready(HELLO_QUEUE) == CLICKS
    stack.start(WORKER)
    ledger.wait_settled([s.task_id for s in before], timeout=20)
    verdict = stack.verdict()
    verdict.assert_counts(succeeded=CLICKS, lost=CLICKS)
    assert sorted(verdict.ids("lost")) == sorted(s.task_id for s in after)


def test_redis_shutdown_with_snapshots_keeps_the_whole_backlog(owned_broker, stack, producer, vhost, ledger):
    """Redis with its default snapshots is shut down properly (``SHUTDOWN``: a restart for an upgrade).

    What a user sees: nothing is lost: Redis writes a snapshot as it shuts down when snapshots are on. The same
    shutdown without persistence would lose everything: the difference between the two is a setting.
    """
    owned_broker.persistence("rdb")
    stack.stop(WORKER)
    backlog(stack, producer, vhost)

    owned_broker.restart_broker("shutdown")

    assert vhost.ready(HELLO_QUEUE) == CLICKS
    stack.start(WORKER)
    ledger.wait_settled(timeout=20)
    stack.verdict().assert_counts(succeeded=CLICKS)
