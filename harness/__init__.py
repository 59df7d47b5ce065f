"""Failure-scenario harness for Celery + RabbitMQ applications.

The modules, one job each:

- ``harness.brokers``: RabbitMQ providers (a private local node, an existing URL) and their selection;
- ``harness.vhost``: a scenario's own virtual host, queue depth and peeking over AMQP;
- ``harness.management``: the RabbitMQ management HTTP API client;
- ``harness.supervisor``: supervisord config generation and XML-RPC process control;
- ``harness.stack``: the application under test (web + workers) running under supervisord;
- ``harness.web``: the HTTP client that clicks the app's button and times each click;
- ``harness.ledger``: every task's history, from Celery's own events;
- ``harness.verdict``: the fate of every task a scenario sent, and assertions on it;
- ``harness.waiting``: ``eventually`` / ``never`` on tenacity;
- ``harness.plugin``: the pytest plugin (options and fixtures);
- ``harness.bench``: ``python -m harness.bench``, boot and scenario timings.
"""

from harness.errors import HarnessError

__all__ = ["HarnessError"]
