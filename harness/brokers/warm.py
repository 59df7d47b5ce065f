"""Moved to ``harness.brokers.rabbitmq.warm``; this path keeps working, with a warning."""

from harness.moved import forward

forward(__name__, "harness.brokers.rabbitmq.warm")
