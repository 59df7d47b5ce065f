"""Which broker provider a run uses: ``--broker {auto,local,url,docker}`` (env ``HARNESS_BROKER``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from harness.brokers.base import Broker
from harness.errors import HarnessError

KINDS = ("auto", "local", "url", "docker")


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


def rabbitmq_server_found(options: BrokerOptions) -> bool:
    from harness.brokers.local import which_server

    return bool(options.rabbitmq_server or which_server())


def docker_ready(options: BrokerOptions) -> bool:
    """A Docker engine answers within 2 s and already has the image (so auto never waits on a pull)."""
    from harness.brokers.docker import DEFAULT_IMAGE, docker_client

    try:
        client = docker_client(timeout=2.0)
    except HarnessError:
        return False
    try:
        client.images.get(options.image or DEFAULT_IMAGE)
    except Exception:  # ImageNotFound, or an engine that stopped answering
        return False
    finally:
        client.close()
    return True


def choose_kind(
    options: BrokerOptions,
    server_found: Callable[[BrokerOptions], bool] = rabbitmq_server_found,
    docker_ok: Callable[[BrokerOptions], bool] = docker_ready,
) -> str:
    """The provider ``auto`` resolves to: a given URL, else Docker (an engine answers and has the image),
    else a local node, else an error naming the ways to get a broker."""
    if options.kind not in KINDS:
        raise HarnessError(f"--broker {options.kind!r} is not one of {', '.join(KINDS)}")
    if options.kind == "url" and not options.url:
        raise HarnessError(
            "--broker url needs --broker-url amqp://user:password@host:port/vhost (or HARNESS_BROKER_URL)"
        )
    if options.kind != "auto":
        return options.kind
    if options.url:
        return "url"
    if docker_ok(options):
        return "docker"
    if server_found(options):
        return "local"
    raise HarnessError(
        "no RabbitMQ is available: start Docker (and pull or build the image) for --broker docker, install "
        "rabbitmq-server (apt-get install -y rabbitmq-server) for a private local node, or point the harness "
        "at a running broker with --broker-url amqp://user:password@host:5672/"
    )


def make_broker(options: BrokerOptions) -> Broker:
    kind = choose_kind(options)
    if kind == "local":
        from harness.brokers.local import LocalBroker

        return LocalBroker(
            options.rabbitmq_server, options.rabbitmq_port, options.boot_timeout, work_root=options.work_root
        )
    if kind == "url":
        from harness.brokers.url import UrlBroker

        return UrlBroker(options.url or "", options.management_url)
    from harness.brokers.docker import DockerBroker

    return DockerBroker(options.image, options.docker_network, options.boot_timeout, options.docker_ryuk)
