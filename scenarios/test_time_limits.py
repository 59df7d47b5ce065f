"""Time limits: a soft limit lets a task clean up; a hard limit kills its pool process."""

import pytest

from app_under_test.stack import WORKER, demo
from harness.waiting import never

pytestmark = [pytest.mark.catalogue, pytest.mark.limits]

LIMITS = {"HELLO_SOFT_LIMIT": "0.5", "HELLO_HARD_LIMIT": "1.5"}
TASKS = 2


def worker(**env: str):
    return demo(worker_version="tasks_time_limits", work_seconds=10, env={**LIMITS, **env})


@pytest.mark.parametrize("stack_spec", [worker()], indirect=True, ids=["soft-0.5s"])
def test_a_task_past_its_soft_limit_cleans_up_and_fails(stack, producer, ledger):
    """say_hello has ``soft_time_limit=0.5`` and its work takes 10 s.

    What a user sees: at 0.5 s Celery raises ``SoftTimeLimitExceeded`` inside the task, which
    gets the chance to release what it holds (it says so with a custom ``task-cleanup`` event) and
    fails. The pool process lives on and runs the next task.
    """
    pool_before = stack.pool_pids(WORKER)
    ids = [c.task_id for c in producer.send_many(TASKS)]
    ledger.wait_settled(ids, timeout=10)

    verdict = stack.verdict()
    verdict.assert_counts(failed=TASKS)
    assert verdict.exception_types() == {"SoftTimeLimitExceeded": TASKS}
    ledger.wait_each_has("task-cleanup", ids)  # each task cleaned up (its event may trail the journal's end)
    assert all(ledger.history(i).count("task-cleanup") == 1 for i in ids), "each task cleaned up once"
    assert stack.pool_pids(WORKER) == pool_before, "a soft limit does not replace the pool process"


@pytest.mark.parametrize("stack_spec", [worker(HELLO_IGNORES_SOFT_LIMIT="1")], indirect=True, ids=["hard-1.5s"])
def test_a_task_past_its_hard_limit_loses_its_pool_process_and_fails(stack, producer, ledger):
    """The same task swallows the soft limit and keeps working; ``time_limit=1.5`` is reached.

    What a user sees: the pool process running it is killed and replaced, and the task fails
    with ``TimeLimitExceeded``, no cleanup. The worker itself keeps serving: the next task runs in
    a new pool process, once the worker has replaced the killed one (a few seconds later).
    """
    pool_before = stack.pool_pids(WORKER)
    ids = [c.task_id for c in producer.send_many(TASKS)]
    ledger.wait_settled(ids, timeout=20)

    verdict = stack.verdict()
    verdict.assert_counts(failed=TASKS)
    assert verdict.exception_types() == {"TimeLimitExceeded": TASKS}
    never(  # events trail the journal's end by milliseconds; a second covers them
        lambda: ledger.count("task-cleanup", ids), until=lambda n: n > 0, for_=1.0,
        what="a task-cleanup event, although a hard limit gives no chance to clean up",
    )  # fmt: skip
    assert stack.state(WORKER) == "RUNNING", "the worker itself keeps serving"
    assert not set(stack.pool_pids(WORKER)) & set(pool_before), "the killed pool process was replaced"
