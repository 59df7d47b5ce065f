"""Failure-scenario harness for Celery + RabbitMQ applications.

The modules, one job each:

- ``harness.brokers``: RabbitMQ providers (a private local node, a Docker container, an existing URL),
  their selection, and the fault calls (stop, start, freeze, reconfigure);
- ``harness.vhost``: a scenario's own virtual host, queue depth and peeking over AMQP;
- ``harness.management``: the RabbitMQ management HTTP API client;
- ``harness.supervisor``: supervisord config generation and XML-RPC process control;
- ``harness.stack``: the application under test (web + workers) running under supervisord;
- ``harness.web``: the HTTP client that clicks the app's button and times each click;
- ``harness.ledger``: every task's history, from Celery's own events;
- ``harness.verdict``: the fate of every task a scenario sent, and assertions on it;
- ``harness.waiting``: ``eventually`` / ``never`` on tenacity, with progress for long waits;
- ``harness.timeline``: a scenario's fault marks and queue-depth samples;
- ``harness.messages``: hand-made task messages, for bad-message scenarios;
- ``harness.browser``: headless Chromium through Playwright;
- ``harness.plugin``: the pytest plugin (options and fixtures);
- ``harness.report``: the run report (HTML, JSON); ``harness.plots``: its plots (SVG);
- ``harness.keep``: ``--keep-on-failure``, a failed scenario's stack kept up;
- ``harness.__main__``: ``python -m harness <command>``: ``up`` (``harness.up``, with ``harness.screen``,
  ``harness.status``, ``harness.state``), ``ctl`` (``harness.ctl``, ``harness.redeploy``), ``down``
  (``harness.down``), ``bench``, ``docs``; ``harness.standalone`` and ``harness.cli_options`` serve them;
- ``harness.docs``: ``python -m harness.docs``, the scenario catalogue from the docstrings;
- ``harness.bench``: ``python -m harness.bench``, boot and scenario timings;
- ``harness.deploy_check``: ``python -m harness.deploy_check``, will a release break the tasks in flight
  (the machinery in ``harness.deploy``; ``harness.deploy_check_test`` runs it as a CI test).
- ``harness.probe``: the resilience audit's probe task, registered on the user's app by the launcher;
- ``harness.audit``: the resilience audit (``pytest --pyargs harness.audit``, ``python -m harness audit``):
  the catalogue's failures against the user's app, and a table of fates per failure (``harness.benchclock``
  times it for the bench);
"""

from harness.errors import HarnessError

__all__ = ["HarnessError"]
