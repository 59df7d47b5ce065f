"""One worker fault, four pools: prefork, threads, solo and gevent under a kill, a time limit and a shutdown."""

from __future__ import annotations

import celery
import pytest

from app_under_test.stack import HELLO_QUEUE, WORKER, demo, worker
from harness.errors import HarnessError
from harness.spec import StackSpec
from harness.waiting import never

pytestmark = [pytest.mark.catalogue, pytest.mark.worker_fault, pytest.mark.pools]

POOLS = ("prefork", "threads", "solo", "gevent")
TASKS = 4  # one running + three prefetched: -c 1 with Celery's default prefetch multiplier of 4
ACKS_LATE = pytest.mark.celery_config(task_acks_late=True, task_reject_on_worker_lost=True)
LIMITS = {"HELLO_SOFT_LIMIT": "0.5", "HELLO_HARD_LIMIT": "1.5"}  # and 3 s of work: past both


def on(pool: str, work_seconds: float = 3.0, version: str = "tasks", **env: str) -> StackSpec:
    """The demo with one worker of ``pool`` (-c 1)."""
    return demo(work_seconds=work_seconds, workers=(worker(version=version, pool=pool),), env=env)


def each_pool(**options: str | float) -> list:
    return [pytest.param(on(pool, **options), id=pool) for pool in POOLS]


def busy(stack, producer, ledger, pool: str) -> tuple[list[str], str]:
    """Send the tasks and wait until one runs; return every id and the running one."""
    if pool != "solo":
        return stack.busy_worker(TASKS)  # all received (one running, three prefetched), the start known to Celery
    # A solo worker runs the task inside its event loop: it reads the next message, and flushes the task's events,
    # only once the task has ended. The other three wait unread in its connection (delivered, unacknowledged).
    ids = [sent.task_id for sent in producer.send_many(TASKS)]
    return ids, ledger.wait_running(ids, timeout=10)


def ran_for(history) -> float:
    """Seconds from the task's start to its end."""
    started = min(e.timestamp for e in history.events if e.type == "task-started")
    return history.terminal.timestamp - started


def pool_of(request: pytest.FixtureRequest) -> str:
    return request.node.callspec.id.split("-")[0]


@pytest.mark.parametrize("stack_spec", each_pool(), indirect=True)
def test_a_killed_worker_loses_its_running_task_with_early_ack_but_not_on_solo(stack, producer, ledger, request):
    """SIGKILL to every process of the worker (its container died) while a task runs, with Celery's early ack.

    What a user sees: on prefork, threads and gevent the running task is lost, whichever process, thread or greenlet
    ran it: it was acknowledged as it started. The tasks the worker held unstarted come back and run after the
    restart. On solo nothing is lost: the running task comes back too and runs again from the start, as if it were
    acknowledged late. Celery's worker writes the early acknowledgement on the next turn of its event loop
    (``hub.call_soon``), and a solo worker runs the task inside that loop: the ack leaves only once the task has
    returned. Counting on it is unwise: it is a side effect of the pool, not a setting.
    """
    pool = pool_of(request)
    ids, running = busy(stack, producer, ledger, pool)
    stack.kill(WORKER)
    stack.start(WORKER)
    ledger.wait_settled(ids if pool == "solo" else [i for i in ids if i != running], timeout=30)
    stack.stop(WORKER)  # no consumer left: a task neither done nor queued is lost for good

    verdict = stack.verdict()
    if pool == "solo":
        verdict.assert_counts(succeeded=TASKS - 1, duplicated=1)
        assert verdict.ids("duplicated") == [running]
    else:
        verdict.assert_counts(succeeded=TASKS - 1, lost=1)
        assert verdict.ids("lost") == [running]


@ACKS_LATE
@pytest.mark.parametrize("stack_spec", each_pool(), indirect=True)
def test_a_killed_worker_reruns_its_running_task_with_acks_late_on_every_pool(stack, producer, ledger, request):
    """The same death with ``task_acks_late`` and ``task_reject_on_worker_lost``.

    What a user sees: on every pool the running task is not lost but runs again from the start after the restart:
    its message was never acknowledged, so the broker requeued it when the connection dropped.
    """
    ids, running = busy(stack, producer, ledger, pool_of(request))
    stack.kill(WORKER)
    stack.start(WORKER)
    ledger.wait_settled(ids, timeout=30)

    verdict = stack.verdict()
    assert verdict.count("lost") == 0 and running in verdict.ids("duplicated"), verdict.explain()
    history = ledger.history(running)
    assert (history.count("task-started"), history.count("task-succeeded")) == (2, 1), history.describe()


