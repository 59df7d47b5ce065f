"""harness.brokers.select.choose_kind: which provider a run uses, from the registry's order."""

from __future__ import annotations

import pytest

from harness.brokers import PROVIDERS
from harness.brokers.rabbitmq import local
from harness.brokers.select import BrokerOptions, choose_kind, resolve_transport
from harness.errors import HarnessError

URL = "amqp://guest:guest@rabbit.example:5672/"


def only(*kinds: str):
    """An ``available`` check that finds exactly these providers."""
    return lambda kind, options: kind in kinds


def test_the_registry_lists_every_provider_in_autos_order() -> None:
    assert list(PROVIDERS["rabbitmq"]) == ["url", "docker", "local", "warm"]
    assert list(PROVIDERS["redis"]) == ["url", "docker", "local"]


def test_auto_picks_url_when_a_url_is_given() -> None:
    assert choose_kind(BrokerOptions(url=URL)) == "url"


def test_auto_picks_local_when_only_the_server_is_found() -> None:
    assert choose_kind(BrokerOptions(), only("local")) == "local"


def test_auto_picks_docker_before_a_local_server() -> None:
    assert choose_kind(BrokerOptions(), only("docker", "local")) == "docker"


def test_auto_with_nothing_available_names_every_fix() -> None:
    with pytest.raises(HarnessError) as info:
        choose_kind(BrokerOptions(), only())
    message = str(info.value)
    assert "no RabbitMQ is available" in message
    assert "apt-get install -y rabbitmq-server" in message
    assert "--harness-broker-url amqp://" in message


def test_url_without_a_broker_url_errors() -> None:
    with pytest.raises(HarnessError, match="--harness-broker url needs --harness-broker-url amqp://"):
        choose_kind(BrokerOptions(kind="url"), only("url", "docker", "local"))


def test_an_explicit_kind_is_kept_even_with_a_url() -> None:
    assert choose_kind(BrokerOptions(kind="local", url=URL), only()) == "local"


def test_an_unknown_kind_errors() -> None:
    expected = r"--harness-broker 'kubernetes' is not one of auto, url, docker, local, warm"
    with pytest.raises(HarnessError, match=expected):
        choose_kind(BrokerOptions(kind="kubernetes"))


def test_a_named_server_counts_as_found_without_looking_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "which_server", lambda: None)
    assert not local.LocalBroker.available(BrokerOptions())
    assert local.LocalBroker.available(BrokerOptions(rabbitmq_server="/opt/rabbitmq/sbin/rabbitmq-server"))


# -- the family: --harness-transport -------------------------------------------------------------------

REDIS_URL = "redis://cache.example:6379/0"


def test_auto_transport_follows_the_broker_url_then_the_app_then_celerys_default() -> None:
    assert resolve_transport(BrokerOptions(transport="auto", url=REDIS_URL)) == ("redis", "the broker URL is redis")
    assert resolve_transport(BrokerOptions(transport="auto"), "redis")[0] == "redis"
    assert resolve_transport(BrokerOptions(transport="auto"))[0] == "rabbitmq"


def test_a_url_of_another_family_than_the_transport_is_refused_in_one_sentence() -> None:
    with pytest.raises(HarnessError, match="is a redis URL but --harness-transport is rabbitmq"):
        resolve_transport(BrokerOptions(transport="rabbitmq", url=REDIS_URL))
    with pytest.raises(HarnessError, match="neither an AMQP nor a Redis URL"):
        resolve_transport(BrokerOptions(transport="auto", url="sqs://queue"))


def test_an_explicit_transport_is_kept_whatever_the_app_uses() -> None:
    assert resolve_transport(BrokerOptions(transport="rabbitmq"), "redis") == ("rabbitmq", None)


def test_redis_has_no_warm_provider_and_says_how_to_get_a_server() -> None:
    with pytest.raises(HarnessError, match="not offered for redis"):
        choose_kind(BrokerOptions(kind="warm", transport="redis"))
    with pytest.raises(HarnessError, match="no Redis is available") as info:
        choose_kind(BrokerOptions(transport="redis"), only())
    assert "redis://" in str(info.value)
    assert choose_kind(BrokerOptions(transport="redis"), only("local")) == "local"
