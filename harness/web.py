"""The user's side of the web app: plain HTTP requests, timed, and requests whose answer is read later.

Sending tasks through the web app is a producer's job (``harness.producers.HttpProducer``); this client
is for what a visitor does besides: open a page, time it, start a slow request and come back for it.
"""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

import requests


class WebClient:
    def __init__(self, base_url: str, timeout: float = 15.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()

    def ready(self, path: str | None) -> bool:
        """The app is up: ``path`` answers below 500, or (no path) its port accepts connections."""
        if path is None:
            parts = urlsplit(self.base_url)
            try:
                socket.create_connection((parts.hostname, parts.port), timeout=0.5).close()
            except OSError:
                return False
            return True
        try:
            status = self._session.get(f"{self.base_url}{path}", timeout=1, allow_redirects=False).status_code
        except requests.RequestException:
            return False
        if status < 500:
            self.erring_since = None
            return True
        if self.erring_since is None:
            self.erring_since = time.monotonic()
        self.last_error_status = status
        return False

    # The app answers HTTP, with an error, since this moment (monotonic clock; None: it does not, or no more).
    erring_since: float | None = None
    last_error_status: int | None = None

    def request(self, method: str, path: str = "/", **kwargs) -> requests.Response:
        return self._session.request(method, f"{self.base_url}{path}", timeout=self.timeout, **kwargs)

    def page(self, path: str = "/") -> requests.Response:
        return self.request("GET", path)

    def time_page(self, path: str = "/") -> float:
        """Seconds to load a page, as a visitor opening it now would wait."""
        started = time.monotonic()
        self.page(path).raise_for_status()
        return time.monotonic() - started

    def begin(self, method: str, path: str) -> PendingRequest:
        """Send a request now and come back for its answer later (``.finish()``)."""
        return PendingRequest(self.base_url, method, path, self.timeout)

    def close(self) -> None:
        self._session.close()


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