@pytest.mark.parametrize("stack_spec", each_pool(), indirect=True)
def test_only_prefork_has_a_pool_process_to_lose(stack, producer, ledger, request):
    """The kernel's OOM killer takes the process running a task; the worker's main process survives.

    What a user sees: on prefork the task fails with ``WorkerLostError`` and a new pool process takes the next one.
    threads, solo and gevent run every task inside the worker's main process: there is no such process, so the OOM
    killer's victim is the whole worker (the killed worker above). The harness refuses the fault for them, saying
    so, and nothing happens to the tasks.
    """
    pool = pool_of(request)
    ids, running = busy(stack, producer, ledger, pool)
    if pool == "prefork":
        stack.kill_pool_process(WORKER)
    else:
        with pytest.raises(HarnessError, match=f"runs the {pool} pool, which has no pool processes"):
            stack.kill_pool_process(WORKER)
    ledger.wait_settled(ids, timeout=30)

    verdict = stack.verdict()
    if pool == "prefork":
        verdict.assert_counts(succeeded=TASKS - 1, failed=1)
        assert verdict.exception_types() == {"WorkerLostError": 1} and verdict.ids("failed") == [running]
    else:
        verdict.assert_counts(succeeded=TASKS)


# What each pool makes of say_hello's soft_time_limit=0.5 and time_limit=1.5 over 3 s of work: how the task ends, and
# whether it cleaned up (prefork raises the soft limit in the task; gevent enforces the hard limit alone, with a
# gevent.Timeout in the greenlet; threads and solo enforce neither).
SOFT = {
    "prefork": ("SoftTimeLimitExceeded", 1),
    "gevent": ("TimeLimitExceeded", 0),
    "threads": (None, 0),
    "solo": (None, 0),
}
HARD = {"prefork": "TimeLimitExceeded", "gevent": "TimeLimitExceeded", "threads": None, "solo": None}


@pytest.mark.parametrize("stack_spec", each_pool(version="tasks_time_limits", **LIMITS), indirect=True)
def test_a_soft_time_limit_is_raised_only_by_prefork(stack, producer, ledger, request):
    """say_hello has ``soft_time_limit=0.5`` and ``time_limit=1.5``, and 3 s of work; it cleans up on the soft limit.

    What a user sees: prefork raises ``SoftTimeLimitExceeded`` in the task at 0.5 s, which cleans up and fails.
    gevent never raises the soft limit: the task works on to the hard limit and fails with ``TimeLimitExceeded``, with
    no chance to clean up. threads and solo enforce no limit at all (Celery's docs say so; it is silent at run time):
    the task runs its 3 s and succeeds.
    """
    exception, cleanups = SOFT[pool_of(request)]
    ids = [c.task_id for c in producer.send_many(2)]
    ledger.wait_settled(ids, timeout=20)

    verdict = stack.verdict()
    if exception is None:
        verdict.assert_counts(succeeded=2)
    else:
        verdict.assert_counts(failed=2)
        assert verdict.exception_types() == {exception: 2}
    if cleanups:
        ledger.wait_each_has("task-cleanup", ids)  # its event may trail the journal's end
        assert all(ledger.history(i).count("task-cleanup") == 1 for i in ids), "each task cleaned up once"
    else:
        never(  # a task-cleanup event trails the journal's end by milliseconds; a second covers it
            lambda: ledger.count("task-cleanup", ids), until=lambda n: n > 0, for_=1.0,
            what="a task-cleanup event, although the soft limit was never raised",
        )  # fmt: skip


@pytest.mark.parametrize(
    "stack_spec", each_pool(version="tasks_time_limits", HELLO_IGNORES_SOFT_LIMIT="1", **LIMITS), indirect=True
)
def test_a_hard_time_limit_is_enforced_by_prefork_and_gevent_only(stack, producer, ledger, request):
    """The same task, swallowing the soft limit; ``time_limit=1.5`` is reached.

    What a user sees: prefork kills the pool process at 1.5 s and the task fails with ``TimeLimitExceeded``; gevent
    interrupts the task's greenlet at the same point with the same failure, in the worker's own process. threads and
    solo let the task run past its hard limit to its end and report it succeeded: a stuck task there holds its
    thread (or the whole worker) for good.
    """
    pool = pool_of(request)
    ids = [c.task_id for c in producer.send_many(2)]
    ledger.wait_settled(ids, timeout=20)

    verdict = stack.verdict()
    if HARD[pool] is None:
        verdict.assert_counts(succeeded=2)
        ran = [ran_for(ledger.history(i)) for i in ids]
        assert all(seconds >= 3.0 for seconds in ran), f"each ran its whole 3 s, past its 1.5 s limit: {ran}"
    else:
        verdict.assert_counts(failed=2)
        assert verdict.exception_types() == {HARD[pool]: 2}
    assert stack.state(WORKER) == "RUNNING", "the worker itself keeps serving"


