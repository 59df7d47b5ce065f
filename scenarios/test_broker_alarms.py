"""RabbitMQ raises a resource alarm (memory or disk) while it stays up: it blocks every publisher."""

import pytest

from app_under_test.stack import HELLO_QUEUE, PATIENT_READY_S, demo
from harness.producers import assert_all_queued
from harness.waiting import never

pytestmark = [pytest.mark.catalogue, pytest.mark.broker_fault]

CLICKS = 3
WATCH_S = 3.0


@pytest.mark.parametrize("alarm", ["memory", "disk"])
@pytest.mark.parametrize("stack_spec", [demo(ready_timeout=PATIENT_READY_S)], indirect=True, ids=["demo"])
def test_resource_alarm_holds_clicks_invisibly_and_loses_nothing_once_cleared(
    owned_broker, stack, producer, ledger, vhost, alarm
):
    """RabbitMQ's memory alarm goes off (a queue nobody consumes filled the node's memory), or its free-disk
    alarm (the disk filled up with logs or paged-out messages), while users click.

    What a user sees: the clicks still answer "queued" within milliseconds: RabbitMQ blocks the web app's
    connection, but a few small publishes fit in the socket's buffers, so ``apply_async`` returns (it hangs
    only once the buffers are full, or with publisher confirms). Meanwhile the tasks are nowhere to be
    seen: not in the queue, not on any worker; a dashboard shows nothing. Once the alarm clears, RabbitMQ
    reads the held publishes and every task runs once: nothing lost. Both alarms block publishers alike.
    """
    warm = producer.send()  # the web app's connection is open before the alarm
    ledger.wait_settled([warm.task_id], timeout=10)

    with owned_broker.memory_alarm() if alarm == "memory" else owned_broker.disk_alarm():
        clicks = producer.send_many(CLICKS)
        never(
            lambda: (vhost.depth(HELLO_QUEUE).total, ledger.count("task-received", [c.task_id for c in clicks])),
            until=lambda seen: seen != (0, 0), for_=WATCH_S,
            what=f"a click's task reached the queue or a worker while the broker's {alarm} alarm was on",
        )  # fmt: skip

    assert_all_queued(clicks, within=1.0)
    ledger.wait_settled(timeout=30)
    stack.verdict().assert_counts(succeeded=CLICKS + 1)
