"""What every RabbitMQ provider offers the harness: where to connect, and who owns the broker."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import quote

from harness.errors import HarnessError
from harness.faults import BrokerFrozen, BrokerReconfigured, BrokerResumed, BrokerStarted, BrokerStopped, FaultBus
from harness.management import ManagementAPI


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


class BrokerNotOwned(Exception):
    """A fault call (stop, restart) on a broker the harness does not own."""


class Broker(ABC):
    """A RabbitMQ broker for one test session.

    ``start`` and ``close`` bracket the session. ``management`` is None when the broker has no
    management API the harness can use; then scenarios share the vhost of the URL (see harness.vhost).
    """

    kind: str
    owned: bool = True
    transport = "rabbitmq"  # the broker family (harness.brokers.TRANSPORTS)
    product = "RabbitMQ"

    @classmethod
    def from_options(cls, options) -> Broker:
        """The provider configured from the run's ``BrokerOptions``."""
        raise NotImplementedError

    @classmethod
    def available(cls, options) -> bool:
        """Whether ``--harness-broker auto`` may pick this provider on this machine (cheap checks only)."""
        return False

    @property
    def faults(self) -> FaultBus:
        """Every fault call is published here (the scenario's timeline and ledger subscribe)."""
        bus = self.__dict__.get("_faults")
        if bus is None:
            bus = self.__dict__["_faults"] = FaultBus()
        return bus

    @abstractmethod
    def start(self) -> None:
        """Start the broker, or connect to it, returning None once it answers. The ``broker`` fixture does this."""

    @abstractmethod
    def close(self) -> None:
        """End the session's use of the broker (stop it, if the harness started it); returns None. Idempotent."""

    @property
    @abstractmethod
    def endpoint(self) -> Endpoint:
        """Where the broker answers: an ``Endpoint`` (host, AMQP port, user, password, vhost, management URL);
        ``endpoint.amqp_url(vhost)`` is a URL to a vhost of it."""

    @property
    def management(self) -> ManagementAPI | None:
        """A client of the broker's management HTTP API, or None where it has none (a ``url`` broker without)."""
        url = self.endpoint.management_url
        if url is None:
            return None
        return ManagementAPI(url, self.endpoint.user, self.endpoint.password)

    def open_space(self, label: str, queues):
        """A scenario's own space on this broker (a fresh vhost, or the URL's own in turns): see ``harness.vhost``."""
        from harness.vhost import ScenarioVhost

        return ScenarioVhost.open(self, label, queues)

    def after_scenario(self) -> None:
        """Undo what a scenario changed on the whole broker (the ``owned_broker`` fixture calls it); returns None.
        RabbitMQ's scenarios restore their own changes (``rabbit_settings`` is a context manager)."""
        return None

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

    # Fault calls. Providers that own their broker implement _stop/_start_again/_pause/_resume; a
    # broker the harness does not own (``url``) refuses them, so a scenario skips instead of touching
    # someone else's broker. Each call is published on ``faults``.
    #
    # Two kinds of stop, both true restarts for what a client sees (every connection is cut, the AMQP
    # port refuses connections, every queue stops and recovers from disk, transient messages are gone):
    # ``how="node"`` stops the whole RabbitMQ node (an upgrade, a machine replaced); ``how="app"`` stops
    # the RabbitMQ application inside its running Erlang node (``rabbitmqctl stop_app``), which skips
    # the VM's boot: seconds faster, and what a scenario that only needs "the broker went away" uses.
    STOP_KINDS = ("node", "app")
    _stopped_how: str | None = None

    def stop_broker(self, how: str = "node") -> None:
        """Stop the broker, keeping its data and its AMQP port for ``start_broker``; returns None once stopped.
        ``how="app"`` stops only the RabbitMQ application in its running node (seconds faster)."""
        if how not in self.STOP_KINDS:
            raise ValueError(f"how={how!r} is not one of {self.STOP_KINDS}")
        self.faults.publish(BrokerStopped(how=f"{self.kind} {how} stop"))
        if how == "app":
            self._quick_stop_prepare()
            self.rabbitmqctl("stop_app")
        else:
            self._stop()
        self._stopped_how = how

    def start_broker(self) -> None:
        """Start the stopped broker again; returns None once it answers (and the scenario's observers listen)."""
        if self._stopped_how == "app":
            self.rabbitmqctl("start_app")
            self._wait_answering()
        else:
            self._start_again()
        self._stopped_how = None
        self.faults.publish(BrokerStarted())

    def _quick_stop_prepare(self) -> None:
        """Before a stop: remove the management plugin's statistics event handler. On RabbitMQ 3.10 its
        ``terminate`` calls a process that the stop has already taken down and waits out a 5 s call
        timeout (measured: ``application:stop(rabbit)`` takes 5.0 s with the management plugin, 0.01 s
        without; the stack is in ``rabbit_mgmt_db_handler:ensure_statistics_disabled``). Removed while that
        process is still up, it goes at once; the restart adds it back. Nothing a client sees changes."""
        try:
            self.rabbitmqctl("eval", "gen_event:delete_handler(rabbit_event, rabbit_mgmt_db_handler, []).")
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

    def pause_broker(self) -> None:
        """Freeze the broker: connections stay open but nothing answers (a network partition, as clients see it);
        returns None."""
        self.faults.publish(BrokerFrozen())
        self._pause()

    def resume_broker(self) -> None:
        """Let a frozen broker (``pause_broker``) answer again; returns None."""
        self._resume()
        self.faults.publish(BrokerResumed())

    def _stop(self) -> None:
        raise BrokerNotOwned(f"the {self.kind} broker is not the harness's to stop")

    def _start_again(self) -> None:
        raise BrokerNotOwned(f"the {self.kind} broker is not the harness's to start")

    def _pause(self) -> None:
        raise BrokerNotOwned(f"the {self.kind} broker is not the harness's to freeze")

    def _resume(self) -> None:
        raise BrokerNotOwned(f"the {self.kind} broker is not the harness's to resume")

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

    def restart_broker(self, how: str = "node") -> None:
        """Stop the broker and start it again: same data, same AMQP port (``how``: see ``stop_broker``); returns
        None once it answers."""
        self.stop_broker(how)
        self.start_broker()

    @contextmanager
    def stopped(self, how: str = "node") -> Iterator[None]:
        """The broker is down inside the block and up again (same port, same data) after it."""
        self.stop_broker(how)
        try:
            yield
        finally:
            self.start_broker()

    @contextmanager
    def unreachable(self) -> Iterator[None]:
        """The broker answers nothing inside the block, and resumes after it."""
        self.pause_broker()
        try:
            yield
        finally:
            self.resume_broker()

    # Resource alarms: publishers blocked while the broker is up (see harness.alarms).
    @contextmanager
    def _alarm(self, resource: str) -> Iterator[None]:
        if not self.owned:
            raise BrokerNotOwned(
                f"the {self.kind} broker is not the harness's to raise a {resource} alarm on (it did not start it)"
            )
        from harness.alarms import alarm  # alarms drive a Broker: imported here, not at the top, to stay one-way

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
