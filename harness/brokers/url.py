"""Moved to ``harness.brokers.rabbitmq.url``; this path keeps working, with a warning."""

from harness.moved import forward

forward(__name__, "harness.brokers.rabbitmq.url")
