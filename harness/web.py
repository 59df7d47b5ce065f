"""The user's side of the web app: clicking its button over real HTTP, each click timed.

Every click's task id (the app answers with it) is recorded in the ledger as sent by the scenario,
with whether the app said it was queued, so the verdict covers exactly what users asked for.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests

from harness.ledger import Ledger


@dataclass(frozen=True)
class Click:
    status: int
    seconds: float
    task_id: str | None
    queued: bool
    error: str | None = None


class WebClient:
    def __init__(self, base_url: str, ledger: Ledger | None = None, timeout: float = 15.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.ledger = ledger
        self.timeout = timeout
        self._session = requests.Session()

    def healthy(self) -> bool:
        try:
            return self._session.get(f"{self.base_url}/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def page(self) -> requests.Response:
        return self._session.get(f"{self.base_url}/", timeout=self.timeout)

    def click(self, name: str = "world") -> Click:
        """Press "Say hello (Celery)": POST /hello, which offloads the work."""
        started = time.monotonic()
        try:
            response = self._session.post(f"{self.base_url}/hello", json={"name": name}, timeout=self.timeout)
        except requests.RequestException as exc:
            return Click(0, time.monotonic() - started, None, False, type(exc).__name__)
        seconds = time.monotonic() - started
        body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
        click = Click(response.status_code, seconds, body.get("task_id"), bool(body.get("queued")), body.get("error"))
        if self.ledger is not None and click.task_id:
            self.ledger.record_send(click.task_id, ok=click.queued, error=click.error)
        return click

    def clicks(self, count: int, name: str = "world") -> list[Click]:
        return [self.click(f"{name}-{i}") for i in range(count)]

    def click_inline(self) -> tuple[int, float]:
        """Press "Say hello (inline)": the slow work runs inside the request."""
        return self.begin_inline().finish()

    def begin_inline(self) -> PendingRequest:
        """Press "Say hello (inline)" and come back for the answer later (``.finish()``)."""
        return PendingRequest(self.base_url, "POST", "/hello/inline", self.timeout)

    def time_page(self) -> float:
        """Seconds to load the page, as a user opening the site now would wait."""
        started = time.monotonic()
        self.page().raise_for_status()
        return time.monotonic() - started


def assert_all_queued(clicks: list[Click], within: float) -> None:
    """Every click was answered 202 (queued), each within ``within`` seconds."""
    refused = [c for c in clicks if not (c.status == 202 and c.queued)]
    assert not refused, f"{len(refused)} of {len(clicks)} clicks were not queued: {refused[:5]}"
    slowest = max(c.seconds for c in clicks)
    assert slowest < within, f"the slowest click took {slowest:.2f}s; offloaded work must answer within {within}s"


class PendingRequest:
    """A request sent over a raw socket, its answer read later.

    The connection is accepted by the kernel before ``begin`` returns, so any request made after it
    queues behind it at a one-worker server: that makes "the site waits while the slow request
    runs" observable without threads or sleeps.
    """

    def __init__(self, base_url: str, method: str, path: str, timeout: float) -> None:
        parts = urlsplit(base_url)
        self.started = time.monotonic()
        self._socket = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
        head = f"{method} {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        self._socket.sendall(head.encode())

    def finish(self) -> tuple[int, float]:
        """Read the whole answer: (HTTP status, seconds since the request was sent)."""
        chunks = []
        with self._socket:
            while chunk := self._socket.recv(65536):
                chunks.append(chunk)
        status_line = b"".join(chunks).split(b"\r\n", 1)[0].decode(errors="replace")
        return int(status_line.split()[1]), time.monotonic() - self.started
