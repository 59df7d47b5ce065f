"""Moved to ``harness.brokers.rabbitmq.alarms``; this path keeps working, with a warning."""

from harness.moved import forward

forward(__name__, "harness.brokers.rabbitmq.alarms")
