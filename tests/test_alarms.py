"""Broker alarms: refused with one sentence on a broker the harness does not own; the Erlang it runs."""

from __future__ import annotations

import pytest

from harness.brokers.base import BrokerNotOwned
from harness.brokers.rabbitmq.alarms import _set_and_wait
from harness.brokers.rabbitmq.url import UrlBroker


def test_a_url_broker_refuses_alarms_with_one_sentence():
    broker = UrlBroker.__new__(UrlBroker)
    broker.owned = False
    with pytest.raises(BrokerNotOwned, match="not the harness's to raise a memory alarm on"), broker.memory_alarm():
        pass
    with pytest.raises(BrokerNotOwned, match="disk alarm"), broker.disk_alarm():
        pass


def test_the_alarm_waits_for_its_own_resource():
    code = _set_and_wait("disk", "rabbit_disk_monitor:set_disk_free_limit", "50000000", raised=False)
    assert code.startswith("rabbit_disk_monitor:set_disk_free_limit(50000000), ")
    assert "{{resource_limit, disk, _}, _}" in code and "of false -> ok" in code
