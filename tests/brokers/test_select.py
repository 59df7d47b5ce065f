"""harness.brokers.select.choose_kind: which provider a run uses."""

from __future__ import annotations

import pytest

from harness.brokers import local, select
from harness.brokers.select import BrokerOptions, choose_kind
from harness.errors import HarnessError

URL = "amqp://guest:guest@rabbit.example:5672/"


def found(_: BrokerOptions) -> bool:
    return True


def missing(_: BrokerOptions) -> bool:
    return False


def test_auto_picks_url_when_a_url_is_given() -> None:
    assert choose_kind(BrokerOptions(url=URL), server_found=found, docker_ok=found) == "url"


def test_auto_picks_local_when_the_server_is_found() -> None:
    assert choose_kind(BrokerOptions(), server_found=found, docker_ok=missing) == "local"


def test_auto_picks_docker_before_a_local_server() -> None:
    assert choose_kind(BrokerOptions(), server_found=found, docker_ok=found) == "docker"


def test_auto_with_nothing_available_names_both_fixes() -> None:
    with pytest.raises(HarnessError) as info:
        choose_kind(BrokerOptions(), server_found=missing, docker_ok=missing)
    message = str(info.value)
    assert "no RabbitMQ is available" in message
    assert "apt-get install -y rabbitmq-server" in message
    assert "--broker-url amqp://" in message


def test_url_without_a_broker_url_errors() -> None:
    with pytest.raises(HarnessError, match="--broker url needs --broker-url amqp://"):
        choose_kind(BrokerOptions(kind="url"), server_found=found, docker_ok=found)


def test_url_with_a_broker_url() -> None:
    assert choose_kind(BrokerOptions(kind="url", url=URL), server_found=missing, docker_ok=missing) == "url"


def test_an_explicit_kind_is_kept_even_with_a_url() -> None:
    assert choose_kind(BrokerOptions(kind="local", url=URL), server_found=missing, docker_ok=missing) == "local"


def test_an_unknown_kind_errors() -> None:
    with pytest.raises(HarnessError, match="--broker 'kubernetes' is not one of auto, local, url, docker"):
        choose_kind(BrokerOptions(kind="kubernetes"), server_found=found, docker_ok=found)


def test_a_named_server_counts_as_found_without_looking_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "which_server", lambda: None)
    assert not select.rabbitmq_server_found(BrokerOptions())
    assert select.rabbitmq_server_found(BrokerOptions(rabbitmq_server="/opt/rabbitmq/sbin/rabbitmq-server"))
    named = BrokerOptions(rabbitmq_server="/opt/rabbitmq/sbin/rabbitmq-server")
    assert choose_kind(named, docker_ok=missing) == "local"
    with pytest.raises(HarnessError, match="no RabbitMQ is available"):
        choose_kind(BrokerOptions(), docker_ok=missing)
