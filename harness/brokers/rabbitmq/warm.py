"""The ``warm`` provider: a private RabbitMQ node that outlives the test run, for the edit-run loop.

``--harness-broker warm`` uses the node a previous run left up (found by its state file), or boots one
and leaves it up when the run ends; ``python -m harness broker stop`` stops it and removes its files
(``status`` says whether one is up, ``start`` boots one ahead of time). It is the ``local`` provider's
node, in a folder of its own under the user's cache, started in a session of its own so that it survives
pytest: still the harness's, so every fault call works (stop, start, freeze, settings), and still a fresh
vhost per scenario. Never picked by ``auto``, so CI never leaves one behind.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import pickle
import shutil
import signal
import subprocess
from pathlib import Path

import psutil
import requests

from harness.brokers.rabbitmq.local import LocalBroker
from harness.errors import HarnessError
from harness.waiting import WaitTimeout, eventually

# Attributes of a node that are not its identity: rebuilt, not saved.
TRANSIENT = ("_executor", "_faults", "_process")


def home() -> Path:
    """Where the warm node and its state live: ``HARNESS_WARM_HOME``, else the user's cache."""
    given = os.environ.get("HARNESS_WARM_HOME")
    base = Path(given) if given else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base if given else base / "celery-failure-harness" / "warm"


def _alive(pid: int) -> bool:
    """A process that runs (a zombie waiting for its parent to reap it has ended)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class WarmBroker(LocalBroker):
    kind = "warm"

    @classmethod
    def available(cls, options) -> bool:
        return False  # only when asked for: it outlives the run

    @classmethod
    def from_options(cls, options) -> WarmBroker:
        if options.rabbitmq_version != "3":
            raise HarnessError(
                "the warm broker runs RabbitMQ 3 only; for version 4 use --harness-broker local (a 4.0 node boots "
                "in about 4 s) or docker"
            )
        if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
            # One node for every worker: a scenario that restarts or freezes it would hit its neighbours.
            raise HarnessError(
                "the warm broker is one node, shared: run without -n (it is for the one-scenario edit-run loop), "
                "or use --harness-broker local for parallel runs (a node per xdist worker)"
            )
        found = cls.found()
        if found is not None:
            return found
        folder = home() / "nodes"
        folder.mkdir(parents=True, exist_ok=True)
        node = LocalBroker.from_options(dataclasses.replace(options, work_root=str(folder), rabbitmq_port=None))
        node.__class__ = cls  # the same node, run the warm way
        return node

    @classmethod
    def found(cls) -> WarmBroker | None:
        """The node a previous run left up, if its state file names a live one."""
        state = home() / "state.pickle"
        if not state.exists():
            return None
        try:
            saved = pickle.loads(state.read_bytes())
        except Exception:  # a state file from another version of the harness: start afresh
            return None
        node = cls.__new__(cls)
        node.__dict__.update(saved["node"])
        node._pid = saved["pid"]
        return node if _alive(node._pid) and node.answering() else None

    # -- the node's process, outside pytest ---------------------------------------------------------
    _pid: int = 0

    def _save(self) -> None:
        state = {"node": {k: v for k, v in self.__dict__.items() if k not in TRANSIENT}, "pid": self._pid}
        (home() / "state.pickle").write_bytes(pickle.dumps(state))
        (home() / "state.json").write_text(
            json.dumps({"pid": self._pid, "amqp": self.endpoint.amqp_url(), "management": self.endpoint.management_url})
        )

    def answering(self) -> bool:
        """Whether the warm node's AMQP port accepts a connection now."""
        import socket

        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            url = f"{self.endpoint.management_url}/api/overview"
            return requests.get(url, auth=("guest", "guest"), timeout=1).status_code == 200
        except (OSError, requests.RequestException):
            return False

    def _spawn(self) -> None:
        """Start the node in a session of its own (it must outlive pytest) and wait until it answers."""
        argv, env = self._command([str(self.server)]) if hasattr(self, "_command") else ([str(self.server)], {})
        environment = {**os.environ, **(env or self._environment())}
        with self.log_path.open("ab") as log:
            process = subprocess.Popen(
                argv, env=environment, cwd=self.dir, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        self._pid = process.pid
        try:
            eventually(
                lambda: process.poll() is not None or self.answering(), timeout=self.boot_timeout, interval=0.05,
                what="the warm RabbitMQ node to answer",
            )  # fmt: skip
        except WaitTimeout:
            self._kill()
            raise HarnessError(
                f"the warm RabbitMQ node did not answer within {self.boot_timeout:.0f}s; its log ends: "
                f"{self._log_tail(3) or '(empty)'}"
            ) from None
        except BaseException:  # Ctrl-C while it boots: no state file names it yet, so nothing would ever stop it
            self._kill()
            raise
        if process.poll() is not None:
            raise HarnessError(f"the warm RabbitMQ node exited during boot; its log ends: {self._log_tail(3)}")
        self._save()

    def _kill(self, sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._pid, sig)

    def start(self) -> None:
        if not self.answering():
            self._spawn()

    def _start_again(self) -> None:
        self._spawn()

    def _stop(self) -> None:
        """Stop the node gracefully (its data kept, for broker-restart scenarios)."""
        self._quick_stop_prepare()
        self._kill(signal.SIGTERM)
        try:
            eventually(lambda: not _alive(self._pid), timeout=30, what="the warm node to stop", interval=0.05)
        except WaitTimeout:
            self._kill()

    def _pause(self) -> None:
        self._kill(signal.SIGSTOP)

    def _resume(self) -> None:
        self._kill(signal.SIGCONT)

    def close(self) -> None:
        """Nothing: the node stays up for the next run (``python -m harness broker stop`` ends it)."""

    def shut_down(self) -> None:
        """Stop the node for good and remove its files and state."""
        self._kill(signal.SIGTERM)
        with contextlib.suppress(WaitTimeout):
            eventually(lambda: not _alive(self._pid), timeout=15, what="the warm node to stop", interval=0.1)
        self._kill()
        shutil.rmtree(self.dir, ignore_errors=True)
        for name in ("state.pickle", "state.json"):
            (home() / name).unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness broker", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("start", "stop", "status"))
    args = parser.parse_args(argv)
    found = WarmBroker.found()
    if args.action == "status":
        print(f"warm broker up: {found.endpoint.redacted()} (pid {found._pid})" if found else "no warm broker is up")
        return 0 if found else 1
    if args.action == "stop":
        if found is None:
            print("no warm broker is up")
            shutil.rmtree(home() / "nodes", ignore_errors=True)
            return 0
        found.shut_down()
        print("warm broker stopped")
        return 0
    if found is None:
        from harness.brokers.select import BrokerOptions

        found = WarmBroker.from_options(BrokerOptions(kind="warm"))
        try:
            found.start()
        except HarnessError as error:
            print(f"harness: {error}")
            return 2
    print(f"warm broker up: {found.endpoint.redacted()} (pid {found._pid}); stop it with python -m harness broker stop")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
