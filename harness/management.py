"""Moved to ``harness.brokers.rabbitmq.management``; this path keeps working, with a warning."""

from harness.moved import forward

forward(__name__, "harness.brokers.rabbitmq.management")
