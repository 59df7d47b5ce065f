"""What every RabbitMQ provider offers the harness: where to connect, the management API, the node's settings and
resource alarms, and what a stop is on RabbitMQ (the node, or the application inside it)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar
from urllib.parse import quote

from harness.brokers.base import Broker, BrokerNotOwned
from harness.brokers.rabbitmq.management import ManagementAPI
from harness.errors import HarnessError
from harness.faults import BrokerReconfigured

# Erlang: the management plugin's statistics handler out of rabbit_event before a stop (``_quick_stop_prepare``).
REMOVE_STATS_HANDLER = "gen_event:delete_handler(rabbit_event, rabbit_mgmt_db_handler, [])"


@dataclass(frozen=True)
class Endpoint:
    """Where a running broker answers."""

    host: str
    port: int
    user: str
    password: str
    vhost: str = "/"
    management_url: str | None = None

    def amqp_url(self, vhost: str | None = None) -> str:
        vhost = self.vhost if vhost is None else vhost
        credentials = f"{quote(self.user, safe='')}:{quote(self.password, safe='')}"
        return f"amqp://{credentials}@{self.host}:{self.port}/{quote(vhost, safe='')}"

    def redacted(self, vhost: str | None = None) -> str:
        return self.amqp_url(vhost).replace(f":{quote(self.password, safe='')}@", ":***@")


class RabbitMQBroker(Broker):
    """A RabbitMQ broker for one test session. ``management`` is None when the broker has no management API the
    harness can use; then scenarios share the vhost of the URL (see ``harness.brokers.rabbitmq.vhost``).

    Two kinds of stop, both true restarts for what a client sees (every connection is cut, the AMQP port refuses
    connections, every queue stops and recovers from disk, transient messages are gone): ``how="node"`` stops
    the whole RabbitMQ node (an upgrade, a machine replaced); ``how="app"`` stops the RabbitMQ application inside
    its running Erlang node (``rabbitmqctl stop_app``), which skips the VM's boot: seconds faster, and what a
    scenario that only needs "the broker went away" uses. Providers implement ``_stop`` and ``_start_again`` (the
    node), ``_pause`` and ``_resume``.
    """

    transport = "rabbitmq"
    product = "RabbitMQ"
    STOP_KINDS = ("node", "app")
    STOP_ALIASES: ClassVar[dict[str, str]] = {
        "crash": "node",
        "shutdown": "node",
    }  # Redis's words, in a scenario written for both

    @property
    def endpoint(self) -> Endpoint:
        """Where the broker answers: an ``Endpoint`` (host, AMQP port, user, password, vhost, management URL);
        ``endpoint.amqp_url(vhost)`` is a URL to a vhost of it."""
        raise NotImplementedError

    def open_space(self, label: str, queues):
        """A scenario's own vhost (a fresh one, or the URL's own in turns): see ``harness.brokers.rabbitmq.vhost``."""
        from harness.brokers.rabbitmq.vhost import ScenarioVhost

        return ScenarioVhost.open(self, label, queues)

    def attach_space(self, name: str, queues: tuple[str, ...]):
        """A handle on vhost ``name``, which exists already (its own, where the management API made it)."""
        from harness.brokers.rabbitmq.vhost import ScenarioVhost

        return ScenarioVhost(self, name, queues, isolated=self.endpoint.management_url is not None)

    @property
    def management(self) -> ManagementAPI | None:
        """A client of the broker's management HTTP API, or None where it has none (a ``url`` broker without)."""
        url = self.endpoint.management_url
        if url is None:
            return None
        return ManagementAPI(url, self.endpoint.user, self.endpoint.password)

    def server_version(self) -> str:
        """The RabbitMQ version the broker says it runs (the management API, else AMQP's server properties),
        read once: scenarios whose outcome depends on it assert per version, and reports say which ran."""
        known = self.__dict__.get("_server_version")
        if known is None:
            management = self.management
            if management is not None:
                known = str(management.overview()["rabbitmq_version"])
            else:
                from kombu import Connection

                with Connection(self.endpoint.amqp_url(), connect_timeout=10) as connection:
                    connection.connect()
                    known = str(connection.connection.server_properties.get("version", "unknown"))
            self.__dict__["_server_version"] = known
        return known

    def check_version(self, asked: str | None) -> None:
        """A broker the harness started must run the major version asked for (an image named by an
        environment variable may hold another one): returns None, or refuses a wrong one with what to change."""
        if not self.owned or not asked:
            return
        running = self.server_version()
        if running.split(".")[0] != asked:
            raise HarnessError(
                f"the {self.kind} broker runs RabbitMQ {running}, but --harness-rabbitmq-version {asked} was asked "
                "for; name a RabbitMQ " + asked + " image with --harness-rabbitmq-image (scripts/build-rabbitmq-image "
                f"{asked} builds harness-rabbitmq:{asked}-management-local) or ask for version {running.split('.')[0]}"
            )

    def describe(self) -> str:
        """The broker in a few words: its kind, where, and whether it has the management API."""
        mode = "management API" if self.endpoint.management_url else "AMQP only"
        return f"{self.kind} broker at {self.endpoint.host}:{self.endpoint.port} ({mode})"

    # -- what a stop is on RabbitMQ ----------------------------------------------------------------
    def _halt(self, how: str) -> None:
        if how == "app":
            # ``rabbitmqctl stop_app`` is ``rabbit:stop()``: one eval does it after the handler's removal, one
            # CLI start (about 0.7 CPU-s each) fewer per restart. A handler that is not there is an error tuple.
            self.rabbitmqctl("eval", f"{REMOVE_STATS_HANDLER}, rabbit:stop().")
        else:
            self._stop()

    def _revive(self, how: str) -> None:
        if how == "app":
            self.rabbitmqctl("start_app")
            self._wait_answering()
        else:
            self._start_again()

    def _quick_stop_prepare(self) -> None:
        """Before a stop: remove the management plugin's statistics event handler. On RabbitMQ 3.10 its
        ``terminate`` calls a process that the stop has already taken down and waits out a 5 s call
        timeout (measured: ``application:stop(rabbit)`` takes 5.0 s with the management plugin, 0.01 s
        without; the stack is in ``rabbit_mgmt_db_handler:ensure_statistics_disabled``). Removed while that
        process is still up, it goes at once; the restart adds it back. Nothing a client sees changes."""
        try:
            self.rabbitmqctl("eval", f"{REMOVE_STATS_HANDLER}.")
        except Exception:  # no such handler (another version), or the node is already going: stop anyway
            pass

    def _wait_answering(self) -> None:
        """Wait until the AMQP port and the management API answer again (after ``start_app``)."""
        import socket

        from harness.waiting import eventually

        def answering() -> bool:
            socket.create_connection((self.endpoint.host, self.endpoint.port), timeout=0.5).close()
            return self.management is None or self.management.alive()

        eventually(answering, timeout=60, what="the RabbitMQ application to answer again", interval=0.05)

    def _stop(self) -> None:
        raise BrokerNotOwned(f"the {self.kind} broker is not the harness's to stop")

    def _start_again(self) -> None:
        raise BrokerNotOwned(f"the {self.kind} broker is not the harness's to start")

    # -- the node's settings and alarms ------------------------------------------------------------
    def rabbitmqctl(self, *args: str) -> str:
        """Run ``rabbitmqctl`` against this broker's node; returns its output."""
        raise BrokerNotOwned(f"the {self.kind} broker is not the harness's to reconfigure")

    @contextmanager
    def rabbit_settings(self, **settings: int) -> Iterator[dict[str, int | None]]:
        """Change settings of the node's ``rabbit`` application for channels opened inside the block
        (e.g. ``consumer_timeout``), and restore them after it; the block gets the values they had (None:
        unset). Takes a few seconds: rabbitmqctl's start-up."""
        keys = ", ".join(settings)
        sets = ", ".join(f"application:set_env(rabbit, {k}, {int(v)})" for k, v in settings.items())
        before = self.rabbitmqctl("eval", f"Old = [application:get_env(rabbit, K) || K <- [{keys}]], {sets}, Old.")
        old = re.findall(r"\{ok,(\d+)\}|undefined", before)
        self.faults.publish(BrokerReconfigured(settings=", ".join(f"{k}={v}" for k, v in settings.items())))
        try:
            yield {key: int(value) if value else None for key, value in zip(settings, old, strict=True)}
        finally:
            restore = [
                f"application:set_env(rabbit, {k}, {v})" if v else f"application:unset_env(rabbit, {k})"
                for k, v in zip(settings, old, strict=True)
            ]
            self.rabbitmqctl("eval", ", ".join(restore) + ".")

    # Resource alarms: publishers blocked while the broker is up (see harness.brokers.rabbitmq.alarms).
    @contextmanager
    def _alarm(self, resource: str) -> Iterator[None]:
        self._require_owned(f"raise a {resource} alarm on")
        from harness.brokers.rabbitmq.alarms import alarm  # alarms drive a broker: imported here, to stay one-way

        with alarm(self, resource):
            yield

    @contextmanager
    def memory_alarm(self) -> Iterator[None]:
        """RabbitMQ's memory alarm is on inside the block: publishers are blocked, consumers are not."""
        with self._alarm("memory"):
            yield

    @contextmanager
    def disk_alarm(self) -> Iterator[None]:
        """RabbitMQ's free-disk alarm is on inside the block: publishers are blocked, consumers are not."""
        with self._alarm("disk"):
            yield
