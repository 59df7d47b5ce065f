"""The network between a program and the broker fails while the broker stays up: a blackhole (packets
dropped, nothing refused: a half-open connection) or a reset (connections cut). Each program reaches the
broker through a fault proxy of its own (``stack.net``), so the same faults run on every broker."""

import time

import pytest

from app_under_test.stack import PATIENT_READY_S, WORKER, demo
from harness.producers import assert_all_queued
from harness.verdict import Verdict
from harness.waiting import eventually, never

pytestmark = [pytest.mark.catalogue, pytest.mark.network_fault]

BACKLOG = 30
BLACKOUT_S = 10.0
# RabbitMQ lets go of a dead connection's unacknowledged messages when a retransmission to it meets the
# RST of the worker's kernel after healing (about 20 s measured), at the latest at its heartbeat timeout.
HELD_FOR_AT_MOST_S = 90.0
SHORT_TASKS = demo(ready_timeout=PATIENT_READY_S, work_seconds=0.2)


def succeeded_after(ledger, since: float) -> float:
    """Seconds from ``since`` to the first task success the broker delivered to the harness after it. Waited for:
    ``wait_settled`` may have returned on the journal's ends, with Celery's events still on their way."""
    times = eventually(
        lambda: [
            e.received_at
            for h in ledger.event_histories().values()
            for e in h.events
            if e.type == "task-succeeded" and e.received_at >= since
        ],
        timeout=30, what="a task success delivered through the broker after the network healed",
    )  # fmt: skip
    return min(times) - since


def established(stack) -> set[int]:
    return {port for port, state in stack.broker_sockets(WORKER) if state == "ESTABLISHED"}


def noticed(stack, before: set[int], within: float) -> float:
    """Seconds until the worker gives up one of the connections it had (a socket no longer ESTABLISHED)."""
    started = time.monotonic()
    eventually(
        lambda: established(stack), until=lambda now: not before <= now, timeout=within,
        what="the worker to drop a blackholed connection",
    )  # fmt: skip
    return time.monotonic() - started


def assert_nothing_lost(verdict) -> None:
    assert verdict.count("succeeded") + verdict.count("duplicated") == BACKLOG, verdict.explain()


def final_verdict(stack, healed: float) -> tuple[Verdict, float]:
    """The verdict once RabbitMQ has let go of what the worker's dead connection held (early acks sent into
    the blackout never arrived: those messages come back and run again), and when that was, after healing."""
    verdict = stack.verdict(settle=HELD_FOR_AT_MOST_S)
    assert not verdict.doubt, f"after {HELD_FOR_AT_MOST_S:.0f}s: {verdict.doubt}"
    return verdict, time.time() - healed


def blackout(stack, ledger, producer) -> tuple[list[str], float, int]:
    """A backlog, then the worker's network blackholed for BLACKOUT_S while it drains it; returns the
    task ids, how long the worker took to notice, and how many connections it had opened before."""
    ids = [s.task_id for s in producer.send_many(BACKLOG)]
    ledger.wait_running(ids, timeout=10)
    before, opened = established(stack), stack.net.opened(WORKER)
    with stack.net.blackhole(WORKER):
        started = time.monotonic()
        noticed_s = noticed(stack, before, within=BLACKOUT_S)
        time.sleep(max(0.0, BLACKOUT_S - (time.monotonic() - started)))  # the blackout's length, not a wait
    return ids, noticed_s, opened