# How many of the four tasks go back to the queue when the worker exits: prefork and threads take all four at once
# (one runs, three wait in the worker); a gevent worker of one greenlet takes a message only when the greenlet is
# free, so it holds one waiting task beside the running one (two have run by then); solo reads the next message only
# once its task has ended, and the three others wait unread in its connection.
WARM_BACK = {"prefork": 3, "threads": 3, "gevent": 0, "solo": 0}
# A cold shutdown: how the running task ends before the worker exits (None: it does not), and how many go back.
COLD = {
    "prefork": (None, 3),
    "threads": ("task-succeeded", None),  # 3 when it stops at once; fewer when it ran on (see the story)
    "gevent": ("task-succeeded", 1),
    "solo": ("task-failed", 0),
}


def ended(ledger, ids: list[str]) -> list[str]:
    return [i for i in ids if ledger.history(i).terminal is not None]


@pytest.mark.parametrize("stack_spec", each_pool(work_seconds=2.0), indirect=True)
def test_a_warm_shutdown_loses_nothing_on_every_pool_but_runs_more_on_gevent_and_solo(
    stack, producer, vhost, ledger, request
):
    """``kill -TERM <worker pid>``: Celery's warm shutdown.

    What a user sees: on every pool nothing is lost and nothing runs twice, and the running task completes before the
    worker exits. What the worker does with the tasks it holds differs: prefork and threads give them back to the
    queue, to run once a worker is back. A gevent worker runs the one it was waiting to start as well. A solo worker
    goes on reading and running every message already delivered to its connection, and exits only when none is
    left: its warm shutdown lasts as long as its whole prefetch.
    """
    pool = pool_of(request)
    ids, running = busy(stack, producer, ledger, pool)
    stack.signal(WORKER, "TERM")
    stack.wait_exited(WORKER)

    assert ledger.history(running).terminal.type == "task-succeeded", "the running task finished before exit"
    assert len(ended(ledger, ids)) == TASKS - WARM_BACK[pool], [ledger.history(i).describe() for i in ids]
    vhost.wait_for_ready(HELLO_QUEUE, WARM_BACK[pool], timeout=5)
    stack.start(WORKER)
    ledger.wait_settled(ids, timeout=20)
    stack.verdict().assert_counts(succeeded=TASKS)


@pytest.mark.parametrize("stack_spec", each_pool(work_seconds=2.0), indirect=True)
def test_a_cold_shutdown_cancels_the_running_task_only_on_prefork(stack, producer, vhost, ledger, request):
    """``kill -QUIT <worker pid>``: Celery's cold shutdown, which cancels the running tasks.

    What a user sees: prefork terminates the pool process and reports the task cancelled; acknowledged at its
    start, it is lost. threads and gevent cannot terminate a running task: the worker waits for it and it succeeds
    (gevent runs no other; the task waiting for its greenlet goes back to the queue). A threads worker usually gives
    its three prefetched tasks back too; on a loaded machine (three scenarios at once on two cores) it was seen to go
    on running them while it shut down, their early acknowledgements lost with its closing connection: they ran
    again after the restart (``duplicated``). Nothing is lost either way. solo fails the task with
    ``NotImplementedError`` (the solo pool cannot terminate a task, and says so inside the very task its signal
    handler interrupted), after running the three tasks still unread in its connection during its shutdown. What
    the worker did not run goes back to the queue and runs after the restart.
    """
    pool = pool_of(request)
    end, back = COLD[pool]
    ids, running = busy(stack, producer, ledger, pool)
    stack.signal(WORKER, "QUIT")
    stack.wait_exited(WORKER)

    terminal = ledger.history(running).terminal
    assert (terminal.type if terminal else None) == end, ledger.history(running).describe()
    if back is not None:
        vhost.wait_for_ready(HELLO_QUEUE, back, timeout=5)
    stack.start(WORKER)
    ledger.wait_settled([i for i in ids if i != running], timeout=20)
    stack.stop(WORKER)  # no consumer left: what is neither done nor queued is lost
    verdict = stack.verdict()
    if pool == "prefork":
        verdict.assert_counts(succeeded=TASKS - 1, lost=1)
        assert ledger.history(running).count("task-cancelled") == 1
    elif pool == "solo":
        verdict.assert_counts(succeeded=TASKS - 1, failed=1)
        assert verdict.exception_types() == {"NotImplementedError": 1}
    elif pool == "threads":
        counts = verdict.counts()
        assert counts["succeeded"] + counts["duplicated"] == TASKS == verdict.total(), verdict
    else:
        verdict.assert_counts(succeeded=TASKS)


