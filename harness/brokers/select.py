"""Which provider a run uses: ``--harness-broker {auto,url,docker,local}`` (ini ``harness_broker``,
env ``HARNESS_BROKER``), and the options every provider is built from."""

from __future__ import annotations

from dataclasses import dataclass

from harness.brokers import PROVIDERS, provider
from harness.brokers.base import Broker
from harness.errors import HarnessError

KINDS = ("auto", *PROVIDERS)


@dataclass(frozen=True)
class BrokerOptions:
    kind: str = "auto"
    url: str | None = None
    management_url: str | None = None
    rabbitmq_server: str | None = None
    rabbitmq_port: int | None = None
    boot_timeout: float = 90.0
    work_root: str | None = None
    image: str | None = None
    docker_network: str = "bridge"
    docker_ryuk: bool = False
    rabbitmq_version: str = "3"  # the broker's major version, on the providers the harness owns


NO_BROKER = (
    "no RabbitMQ is available: start Docker (and pull or build the image) for --harness-broker docker, install "
    "rabbitmq-server (apt-get install -y rabbitmq-server) for a private local node, or point the harness at a "
    "running broker with --harness-broker-url amqp://user:password@host:5672/"
)


def choose_kind(options: BrokerOptions, available=None) -> str:
    """The provider ``auto`` resolves to: the first in the registry's order that is available here, else an
    error naming the ways to get a broker. ``available(kind, options)`` can be given (tests)."""
    if options.kind not in KINDS:
        raise HarnessError(f"--harness-broker {options.kind!r} is not one of {', '.join(KINDS)}")
    if options.kind == "url" and not options.url:
        raise HarnessError(
            "--harness-broker url needs --harness-broker-url amqp://user:password@host:port/vhost "
            "(or HARNESS_BROKER_URL)"
        )
    if options.kind != "auto":
        return options.kind
    check = available or (lambda kind, opts: provider(kind).available(opts))
    for kind in PROVIDERS:
        if check(kind, options):
            return kind
    raise HarnessError(NO_BROKER)


def make_broker(options: BrokerOptions) -> Broker:
    return provider(choose_kind(options)).from_options(options)


AUTO_REASONS = {
    "url": "a broker URL was given",
    "docker": "a Docker engine answers and has the image",
    "local": "no Docker engine with the image answered; rabbitmq-server found",
    "warm": "",
}
