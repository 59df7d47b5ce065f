"""A private ``redis-server`` for one scenario (a result backend the harness owns and may take down).

The same private server the Redis broker family starts (``harness.brokers.redis.local``: its own process on a
free loopback port, its own folder, nothing kept on disk), here as a service beside the broker: ``stop()`` /
``start()`` kill it and bring it back on the same port (empty: what a Redis without persistence comes back as),
each marked on the timeline as the service's fault, not the broker's.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from harness.brokers.redis.local import LocalRedis
from harness.faults import Fault, ServiceFault


class RedisServer:
    def __init__(self, folder: Path, record: Callable[[Fault], None] | None = None, name: str = "redis") -> None:
        self._record = record
        self.name = name
        folder.mkdir(parents=True, exist_ok=True)
        self._server = LocalRedis(work_root=str(folder))  # one sentence if redis-server is not installed
        self._started_once = False

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def url(self) -> str:
        return self._server.endpoint.url(0)

    def start(self) -> RedisServer:
        if self._started_once:
            self._server._start_again()
            if self._record is not None:
                self._record(ServiceFault(service=self.name, what="back (empty)"))
        else:
            self._server.start()
        self._started_once = True
        return self

    def stop(self) -> None:
        """Kill it (SIGKILL: a crash, nothing flushed); the port is free again at once."""
        self._server._stop_server(graceful=False)
        if self._record is not None:
            self._record(ServiceFault(service=self.name, what="killed"))

    def close(self) -> None:
        self._server.close()