@pytest.mark.parametrize("stack_spec", [SHORT_TASKS], indirect=True, ids=["0.2s-tasks"])
def test_worker_blackholed_mid_backlog_notices_at_once_then_dies_on_its_locked_pidbox(
    stack, producer, ledger, record_property
):
    """The worker's network to RabbitMQ drops every packet for 10 s (a switch reboots, a VM migrates, a
    NAT table fills up) while it drains a backlog; Celery's defaults.

    What a user sees: the worker notices within about a second, not after two missed heartbeats
    (``broker_heartbeat`` = 120 s) as often believed: py-amqp sets ``TCP_USER_TIMEOUT`` = 1000 ms on its
    sockets, so the kernel drops a connection whose data goes unacknowledged for a second. It reconnects
    once the network heals, but RabbitMQ still holds its old, silent connection (until that one's own
    heartbeat timeout), and with it the worker's exclusive remote-control queue (``<name>.celery.pidbox``):
    the new connection's declare fails with ``RESOURCE_LOCKED`` and the worker process exits, the rest of
    the backlog untouched in the queue. Under a supervisor that restarts it, it comes back once RabbitMQ
    has dropped the old connection; without one, the queue just grows. ``worker_enable_remote_control =
    False`` (no pidbox queue) or a short ``broker_heartbeat`` make it recover by itself: next scenarios.
    """
    _, noticed_s, opened = blackout(stack, ledger, producer)
    healed = time.monotonic()

    eventually(lambda: stack.net.opened(WORKER) > opened, timeout=30, what="the worker to reconnect")
    stack.wait_exited(WORKER, timeout=60)
    died_s = time.monotonic() - healed

    record_property("noticed_s", round(noticed_s, 2))
    record_property("exited_after_heal_s", round(died_s, 2))
    verdict = stack.verdict()
    print(f"noticed after {noticed_s:.2f}s; exited {died_s:.2f}s after the network healed; {verdict.summary()}")
    assert noticed_s < 5.0, f"the worker took {noticed_s:.1f}s to notice"
    assert verdict.count("lost") == verdict.count("failed") == 0, verdict.summary()
    assert verdict.count("queued") > 0, verdict.summary()


@pytest.mark.celery_config(worker_enable_remote_control=False)
@pytest.mark.parametrize("stack_spec", [SHORT_TASKS], indirect=True, ids=["0.2s-tasks"])
def test_worker_blackholed_mid_backlog_without_remote_control_recovers_and_reruns_tasks_whose_acks_were_lost(
    stack, producer, ledger, record_property
):
    """The same 10 s blackout, with ``worker_enable_remote_control = False``.

    What a user sees: the worker notices within about a second, keeps trying to reconnect, and once the
    network heals it is back and drains the backlog by itself: with no exclusive pidbox queue, the old
    silent connection RabbitMQ still holds locks nothing it needs. Nothing is lost, but the tasks whose
    early acknowledgements went into the dead connection are not done with: RabbitMQ holds their messages
    until it drops that connection (10 to 25 s after healing here), then delivers them again and they run
    twice (measured: 4 of 30). Until then the verdict calls the ended tasks unsettled. The price:
    ``celery inspect`` / ``control`` (and Flower's controls) no longer reach this worker.
    """
    ids, noticed_s, opened = blackout(stack, ledger, producer)
    healed = time.time()

    ledger.wait_settled(ids, timeout=60)
    recovery_s = succeeded_after(ledger, healed)
    verdict, held_s = final_verdict(stack, healed)
    record_property("noticed_s", round(noticed_s, 2))
    record_property("recovery_s", round(recovery_s, 2))
    record_property("held_s", round(held_s, 2))
    print(f"noticed after {noticed_s:.2f}s; first success {recovery_s:.2f}s after healing; unacked messages held "
          f"until {held_s:.1f}s after healing; {verdict.summary()}")  # fmt: skip
    assert noticed_s < 5.0, f"the worker took {noticed_s:.1f}s to notice"
    assert stack.net.opened(WORKER) > opened, "the worker did not reconnect"
    assert_nothing_lost(verdict)


@pytest.mark.celery_config(broker_heartbeat=2)
@pytest.mark.parametrize("stack_spec", [SHORT_TASKS], indirect=True, ids=["0.2s-tasks"])
def test_worker_blackholed_mid_backlog_with_a_short_heartbeat_recovers_and_reruns_tasks_whose_acks_were_lost(
    stack, producer, ledger, record_property
):
    """The same 10 s blackout, remote control on, with ``broker_heartbeat = 2`` (Celery's default is 120 s).

    What a user sees: the worker notices within about a second as before, and this time it comes back by
    itself once the network heals and drains the backlog: with a 2 s heartbeat RabbitMQ closes the old,
    silent connection after a few seconds, releasing the worker's pidbox queue before the worker
    reconnects. Nothing is lost; the tasks whose acknowledgements went into the dead connection run again
    once RabbitMQ drops it (measured: 4 of 30 twice).
    The heartbeat bounds how long the broker keeps a dead client's connection (and its exclusive queues
    and unacknowledged messages), not how fast the worker notices.
    """
    ids, noticed_s, opened = blackout(stack, ledger, producer)
    healed = time.time()

    ledger.wait_settled(ids, timeout=60)
    recovery_s = succeeded_after(ledger, healed)
    verdict, held_s = final_verdict(stack, healed)
    record_property("noticed_s", round(noticed_s, 2))
    record_property("recovery_s", round(recovery_s, 2))
    record_property("held_s", round(held_s, 2))
    print(f"noticed after {noticed_s:.2f}s; first success {recovery_s:.2f}s after healing; unacked messages held "
          f"until {held_s:.1f}s after healing; {verdict.summary()}")  # fmt: skip
    assert stack.state(WORKER) == "RUNNING" and stack.net.opened(WORKER) > opened, "the worker did not reconnect"
    assert_nothing_lost(verdict)


