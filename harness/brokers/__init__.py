"""The broker families and their providers: where a run's broker comes from.

A family (``--harness-transport``) is a kind of broker Celery talks to: ``rabbitmq`` (AMQP) or ``redis``. A
provider (``--harness-broker``) is where one comes from: a server the harness starts (``local``, ``docker``), or
one that runs already (``url``). Each provider is a ``Broker`` subclass in a module of its own, with
``from_options`` (build it from the run's options) and ``available`` (may ``auto`` pick it here?). The registry
below is the one list of them, per family, in the order ``--harness-broker auto`` tries them: adding a
provider is a module and a line here; a family, a folder and an entry. Provider modules are imported only
when used, so a run that never starts a container never imports Docker's client.
"""

from __future__ import annotations

import importlib

# transport -> kind -> "module:Class", in auto's order of preference (a given URL first, a container, a local
# server).
PROVIDERS: dict[str, dict[str, str]] = {
    "rabbitmq": {
        "url": "harness.brokers.rabbitmq.url:UrlBroker",
        "docker": "harness.brokers.rabbitmq.docker:DockerBroker",
        "local": "harness.brokers.rabbitmq.local:LocalBroker",
        "warm": "harness.brokers.rabbitmq.warm:WarmBroker",  # never picked by auto: only when asked for
    },
    "redis": {
        "url": "harness.brokers.redis.url:UrlRedis",
        "docker": "harness.brokers.redis.docker:DockerRedis",
        "local": "harness.brokers.redis.local:LocalRedis",
    },
}
TRANSPORTS = tuple(PROVIDERS)
# The URL schemes of each family, as Celery's broker_url writes them (an app's own broker says its family).
SCHEMES: dict[str, tuple[str, ...]] = {
    "rabbitmq": ("amqp", "amqps", "pyamqp", "librabbitmq"),
    "redis": ("redis", "rediss"),
}


def provider(kind: str, transport: str = "rabbitmq"):
    module, _, name = PROVIDERS[transport][kind].partition(":")
    return getattr(importlib.import_module(module), name)


def transport_of_url(url: str | None) -> str | None:
    """The family a broker URL belongs to (``redis://...`` -> ``redis``); None for another or no URL."""
    scheme = (url or "").split("://", 1)[0].split("+", 1)[0].lower()
    return next((family for family, schemes in SCHEMES.items() if scheme in schemes), None)
