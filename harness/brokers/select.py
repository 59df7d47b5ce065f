"""Which broker a run uses: the family (``--harness-transport {rabbitmq,redis,auto}``) and the provider
(``--harness-broker {auto,url,docker,local}``, ini ``harness_broker``, env ``HARNESS_BROKER``), and the options
every provider is built from."""

from __future__ import annotations

from dataclasses import dataclass, replace

from harness.brokers import PROVIDERS, TRANSPORTS, provider, transport_of_url
from harness.brokers.base import Broker
from harness.errors import HarnessError

KINDS = ("auto", *dict.fromkeys(kind for kinds in PROVIDERS.values() for kind in kinds))
TRANSPORT_CHOICES = (*TRANSPORTS, "auto")


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
    transport: str = "rabbitmq"  # the broker family (auto is resolved before a broker is made: resolve_transport)
    redis_server: str | None = None
    redis_image: str | None = None


NO_REDIS = (
    "no Redis is available: install redis-server (apt-get install -y redis-server) for a private local server, "
    "start Docker (and build the image: scripts/build-redis-image) for --harness-broker docker, or point the harness "
    "at a running server with --harness-broker-url redis://host:6379/0"
)
NO_BROKER = (
    "no RabbitMQ is available: start Docker (and pull or build the image) for --harness-broker docker, install "
    "rabbitmq-server (apt-get install -y rabbitmq-server) for a private local node, or point the harness at a "
    "running broker with --harness-broker-url amqp://user:password@host:5672/"
)


URL_EXAMPLES = {"rabbitmq": "amqp://user:password@host:port/vhost", "redis": "redis://host:6379/0"}


def resolve_transport(options: BrokerOptions, app_transport: str | None = None) -> tuple[str, str | None]:
    """The family the run uses, and why when ``auto`` chose it: the broker URL's, else the app's own broker's
    (``app_transport``), else RabbitMQ (Celery's default). A URL of another family than the one asked for is
    refused in one sentence."""
    if options.transport not in TRANSPORT_CHOICES:
        raise HarnessError(f"--harness-transport {options.transport!r} is not one of {', '.join(TRANSPORT_CHOICES)}")
    of_url = transport_of_url(options.url) if options.url else None
    if options.url and of_url is None:
        raise HarnessError(
            f"--harness-broker-url {options.url.split('@')[-1]!r} is neither an AMQP nor a Redis URL; write "
            f"{URL_EXAMPLES['rabbitmq']} or {URL_EXAMPLES['redis']}"
        )
    if options.transport != "auto":
        if of_url is not None and of_url != options.transport:
            raise HarnessError(
                f"--harness-broker-url is a {of_url} URL but --harness-transport is {options.transport}; "
                f"use --harness-transport {of_url} (or auto), or give a URL like {URL_EXAMPLES[options.transport]}"
            )
        return options.transport, None
    if of_url is not None:
        return of_url, f"the broker URL is {of_url}"
    if app_transport is not None:
        return app_transport, f"the app's own broker is {app_transport}"
    return "rabbitmq", "the app names no broker of its own (Celery's default is AMQP)"


def choose_kind(options: BrokerOptions, available=None) -> str:
    """The provider ``auto`` resolves to: the first in the family's registry order that is available here, else
    an error naming the ways to get a broker. ``available(kind, options)`` can be given (tests). The options'
    transport must be resolved (not ``auto``)."""
    family = PROVIDERS.get(options.transport, PROVIDERS["rabbitmq"])
    if options.kind not in KINDS:
        raise HarnessError(f"--harness-broker {options.kind!r} is not one of {', '.join(KINDS)}")
    if options.kind not in (*family, "auto"):
        raise HarnessError(
            f"--harness-broker {options.kind} is not offered for {options.transport}; choose one of "
            f"{', '.join(['auto', *family])}"
        )
    if options.kind == "url" and not options.url:
        example = URL_EXAMPLES.get(options.transport, URL_EXAMPLES["rabbitmq"])
        raise HarnessError(f"--harness-broker url needs --harness-broker-url {example} (or HARNESS_BROKER_URL)")
    if options.kind != "auto":
        return options.kind
    check = available or (lambda kind, opts: provider(kind, opts.transport).available(opts))
    for kind in family:
        if kind != "warm" and check(kind, options):
            return kind
    raise HarnessError(NO_REDIS if options.transport == "redis" else NO_BROKER)


def make_broker(options: BrokerOptions) -> Broker:
    """The broker of the options' provider and family (``auto`` transport resolved from the URL alone: the fixtures
    resolve it from the app first)."""
    if options.transport == "auto":
        options = replace(options, transport=resolve_transport(options)[0])
    return provider(choose_kind(options), options.transport).from_options(options)


def auto_reason(kind: str, transport: str = "rabbitmq") -> str:
    """Why ``--harness-broker auto`` picked ``kind``."""
    server = "redis-server" if transport == "redis" else "rabbitmq-server"
    return {
        "url": "a broker URL was given",
        "docker": "a Docker engine answers and has the image",
        "local": f"no Docker engine with the image answered; {server} found",
    }.get(kind, "")
