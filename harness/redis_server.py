"""A private ``redis-server`` for one scenario (a result backend the harness owns and may take down).

Never the system Redis: its own process on a free loopback port, its own directory, nothing kept on
disk (``--save ""``, no AOF), stopped at the end of the scenario. ``stop()`` / ``start()`` take it away
and bring it back on the same port (empty: what a Redis without persistence comes back as).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

from harness.errors import HarnessError
from harness.faults import Fault, ServiceFault
from harness.ports import free_ports
from harness.waiting import eventually


class RedisServer:
    def __init__(self, folder: Path, record: Callable[[Fault], None] | None = None, name: str = "redis") -> None:
        self._record = record
        self.name = name
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            raise HarnessError(
                "this scenario needs a private Redis: install redis-server (apt-get install redis-server)"
            )
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_ports(1)[0]
        self._process: subprocess.Popen | None = None
        self._started_once = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        command = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(self.folder), "--daemonize", "no", "--protected-mode", "yes",
        ]  # fmt: skip
        log = open(self.folder / "redis.log", "ab")  # noqa: SIM115 - the child keeps it
        self._process = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
        log.close()
        eventually(self._answers, timeout=10, what=f"the private redis-server on port {self.port} to answer")
        if self._started_once and self._record is not None:
            self._record(ServiceFault(service=self.name, what="back (empty)"))
        self._started_once = True
        return self

    def _answers(self) -> bool:
        if self._process is not None and self._process.poll() is not None:
            raise HarnessError(f"redis-server exited at start (see {self.folder / 'redis.log'})")
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")

    def stop(self) -> None:
        """Kill it (SIGKILL: a crash, nothing flushed); the port is free again at once."""
        self._kill()
        if self._record is not None:
            self._record(ServiceFault(service=self.name, what="killed"))

    def close(self) -> None:
        self._kill()

    def _kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=10)
        self._process = None
