"""Under pytest-xdist: one folder for every worker's temporary directories, owned by the controller."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path

import pytest

from harness import options
from harness.processes import processes_of
from harness.waiting import WaitTimeout, eventually

SHUTDOWN_WAIT_S = 20  # a RabbitMQ node stops in 2-8 s


class WorkersRoot:
    """The parent of the xdist workers' temporary directories, made and removed by the controller.

    After Ctrl-C, pytest-xdist kills a worker that has not finished its teardown within seconds: its
    processes die with it (harness.executors) but its directories would stay. The controller outlives
    its workers and removes what they left.
    """

    def __init__(self) -> None:
        self.path: Path | None = None

    def pytest_configure_node(self, node) -> None:
        if self.path is None:
            self.path = Path(tempfile.mkdtemp(prefix="harness-workers-"))
        node.workerinput["harness_workers_root"] = str(self.path)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self.path is None:
            return
        # A killed worker's broker node and supervisord got SIGTERM with it and may still be writing their
        # logs here while they shut down: wait for them, or a removed folder would come back.
        with contextlib.suppress(WaitTimeout):
            eventually(lambda: processes_of(self.path), until=lambda left: not left, timeout=SHUTDOWN_WAIT_S,
                       what="the workers' processes to exit")  # fmt: skip
        shutil.rmtree(self.path, ignore_errors=True)
        if options.get(config, "harness_broker") in ("docker", "auto"):
            # A killed worker's broker container: labelled with the worker's pid, now dead. Asked of the engine
            # itself, not of the docker CLI being installed: a machine can reach an engine without it (the clean
            # room's root, given the host's socket); without an engine docker_client fails at once.
            from harness.brokers.containers import docker_client, remove_leftovers

            with contextlib.suppress(Exception):
                remove_leftovers(docker_client(2.0))


def workers_root(config: pytest.Config) -> str | None:
    """Where this xdist worker makes its temporary directories (None: the system's temporary folder)."""
    return getattr(config, "workerinput", {}).get("harness_workers_root")
