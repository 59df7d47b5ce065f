"""Does a worker consume again after its Redis connection is cut? The long-standing "stalled consumer" reports,
tried for every way a connection goes, and the harness's detection of a worker that lives but takes nothing."""

import pytest

from app_under_test.stack import HELLO_QUEUE, WORKER
from harness.producers import assert_all_queued
from harness.waiting import eventually, never

pytestmark = [pytest.mark.catalogue, pytest.mark.broker_fault]

CLICKS = 3
RECOVER_S = 40.0  # Celery's reconnect backs off 2, 4, 6... s, and a half-open BRPOP is noticed after ~51 s at worst
FREEZE_S = 10.0
STALL_AFTER_S = 3.0


def cut_by_client_kill(broker, stack) -> None:
    """An operator's or a failover proxy's ``CLIENT KILL`` of the app's connections."""
    assert broker.kill_connections(db=stack.vhost.db) >= 1


def cut_by_crash(broker, stack) -> None:
    """Redis crashes and is back at once (empty: no persistence)."""
    broker.restart_broker("crash")


def cut_by_freeze(broker, stack) -> None:
    """Redis hangs (a long fork for a snapshot on a big dataset, a VM paused) and answers again."""
    with broker.unreachable():  # for FREEZE_S, watched: the worker rides it out, it does not exit
        never(lambda: stack.state(WORKER), until=lambda s: s != "RUNNING", for_=FREEZE_S, what="the worker exited")


def cut_by_reset(broker, stack) -> None:
    """The network resets the worker's connections (a load balancer's idle timeout, a NAT table flushed)."""
    assert stack.net.reset(WORKER) >= 1


CUTS = {"client-kill": cut_by_client_kill, "crash": cut_by_crash, "freeze": cut_by_freeze, "reset": cut_by_reset}


@pytest.mark.parametrize("cut", list(CUTS), ids=list(CUTS))
def test_an_idle_worker_consumes_again_after_its_connection_is_cut(owned_broker, stack, producer, vhost, ledger, cut):
    """The worker is idle, waiting on Redis (a blocking BRPOP), when its connection goes in one of four ways.

    What a user sees, with the versions here: the worker notices, reconnects by itself, and the next clicks run;
    the harness watches for the failure users report (a worker alive, its queue growing, nothing received) and
    finds none. Where one happens, ``verdict.stalled`` says which worker, how many tasks wait, and for how long.
    """
    CUTS[cut](owned_broker, stack)

    clicks = producer.send_many(CLICKS)
    assert_all_queued(clicks, within=RECOVER_S)
    ledger.wait_settled([c.task_id for c in clicks], timeout=RECOVER_S)

    verdict = stack.verdict(stall_after=STALL_AFTER_S)
    verdict.assert_no_stall()
    verdict.assert_counts(succeeded=CLICKS)


def test_a_hung_worker_is_named_stalled_while_its_queue_grows(stack, producer, vhost, ledger):
    """The worker's main process hangs (SIGSTOP here; in production a deadlock, or a consumer stuck after a
    reconnect), while supervisord still says RUNNING and its health check, a process check, passes.

    What a user sees: clicks are queued and nothing runs. The tasks are ``queued``, which alone looks like a slow
    worker; the verdict also says ``stalled: worker worker_hello alive, 2 ready in hello_queue, nothing received
    for N s``. The third is in no list: the hung worker's pending ``BRPOP`` popped it into its socket, where it
    is until the process reads it (or gone, if the process dies): ``unsettled``, not ``lost``, while the worker
    is stalled. When the process runs again, so do all three.
    """
    stack.signal(WORKER, "STOP")
    try:
        clicks = producer.send_many(CLICKS)
        assert_all_queued(clicks, within=1.0)
        # The hung worker's pending BRPOP takes one message into its socket: it is in no list and no hash.
        vhost.wait_for_ready(HELLO_QUEUE, CLICKS - 1, timeout=5)
        verdict = eventually(
            lambda: stack.verdict(settle=0, stall_after=STALL_AFTER_S), until=lambda v: v.stalled,
            timeout=STALL_AFTER_S + 10, what="the verdict to name the hung worker stalled",
        )  # fmt: skip
        assert stack.state(WORKER) == "RUNNING"
        verdict.assert_counts(queued=CLICKS - 1, unsettled=1)
        assert verdict.stalled[0].startswith(f"stalled: worker {WORKER} alive, {CLICKS - 1} ready in {HELLO_QUEUE}")
    finally:
        stack.signal(WORKER, "CONT")
    ledger.wait_settled([c.task_id for c in clicks], timeout=20)
    stack.verdict(stall_after=STALL_AFTER_S).assert_counts(succeeded=CLICKS)
