"""The ``local`` Redis provider: a private ``redis-server`` for the run, from the one on PATH.

Its own folder (config, data, log), a free loopback port, thousands of databases (one per scenario), nothing
kept on disk until a scenario asks for persistence (``persistence``), and the run's own process (mirakuru, dying
with its owner): it never touches a system Redis. A Redis boots in milliseconds, so a restart is cheap.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path

import redis

from harness.brokers.redis.base import RedisBroker, RedisEndpoint
from harness.errors import HarnessError
from harness.executors import OwnedTCPExecutor
from harness.ports import free_ports

INSTALL_HINT = (
    "install it (Debian/Ubuntu: apt-get install -y redis-server; scripts/bootstrap does), or use a running server "
    "(--harness-broker url --harness-broker-url redis://host:6379/0)"
)
DATABASES = 4096  # one per scenario of a session; Redis's own default is 16


class LocalRedis(RedisBroker):
    kind = "local"

    @classmethod
    def from_options(cls, options) -> LocalRedis:
        return cls(options.redis_server, options.boot_timeout, work_root=options.work_root)

    @classmethod
    def available(cls, options) -> bool:
        return bool(options.redis_server or shutil.which("redis-server"))

    def __init__(self, server: str | None = None, boot_timeout: float = 30.0, work_root: str | None = None) -> None:
        found = server or shutil.which("redis-server")
        if not found or not (Path(found).is_file() and os.access(found, os.X_OK)):
            named = f"--harness-redis-server {server} is not an executable file" if server else (
                "redis-server was not found on PATH"
            )  # fmt: skip
            raise HarnessError(f"{named}; {INSTALL_HINT}")
        self.server = found
        self.port = free_ports(1)[0]
        self.boot_timeout = boot_timeout
        self.dir = Path(tempfile.mkdtemp(prefix="harness-redis-", dir=work_root))
        self.config = self.dir / "redis.conf"
        self.config.write_text(
            "\n".join([
                f"port {self.port}", "bind 127.0.0.1", "protected-mode yes", "daemonize no", f"dir {self.dir}",
                f"logfile {self.dir / 'redis.log'}", f"databases {DATABASES}", 'save ""', "appendonly no",
            ]) + "\n"
        )  # fmt: skip
        self._executor: OwnedTCPExecutor | None = None

    @property
    def endpoint(self) -> RedisEndpoint:
        return RedisEndpoint("127.0.0.1", self.port)

    @property
    def pid(self) -> int | None:
        process = self._executor.process if self._executor is not None else None
        return process.pid if process is not None else None

    def start(self) -> None:
        self._executor = OwnedTCPExecutor(
            [self.server, str(self.config)], host="127.0.0.1", port=self.port, timeout=self.boot_timeout,
            sleep=0.005,  # a Redis answers within milliseconds: mirakuru's default 0.1 s poll would be most of it
        )  # fmt: skip
        try:
            self._executor.start()
        except Exception as error:
            log = self.dir / "redis.log"
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
            raise HarnessError(
                f"redis-server did not answer on port {self.port} ({type(error).__name__}): "
                f"{tail[0] if tail else 'no log'} (see {log})"
            ) from None
        self._wait_answering(self.boot_timeout)  # the port opens before the data (an AOF, an RDB) is loaded

    def _start_again(self) -> None:
        self.start()

    def _stop_server(self, graceful: bool) -> None:
        executor = self._executor
        if executor is None:
            return
        if graceful:
            try:
                with self.client() as client:
                    client.shutdown()
            except redis.ConnectionError:  # SHUTDOWN closes the connection as it goes: that is the answer
                pass
            executor.process.wait(timeout=30)
        else:
            executor.kill(wait=True)
        executor.stop()  # tidies mirakuru's state (the process is gone already)

    def _pause(self) -> None:
        if self.pid is not None:
            os.kill(self.pid, signal.SIGSTOP)

    def _resume(self) -> None:
        if self.pid is not None:
            os.kill(self.pid, signal.SIGCONT)

    def _keep_config(self, client: redis.Redis) -> None:
        client.config_rewrite()  # the restarted server reads the runtime settings from its file

    def _forget_saved_data(self) -> None:
        (self.dir / "dump.rdb").unlink(missing_ok=True)
        shutil.rmtree(self.dir / "appendonlydir", ignore_errors=True)

    def close(self) -> None:
        if self._executor is not None:
            if self.pid is not None:
                os.kill(self.pid, signal.SIGCONT)  # a frozen server cannot stop
            self._executor.kill(wait=True)
            self._executor = None
        shutil.rmtree(self.dir, ignore_errors=True)
