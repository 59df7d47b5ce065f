"""harness.brokers.select.choose_kind: which provider a run uses, from the registry's order."""

from __future__ import annotations

import pytest

from harness.brokers import PROVIDERS, local
from harness.brokers.select import BrokerOptions, choose_kind
from harness.errors import HarnessError

URL = "amqp://guest:guest@rabbit.example:5672/"


def only(*kinds: str):
    """An ``available`` check that finds exactly these providers."""
    return lambda kind, options: kind in kinds


def test_the_registry_lists_every_provider_in_autos_order() -> None:
    assert list(PROVIDERS) == ["url", "docker", "local", "warm"]


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
