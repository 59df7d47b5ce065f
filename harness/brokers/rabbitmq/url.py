"""The ``url`` provider: a broker that already runs, named by its AMQP URL. The harness never stops it."""

from __future__ import annotations

import dataclasses
import socket
from urllib.parse import unquote, urlsplit

import amqp
from amqp.exceptions import AccessRefused, NotAllowed

from harness.brokers.rabbitmq.base import Endpoint, RabbitMQBroker
from harness.brokers.rabbitmq.management import ManagementAPI
from harness.errors import HarnessError

DEFAULT_MANAGEMENT_PORT = 15672


def parse_amqp_url(url: str) -> Endpoint:
    parts = urlsplit(url)
    if parts.scheme not in ("amqp", "pyamqp") or not parts.hostname:
        raise HarnessError(
            f"--harness-broker-url {url!r} is not an AMQP URL; write it as amqp://user:password@host:5672/vhost"
        )
    try:
        port = parts.port or 5672
    except ValueError:
        raise HarnessError(
            f"--harness-broker-url {url!r} has an invalid port; write amqp://user:password@host:5672/vhost"
        ) from None
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    vhost = unquote(path) if path else "/"
    return Endpoint(parts.hostname, port, unquote(parts.username or "guest"), unquote(parts.password or "guest"), vhost)


class UrlBroker(RabbitMQBroker):
    kind = "url"
    owned = False

    def __init__(self, url: str, management_url: str | None = None, connect_timeout: float = 3.0) -> None:
        self._endpoint = parse_amqp_url(url)
        self._given_management_url = management_url
        self.connect_timeout = connect_timeout
        self.management_problem: str | None = None

    @classmethod
    def from_options(cls, options) -> UrlBroker:
        return cls(options.url or "", options.management_url)

    @classmethod
    def saved(cls, url: str, management_url: str | None = None) -> UrlBroker:
        """The broker of a saved state (``harness up``'s file), to read from: nothing is checked or started."""
        broker = cls(url, management_url)
        broker._endpoint = dataclasses.replace(broker._endpoint, management_url=management_url)
        return broker

    @classmethod
    def available(cls, options) -> bool:
        return bool(options.url)

    @property
    def endpoint(self) -> Endpoint:
        return self._endpoint

    def close(self) -> None:
        """Nothing to stop: the broker is not the harness's."""

    def start(self) -> None:
        self._check_amqp()
        self._endpoint = self._with_management()

    def _check_amqp(self) -> None:
        e = self._endpoint
        where = e.redacted()
        connection = amqp.Connection(
            host=f"{e.host}:{e.port}",
            userid=e.user,
            password=e.password,
            virtual_host=e.vhost,
            connect_timeout=self.connect_timeout,
        )
        try:
            connection.connect()
        except ConnectionRefusedError:
            raise HarnessError(
                f"nothing accepts AMQP connections at {e.host}:{e.port} (connection refused); start the broker "
                "there or fix --harness-broker-url"
            ) from None
        except TimeoutError:
            raise HarnessError(
                f"the broker at {e.host}:{e.port} did not answer within {self.connect_timeout:.0f}s; "
                "check the host and port in --harness-broker-url"
            ) from None
        except socket.gaierror:
            raise HarnessError(
                f"the broker host {e.host!r} does not resolve; fix the host in --harness-broker-url"
            ) from None
        except AccessRefused:
            raise HarnessError(
                f"the broker at {e.host}:{e.port} rejected user {e.user!r} (ACCESS_REFUSED); fix the user and "
                "password in --harness-broker-url"
            ) from None
        except NotAllowed:
            raise HarnessError(
                f"the broker at {where} does not let {e.user!r} into vhost {e.vhost!r} (NOT_ALLOWED); create "
                "the vhost, grant permissions, or name another vhost in --harness-broker-url"
            ) from None
        except OSError as exc:
            raise HarnessError(
                f"could not connect to the broker at {e.host}:{e.port} ({exc}); fix --harness-broker-url"
            ) from None
        finally:
            try:
                connection.collect()
            except Exception:  # nothing to release if the connection never opened
                pass

    def _with_management(self) -> Endpoint:
        e = self._endpoint
        url = self._given_management_url or f"http://{e.host}:{DEFAULT_MANAGEMENT_PORT}"
        api = ManagementAPI(url, e.user, e.password, timeout=2.0)
        if api.alive():
            return Endpoint(e.host, e.port, e.user, e.password, e.vhost, url.rstrip("/"))
        if self._given_management_url:
            raise HarnessError(
                f"--harness-management-url {url} does not answer with user {e.user!r}; enable the management plugin, "
                "fix the URL or credentials, or leave --harness-management-url out to work over AMQP alone"
            )
        self.management_problem = (
            f"no management API answers at {url}: scenarios share vhost {e.vhost!r} (its queues are purged before "
            "and after each scenario, and scenarios of concurrent runs take turns on it) and unacknowledged "
            "counts are known only for queues without consumers; enable the management plugin or pass "
            "--harness-management-url for a fresh vhost per scenario"
        )
        return e
