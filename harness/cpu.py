"""CPU-seconds a command spends, by the kind of process that spent them (``python -m harness.bench --cpu``).

The command runs in a control group of its own, with a child group per kind of process (broker nodes, the
broker's command-line tools, supervisord, workers, web apps, pytest processes, other). A sorter moves each new
process into its kind's group within ``TICK_S`` of its start (or of its ``exec``), and the children a process
forks afterwards are born in its group. The kernel charges CPU time to the group a process is in when it runs,
so each group's counter is exact from the move on, and the groups' sum is every CPU-second of the command and
of every process it started, daemons reparented to init included. What a process spends before it is sorted
stays in the group of its parent (a fork not yet ``exec``'d is its parent's kind anyway).

Written by hand: psutil samples processes (a process that lives less than a sample is lost, and the RabbitMQ
CLI's short runs cost seconds each), and ``getrusage(RUSAGE_CHILDREN)`` counts only children that were waited
for, as one figure. Control groups need root (cgroup v1's ``cpuacct`` or cgroup v2), which is asked for in one
sentence when missing.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import HarnessError

TICK_S = 0.05  # how soon a new process is sorted: what it spends before stays with its parent's kind
V1_ROOT = Path("/sys/fs/cgroup/cpuacct")
V2_ROOT = Path("/sys/fs/cgroup")

# Kinds, in the order they are reported; the first whose test matches a process's command line wins.
BROKER_TOOLS = ("rabbitmqctl", "rabbitmq-plugins", "rabbitmq-diagnostics", "rabbitmq-queues", "redis-cli")
BROKER = (
    "beam.smp", "erl_child_setup", "epmd", "inet_gethost", "rabbit_disk_monitor", "rabbitmq-server", "redis-server",
    "/erl ",
)  # fmt: skip
KINDS = ("broker", "broker tools", "supervisord", "worker", "web", "pytest", "other")


def kind_of(argv: Sequence[str]) -> str:
    """The kind of process a command line is (one of ``KINDS``); the launcher's programs by their role."""
    line = " ".join(argv)
    if any(tool in line for tool in BROKER_TOOLS):
        return "broker tools"
    if any(part in f"{line} " for part in BROKER):
        return "broker"
    if "supervisord" in line or "supervisorctl" in line:
        return "supervisord"
    if "harness.launcher" in line or "/launcher/" in line:
        return _launcher_role(argv)
    if "pytest" in line or "execnet" in line or "exec(eval(" in line:  # the run, and pytest-xdist's workers
        return "pytest"
    return "other"


def _launcher_role(argv: Sequence[str]) -> str:
    """A launched program's role, from its configuration file (``--config FILE``, written by the stack)."""
    try:
        config = json.loads(Path(argv[list(argv).index("--config") + 1]).read_text())
    except (ValueError, IndexError, OSError):
        return "other"
    return "worker" if config.get("role") == "worker" else "web"


def _argv(pid: str) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None  # gone
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


@dataclass
class Hierarchy:
    """Where control groups are made, and how their CPU counter is read (cgroup v1 ``cpuacct`` or v2)."""

    root: Path
    version: int

    @classmethod
    def find(cls) -> Hierarchy:
        if (V1_ROOT / "cpuacct.usage").exists() and os.access(V1_ROOT, os.W_OK):
            return cls(V1_ROOT, 1)
        if (V2_ROOT / "cgroup.controllers").exists() and os.access(V2_ROOT, os.W_OK):
            return cls(V2_ROOT, 2)
        raise HarnessError(
            "--cpu needs a control group it can create (cgroup v1's cpuacct or cgroup v2, writable: run as root "
            "or in a delegated cgroup); without one, CPU-seconds by process kind cannot be measured exactly"
        )

    def seconds(self, group: Path) -> float:
        if self.version == 1:
            return int((group / "cpuacct.usage").read_text()) / 1e9
        for line in (group / "cpu.stat").read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == "usage_usec":
                return int(value) / 1e6
        return 0.0


@dataclass
class CpuAccount:
    """A command's CPU-seconds by kind: ``with CpuAccount() as account: account.run([...])``, then
    ``account.by_kind()``. Groups are removed on leaving (a process still in one is moved out first)."""

    hierarchy: Hierarchy = field(default_factory=Hierarchy.find)
    name: str = field(default_factory=lambda: f"harness-cpu-{uuid.uuid4().hex[:8]}")
    _stop: threading.Event = field(default_factory=threading.Event)
    _sorter: threading.Thread | None = None
    _final: dict[str, float] = field(default_factory=dict)

    @property
    def top(self) -> Path:
        return self.hierarchy.root / self.name

    def group(self, kind: str) -> Path:
        return self.top / kind.replace(" ", "-")

    def __enter__(self) -> CpuAccount:
        for kind in KINDS:
            self.group(kind).mkdir(parents=True, exist_ok=True)
        self._sorter = threading.Thread(target=self._sort_forever, name="cpu-sorter", daemon=True)
        self._sorter.start()
        return self

    def run(self, command: Sequence[str], **kwargs) -> subprocess.CompletedProcess:
        """Run ``command`` (as ``subprocess.run``) inside the account: it starts in the ``other`` group and is
        sorted like every process it starts."""
        procs = self.group("other") / "cgroup.procs"
        return subprocess.run(command, preexec_fn=lambda: procs.write_text(str(os.getpid())), **kwargs)

    def by_kind(self) -> dict[str, float]:
        """CPU-seconds per kind so far (after leaving: at the end)."""
        if self._final:
            return dict(self._final)
        return {kind: self.hierarchy.seconds(self.group(kind)) for kind in KINDS}

    def _sort_forever(self) -> None:
        while not self._stop.wait(TICK_S):
            self.sort_once()

    def sort_once(self) -> None:
        """Move every process into its kind's group (re-read each tick: ``exec`` changes a command line)."""
        for kind in KINDS:
            try:
                pids = (self.group(kind) / "cgroup.procs").read_text().split()
            except OSError:
                return
            for pid in pids:
                argv = _argv(pid)
                if argv is None:
                    continue
                wanted = kind_of(argv)
                if wanted != kind:
                    try:
                        (self.group(wanted) / "cgroup.procs").write_text(pid)
                    except OSError:
                        pass  # it exited meanwhile

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._sorter is not None:
            self._sorter.join()
        self._final = {kind: self.hierarchy.seconds(self.group(kind)) for kind in KINDS}
        for kind in KINDS:
            procs = self.group(kind) / "cgroup.procs"
            for pid in procs.read_text().split() if procs.exists() else ():
                try:  # a process left running (not the harness's way) must not keep the group alive
                    (self.hierarchy.root / "cgroup.procs").write_text(pid)
                except OSError:
                    pass
            try:
                self.group(kind).rmdir()
            except OSError:
                pass
        try:
            self.top.rmdir()
        except OSError:
            pass