# A container's stop (docker stop -t 3, a Kubernetes pod's grace period): SIGTERM to the worker, SIGKILL 3 s later,
# while a task with 6 s of work runs (prefork). How each shutdown setting ends it, and what becomes of that task with
# Celery's early ack and with acks_late.
GRACE_S = 3.0
SOFT_S = 1.0
REMAP = {"REMAP_SIGTERM": "SIGQUIT"}  # billiard reads it at import: SIGTERM then starts a cold shutdown
NEEDS_SOFT_SHUTDOWN = pytest.mark.skipif(
    tuple(int(part) for part in celery.__version__.split(".")[:2]) < (5, 5),
    reason=f"worker_soft_shutdown_timeout came with Celery 5.5 (this is {celery.__version__})",
)
STOPS = {  # name: (worker env, worker settings, how the stop ended)
    "default": ({}, {}, "killed"),
    "soft-timeout-alone": ({}, {"worker_soft_shutdown_timeout": SOFT_S}, "killed"),
    "remap-sigterm": (REMAP, {}, "exited"),
    "remap-sigterm-and-soft-timeout": (REMAP, {"worker_soft_shutdown_timeout": SOFT_S}, "exited"),
}


def stop_case(name: str, acks_late: bool):
    env, settings, _ = STOPS[name]
    spec = demo(work_seconds=6.0, workers=(worker(env=env, celery_config=settings),))
    marks = [NEEDS_SOFT_SHUTDOWN] if settings else []
    if acks_late:
        marks.append(ACKS_LATE)
    return pytest.param(spec, name, acks_late, id=f"{name}-{'acks-late' if acks_late else 'early-ack'}", marks=marks)


@pytest.mark.parametrize(
    ("stack_spec", "stop", "acks_late"), [stop_case(n, late) for n in STOPS for late in (False, True)],
    indirect=["stack_spec"],
)  # fmt: skip
def test_a_container_stop_shorter_than_the_task_with_and_without_soft_shutdown(stack, ledger, stop, acks_late):
    """SIGTERM to the worker, SIGKILL to what is left 3 s later (a container's stop), while a 6 s task runs.

    What a user sees: by default SIGTERM is a warm shutdown that waits for the task; the grace runs out and SIGKILL
    ends it mid-task: lost with the early ack, run again with ``task_acks_late``. ``worker_soft_shutdown_timeout``
    alone changes nothing: Celery 5.5's soft shutdown applies to a cold shutdown, and SIGTERM is a warm one. With
    ``REMAP_SIGTERM=SIGQUIT`` in the worker's environment SIGTERM starts a cold shutdown: the worker cancels the task
    itself (at once, or after the soft timeout's wait) and exits before the SIGKILL. The task's fate is the same as
    under the SIGKILL (lost with the early ack, requeued and run again with acks_late); what changes is that the
    worker ends by itself, says the task was cancelled, and a task that ends within the soft timeout finishes.
    """
    ids, running = stack.busy_worker(2)
    assert stack.container_stop(WORKER, GRACE_S) == STOPS[stop][2]
    cancelled = ledger.history(running).count("task-cancelled")
    assert cancelled == (1 if STOPS[stop][2] == "exited" else 0), ledger.history(running).describe()
    stack.start(WORKER)
    ledger.wait_settled(ids if acks_late else [i for i in ids if i != running], timeout=30)
    stack.stop(WORKER)  # no consumer left: what is neither done nor queued is lost

    verdict = stack.verdict()
    if acks_late:
        verdict.assert_counts(succeeded=1, duplicated=1)
        assert verdict.ids("duplicated") == [running]
    else:
        verdict.assert_counts(succeeded=1, lost=1)
        assert verdict.ids("lost") == [running]