# py-amqp's TCP_USER_TIMEOUT off: the kernel's own default, minutes of retransmits (see app_under_test.settings).
NO_USER_TIMEOUT = demo(ready_timeout=PATIENT_READY_S, work_seconds=0.2, env={"AMQP_TCP_USER_TIMEOUT_MS": "0"})


@pytest.mark.parametrize("stack_spec", [NO_USER_TIMEOUT], indirect=True, ids=["tcp-user-timeout-0"])
def test_worker_blackholed_without_tcp_user_timeout_never_notices_and_resumes(stack, producer, ledger, record_property):
    """The same 10 s blackout, with py-amqp's ``TCP_USER_TIMEOUT`` turned off
    (``broker_transport_options={"socket_settings": {socket.TCP_USER_TIMEOUT: 0}}``) and
    the default 120 s heartbeat.

    What a user sees: nothing, for the whole blackout. The worker's connection stays ESTABLISHED (a
    half-open connection), its acknowledgements and events wait in the kernel, and when the network heals
    TCP retransmits them and the worker goes on as if nothing happened: no reconnect, nothing lost or run
    twice. The time to recover is TCP's retransmission backoff (seconds), not Celery's: the last
    acknowledgements reach RabbitMQ seconds after the last task ended (measured: about 5 s), and until then
    RabbitMQ still holds those messages as unacknowledged. A blackout longer
    than two heartbeats (4 minutes by default) would be noticed: that is what ``broker_heartbeat`` bounds.
    """
    ids = [s.task_id for s in producer.send_many(BACKLOG)]
    ledger.wait_running(ids, timeout=10)
    before, opened = established(stack), stack.net.opened(WORKER)

    with stack.net.blackhole(WORKER):
        watched = never(
            lambda: established(stack), until=lambda now: not before <= now, for_=BLACKOUT_S,
            what="the worker dropped its blackholed connection",
        )  # fmt: skip
    healed = time.time()

    ledger.wait_settled(ids, timeout=60)
    recovery_s = succeeded_after(ledger, healed)
    record_property("recovery_s", round(recovery_s, 2))
    print(f"watched {watched} times over {BLACKOUT_S}s; first success {recovery_s:.2f}s after healing")
    assert stack.net.opened(WORKER) == opened, "the worker reconnected: it noticed the blackout"
    verdict, acked_s = final_verdict(stack, healed)
    record_property("acked_s", round(acked_s, 2))
    print(f"the acknowledgements held in the kernel reached RabbitMQ by {acked_s:.1f}s after healing")
    verdict.assert_counts(succeeded=BACKLOG)


RELEASE = "release-the-task"
HELD = demo(ready_timeout=PATIENT_READY_S, env={"HELLO_HOLD_UNTIL": RELEASE})
QUIET_S = 2.0


def cancel_on_loss(on: bool):
    marks = pytest.mark.celery_config(worker_cancel_long_running_tasks_on_connection_loss=on)
    return pytest.param(on, marks=marks, id=f"cancel-{'on' if on else 'off'}")


