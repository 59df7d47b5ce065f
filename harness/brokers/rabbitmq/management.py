"""A small client for the RabbitMQ management HTTP API (only the calls the harness needs)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

import requests

from harness.errors import HarnessError


@dataclass(frozen=True)
class QueueStats:
    ready: int
    unacked: int
    consumers: int


class ManagementAPI:
    # A broker busy booting its neighbours (parallel runs on two cores) can take seconds to answer. Setting a
    # scenario up (vhost, permissions, policy) is idempotent and done once: a slow answer is asked again.
    # Readings during a scenario (queue counts) are asked once, so a frozen broker costs one timeout.
    PATIENT_ATTEMPTS = 3

    def __init__(self, base_url: str, user: str, password: str, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()
        self._session.auth = (user, password)
        self._user = user

    def _url(self, *parts: str) -> str:
        return "/".join([self.base_url, "api", *(quote(p, safe="") for p in parts)])

    def _call(self, method: str, *parts: str, json: object | None = None, patient: bool = False) -> requests.Response:
        url = self._url(*parts)
        attempts = self.PATIENT_ATTEMPTS if patient else 1
        for attempt in range(1, attempts + 1):
            try:
                response = self._session.request(method, url, json=json, timeout=self.timeout)
                break
            except (requests.ConnectionError, requests.Timeout) as exc:
                if attempt < attempts:
                    continue
                error = exc
            except requests.RequestException as exc:
                error = exc
            raise HarnessError(
                f"the RabbitMQ management API at {self.base_url} does not answer ({type(error).__name__}); "
                "check the broker is running and the management plugin is enabled"
            ) from None
        if response.status_code == 401:
            raise HarnessError(
                f"the RabbitMQ management API at {self.base_url} rejected user {self._user!r} (401); "
                "give the credentials of an administrator in the broker URL"
            )
        return response

    def alive(self) -> bool:
        try:
            return self._session.get(self._url("overview"), timeout=self.timeout).status_code == 200
        except requests.RequestException:
            return False

    def overview(self) -> dict:
        response = self._call("GET", "overview")
        response.raise_for_status()
        return response.json()

    def create_vhost(self, vhost: str) -> None:
        self._call("PUT", "vhosts", vhost, patient=True).raise_for_status()
        permissions = {"configure": ".*", "write": ".*", "read": ".*"}
        self._call("PUT", "permissions", vhost, self._user, json=permissions, patient=True).raise_for_status()

    def delete_vhost(self, vhost: str) -> None:
        response = self._call("DELETE", "vhosts", vhost, patient=True)
        if response.status_code not in (204, 404):
            response.raise_for_status()

    def put_policy(self, vhost: str, name: str, pattern: str, definition: dict) -> None:
        body = {"pattern": pattern, "definition": definition, "apply-to": "queues", "priority": 0}
        self._call("PUT", "policies", vhost, name, json=body, patient=True).raise_for_status()

    def vhosts(self) -> list[str]:
        response = self._call("GET", "vhosts")
        response.raise_for_status()
        return [v["name"] for v in response.json()]

    def queue_policy(self, vhost: str, queue: str) -> str | None:
        response = self._call("GET", "queues", vhost, queue)
        return response.json().get("policy") if response.status_code == 200 else None

    def queues(self, vhost: str) -> dict[str, QueueStats]:
        """Every queue of the vhost, with its counts as last sampled."""
        response = self._call("GET", "queues", vhost)
        if response.status_code == 404:
            return {}
        response.raise_for_status()
        return {
            q["name"]: QueueStats(
                int(q.get("messages_ready", 0)), int(q.get("messages_unacknowledged", 0)), int(q.get("consumers", 0))
            )
            for q in response.json()
        }

    def queue(self, vhost: str, queue: str) -> dict | None:
        """Everything the API says of one queue (durable, type, arguments, effective policy...)."""
        response = self._call("GET", "queues", vhost, queue)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json()

    def queue_bindings(self, vhost: str, queue: str) -> set[tuple[str, str]]:
        """``queue``'s bindings as (exchange, routing key) pairs (bindings are not readable over AMQP)."""
        response = self._call("GET", "queues", vhost, queue, "bindings")
        if response.status_code == 404:
            return set()
        response.raise_for_status()
        return {(binding["source"], binding["routing_key"]) for binding in response.json()}

    def queue_stats(self, vhost: str, queue: str) -> QueueStats | None:
        """Counts as the management plugin last sampled them (it lags by its statistics interval)."""
        response = self._call("GET", "queues", vhost, queue)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        data = response.json()
        return QueueStats(
            ready=int(data.get("messages_ready", 0)),
            unacked=int(data.get("messages_unacknowledged", 0)),
            consumers=int(data.get("consumers", 0)),
        )
