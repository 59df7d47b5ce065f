"""harness.brokers.rabbitmq.url.parse_amqp_url and harness.brokers.base.Endpoint."""

from __future__ import annotations

import pytest

from harness.brokers.rabbitmq.base import Endpoint
from harness.brokers.rabbitmq.url import parse_amqp_url
from harness.errors import HarnessError


@pytest.mark.parametrize(
    "url",
    ["amqp://guest:guest@rabbit:5672/", "amqp://guest:guest@rabbit:5672", "amqp://guest:guest@rabbit:5672/%2F"],
)
def test_the_default_vhost(url: str) -> None:
    assert parse_amqp_url(url) == Endpoint("rabbit", 5672, "guest", "guest", "/")


def test_a_named_vhost() -> None:
    assert parse_amqp_url("amqp://app:secret@10.0.0.5:5673/orders").vhost == "orders"


def test_an_encoded_slash_inside_a_named_vhost() -> None:
    assert parse_amqp_url("amqp://app:secret@rabbit/team%2Forders").vhost == "team/orders"


def test_default_port_and_credentials() -> None:
    assert parse_amqp_url("pyamqp://rabbit") == Endpoint("rabbit", 5672, "guest", "guest", "/")


def test_encoded_credentials_are_decoded() -> None:
    endpoint = parse_amqp_url("amqp://us%40er:p%40ss%3Aw%2Frd@rabbit:5672/")
    assert (endpoint.user, endpoint.password) == ("us@er", "p@ss:w/rd")


@pytest.mark.parametrize(
    "url", ["http://guest:guest@rabbit:5672/", "redis://localhost:6379/0", "rabbit:5672", "amqp:///vhost", ""]
)
def test_not_an_amqp_url(url: str) -> None:
    with pytest.raises(HarnessError, match="is not an AMQP URL; write it as amqp://user:password@host:5672/vhost"):
        parse_amqp_url(url)


def test_an_invalid_port() -> None:
    with pytest.raises(HarnessError, match="has an invalid port"):
        parse_amqp_url("amqp://guest:guest@rabbit:notaport/")


@pytest.mark.parametrize("vhost", ["/", "orders", "team/orders", "with space", "50%"])
def test_amqp_url_round_trips(vhost: str) -> None:
    endpoint = Endpoint("rabbit.example", 5673, "us@er", "p@ss:w/rd%", vhost)
    assert parse_amqp_url(endpoint.amqp_url()) == endpoint


def test_amqp_url_of_another_vhost() -> None:
    endpoint = Endpoint("rabbit", 5672, "guest", "guest", "/")
    assert endpoint.amqp_url("harness-1") == "amqp://guest:guest@rabbit:5672/harness-1"
    assert endpoint.amqp_url() == "amqp://guest:guest@rabbit:5672/%2F"


@pytest.mark.parametrize("password", ["s3cret", "p@ss:w/rd", "guest"])
def test_redacted_hides_the_password(password: str) -> None:
    endpoint = Endpoint("rabbit", 5672, "guest", password, "orders")
    redacted = endpoint.redacted()
    assert redacted == "amqp://guest:***@rabbit:5672/orders"
    assert endpoint.redacted("harness-2") == "amqp://guest:***@rabbit:5672/harness-2"