@pytest.mark.celery_config(task_acks_late=True)
@pytest.mark.parametrize("cancel", [cancel_on_loss(False), cancel_on_loss(True)])
@pytest.mark.parametrize("stack_spec", [HELD], indirect=True, ids=["held"])
def test_acks_late_task_in_flight_when_the_connection_is_reset(stack, producer, ledger, cancel):
    """A worker runs an ``acks_late`` task when its connection to RabbitMQ is cut (a load balancer or NAT
    drops the flow: a TCP reset); ``worker_cancel_long_running_tasks_on_connection_loss`` off (Celery 5's
    default) or on (announced as the default for Celery 6).

    What a user sees: the broker puts the unacknowledged message back at once; the worker reconnects
    by itself and receives it again. Off: the first run goes on and ends (its acknowledgement has no
    channel to go to), then the redelivered copy runs: the task runs twice. On: the worker cancels the
    first run when the connection goes, and only the redelivered copy completes.
    """
    task_id = producer.send().task_id
    ledger.wait_running([task_id], accepted=True)
    opened = stack.net.opened(WORKER)

    assert stack.net.reset(WORKER) >= 1  # every connection of the worker cut with a RST

    eventually(lambda: stack.net.opened(WORKER) > opened, timeout=30, what="the worker to reconnect")
    eventually(
        lambda: ledger.history(task_id).count("task-received"), until=lambda n: n >= 2, timeout=30,
        what="the broker to redeliver the unacknowledged task to the reconnected worker",
    )  # fmt: skip
    (stack.workdir / RELEASE).touch()
    ledger.wait_settled([task_id], timeout=30)
    runs = 1 if cancel else 2
    eventually(
        lambda: ledger.history(task_id).count("task-succeeded"), until=lambda n: n >= runs, timeout=30,
        what=f"{runs} run(s) of the task to succeed",
    )  # fmt: skip
    if cancel:
        ledger.assert_quiet([task_id], for_=QUIET_S, why="the cancelled first run must not succeed as well")
    history = ledger.history(task_id)
    print(f"cancel={cancel}: {history.describe()}")
    verdict = stack.verdict()
    assert history.count("task-succeeded") == (1 if cancel else 2), history.describe()
    verdict.assert_counts(succeeded=1 if cancel else 0, duplicated=0 if cancel else 1)


WEB = "web"
WEB_BLACKOUT_S = 5.0
CLICKS = 3


def confirms(on: bool):
    marks = [pytest.mark.celery_config(broker_transport_options={"confirm_publish": True})] if on else []
    return pytest.param(on, marks=marks, id="confirm-publish" if on else "default")


@pytest.mark.parametrize("confirm", [confirms(False), confirms(True)])
@pytest.mark.parametrize("stack_spec", [demo(ready_timeout=PATIENT_READY_S)], indirect=True, ids=["demo"])
def test_web_app_blackholed_clicks_are_lost_silently_unless_publishes_are_confirmed(
    stack, producer, ledger, vhost, confirm
):
    """The web app's network to RabbitMQ drops every packet for 5 s while users click (the worker's is fine).

    What a user sees, by default: each click answers "queued" (202) within milliseconds, and the task is
    never run. ``apply_async`` only writes the message into the socket; py-amqp's ``TCP_USER_TIMEOUT`` (1 s)
    then makes the kernel drop the connection with the unsent messages in it, and the app never hears of
    it. After the network heals the app reconnects and new clicks work; the lost ones stay lost. With
    publisher confirms (``broker_transport_options = {"confirm_publish": True}``) the app waits for
    RabbitMQ's confirmation: each click takes seconds and answers 503, an honest failure, and nothing is
    lost silently.
    """
    warm = producer.send()  # the web app's connection is open before the fault
    ledger.wait_settled([warm.task_id], timeout=10)

    with stack.net.blackhole(WEB):
        started = time.monotonic()
        clicks = producer.send_many(CLICKS)
        time.sleep(max(0.0, WEB_BLACKOUT_S - (time.monotonic() - started)))  # the blackout's length, not a wait
    after = producer.send_many(CLICKS)

    assert_all_queued(after, within=2.0)
    ledger.wait_settled([warm.task_id, *(c.task_id for c in after)], timeout=20)
    print(f"clicks during the blackout: {[(c.status, round(c.seconds, 2)) for c in clicks]}")
    if confirm:
        assert all(c.status == 503 for c in clicks), clicks
        stack.verdict().assert_counts(succeeded=1 + CLICKS, unsent=CLICKS)
    else:
        assert_all_queued(clicks, within=0.5)
        ledger.assert_quiet([c.task_id for c in clicks], for_=QUIET_S, why="the clicks' messages never left the app")
        # Without the broker's management API (a url broker) unacknowledged messages cannot be counted, so the
        # harness can only call them unsettled.
        stack.verdict().assert_counts(succeeded=1 + CLICKS, **{"lost" if vhost.isolated else "unsettled": CLICKS})
