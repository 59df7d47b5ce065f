"""RabbitMQ providers: where a run's broker comes from.

Each provider is a ``Broker`` subclass in a module of its own (``local``, ``docker``, ``url``...), with
``from_options`` (build it from the run's options) and ``available`` (may ``auto`` pick it here?). The
registry below is the one list of them, in the order ``--harness-broker auto`` tries them: adding a
provider is a module and a line here. Provider modules are imported only when used, so a run that
never starts a container never imports Docker's client.
"""

from __future__ import annotations

import importlib

# kind -> "module:Class", in auto's order of preference (a given URL first, a container, a local node).
PROVIDERS: dict[str, str] = {
    "url": "harness.brokers.url:UrlBroker",
    "docker": "harness.brokers.docker:DockerBroker",
    "local": "harness.brokers.local:LocalBroker",
    "warm": "harness.brokers.warm:WarmBroker",  # never picked by auto: only when asked for
}


def provider(kind: str):
    module, _, name = PROVIDERS[kind].partition(":")
    return getattr(importlib.import_module(module), name)
