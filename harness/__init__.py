"""Failure-scenario harness for Celery applications, on RabbitMQ and Redis.

Where things live (the tree and the generated API reference, ``docs/api.md``, are the map; ``python -m
harness.apidocs`` writes the latter):

- ``harness.plugin`` (the pytest plugin: options, markers, hooks), ``harness.fixtures`` (its fixtures),
  ``harness.options`` (every option with its ini key and environment variable);
- ``harness.brokers``: the broker families and their providers, one folder per family (``rabbitmq/``,
  ``redis/``), and ``harness.space``, a scenario's own space on a broker, which both families implement;
- ``harness.stack``, ``harness.spec``, ``harness.supervisor``, ``harness.launcher``: the app's programs under
  supervisord; ``harness.producers``, ``harness.web``: what sends its tasks;
- ``harness.ledger``, ``harness.events``, ``harness.journal``, ``harness.evidence``: the two witnesses of every
  task's history; ``harness.verdict`` (fates), ``harness.stalls`` (workers that live but take nothing);
- ``harness.faults``, ``harness.netfaults``, ``harness.timeline``: faults, the network between programs and broker,
  and what happened when; ``harness.report``, ``harness.plots``: the run report;
- the command-line tools: ``python -m harness`` (``up``, ``ctl``, ``down``, ``audit``, ``deploy-check``, ``bench``,
  ``docs``), with ``harness.audit`` and ``harness.deploy`` behind the two big ones.

The names a scenario uses are importable from here (``from harness import StackSpec, HttpProducer``), so that the
modules can move without breaking users' imports; they are loaded when first used, so ``import harness`` stays
cheap for the programs the harness starts.
"""

from __future__ import annotations

import importlib
from typing import Any

from harness.errors import HarnessError

# name -> the module that defines it
_EXPORTS = {
    "StackSpec": "harness.spec",
    "WebSpec": "harness.spec",
    "WorkerSpec": "harness.spec",
    "BeatSpec": "harness.spec",
    "HttpProducer": "harness.producers",
    "DirectProducer": "harness.producers",
    "JsonField": "harness.producers",
    "assert_all_queued": "harness.producers",
    "Verdict": "harness.verdict",
    "eventually": "harness.waiting",
    "never": "harness.waiting",
    "WaitTimeout": "harness.waiting",
    "task_headers": "harness.messages",
    "visibility": "harness.brokers.redis.settings",
}

__all__ = ["HarnessError", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'harness' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
