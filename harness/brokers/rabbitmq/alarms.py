"""RabbitMQ's resource alarms on a broker the harness owns: ``broker.memory_alarm()`` / ``broker.disk_alarm()``.

The node's own alarm, raised the way an operator would meet it: its limit lowered below what it uses
(``set_vm_memory_high_watermark`` / ``set_disk_free_limit``), so RabbitMQ blocks every publishing connection
(``connection.blocked``) and keeps delivering to consumers. One ``rabbitmqctl eval`` sets the limit and
waits inside the node until the alarm is really raised (one rabbitmqctl start-up each way); the old limit
is restored after the block and the wait is for the alarm to clear. A broker the harness does not own
(``url``) refuses with one sentence.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from harness.faults import BrokerAlarm, BrokerAlarmCleared, FaultBus


class Node(Protocol):
    """What an alarm needs of a broker (``harness.brokers.base.Broker`` is one): its ``rabbitmqctl`` and its
    fault bus. A protocol, so that this module and the broker's stay one-way."""

    faults: FaultBus

    def rabbitmqctl(self, *args: str) -> str: ...


# resource -> (read the limit, set the limit, a limit that raises the alarm at once)
MEMORY, DISK = "vm_memory_monitor", "rabbit_disk_monitor"
LIMITS = {
    "memory": (f"{MEMORY}:get_vm_memory_high_watermark()", f"{MEMORY}:set_vm_memory_high_watermark", "0.0"),
    "disk": (f"{DISK}:get_disk_free_limit()", f"{DISK}:set_disk_free_limit", "1000000000000000000"),
}
WAIT_STEPS = 500  # 20 ms each: 10 s for the monitor to raise or clear the alarm


def _set_and_wait(resource: str, setter: str, value: str, raised: bool) -> str:
    """Erlang: set the limit, then wait until the alarm is (or is no longer) raised; the last value is ``ok``
    or ``timeout``."""
    on = "true" if raised else "false"
    return (
        f"{setter}({value}), "
        f"Raised = fun() -> lists:any(fun({{{{resource_limit, {resource}, _}}, _}}) -> true; (_) -> false end, "
        "rabbit_alarm:get_alarms()) end, "
        f"Wait = fun Loop(N) -> case Raised() of {on} -> ok; _ when N =< 0 -> timeout; "
        "_ -> timer:sleep(20), Loop(N - 1) end end, "
        f"Wait({WAIT_STEPS})"
    )


@contextmanager
def alarm(broker: Node, resource: str) -> Iterator[None]:
    """``resource``'s alarm on ``broker`` (one the harness owns: ``Broker.memory_alarm`` checks) inside the block."""
    getter, setter, limit = LIMITS[resource]
    raise_it = _set_and_wait(resource, setter, limit, True)
    out = broker.rabbitmqctl("eval", f"Old = {getter}, R = begin {raise_it} end, {{Old, R}}.")
    text = " ".join(out.split())
    if not text.startswith("{") or not text.rstrip(".").endswith(",ok}"):
        raise RuntimeError(f"the broker's {resource} alarm was not raised (rabbitmqctl eval answered {text!r})")
    old = text[1 : text.rstrip(".").rindex(",ok}")]
    broker.faults.publish(BrokerAlarm(resource=resource))
    try:
        yield
    finally:
        done = broker.rabbitmqctl("eval", f"{_set_and_wait(resource, setter, old, False)}.")
        broker.faults.publish(BrokerAlarmCleared(resource=resource))
        if "ok" not in done:
            raise RuntimeError(f"the broker's {resource} alarm did not clear once its limit was back at {old}")
