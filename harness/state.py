"""Where a stack that stays up can be found: a small JSON file, so ``harness ctl`` and ``harness down`` reach it.

``harness up`` writes it once its stack is ready, and so does a scenario kept up by ``--keep-on-failure``;
both remove it when they tear the stack down. It holds what the screen shows (the page, the broker family and
the stack's space on it: a RabbitMQ vhost and its management UI, or a Redis database) and what the commands
need (supervisord's config and socket, the space's URL, the ``up`` process's control socket for the broker
faults, the journal, the pids to clean up after an owner that died). A file written before Redis existed (no
``transport``, an ``amqp_url``) reads as RabbitMQ. By default it is ``.harness-up.json`` in the folder the stack
was started from; ``--state PATH`` or the environment variable ``HARNESS_STATE`` name another.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from harness.brokers.base import Broker
from harness.errors import HarnessError
from harness.stack import AppStack

FILENAME = ".harness-up.json"
ENV = "HARNESS_STATE"


def default_path(folder: Path | None = None) -> Path:
    given = os.environ.get(ENV)
    return Path(given) if given else (folder or Path.cwd()) / FILENAME


STATE_HELP = "the stack's state file (default: .harness-up.json in this folder, or $HARNESS_STATE)"


def path_for(given: Path | str | None, folder: Path | None = None) -> Path:
    return Path(given) if given else default_path(folder)


def pid_alive(pid: int | None) -> bool:
    """The process runs (a zombie, exited but not yet reaped by its parent, does not)."""
    if not pid:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


@dataclass
class StackState:
    owner: str  # "up" (harness up), or "pytest" (a failed scenario kept by --keep-on-failure)
    pid: int  # the owner's pid: it tears the stack down
    label: str  # "harness up", or the scenario's node id
    workdir: str  # the scenario directory: supervisord's config and logs, the journal, the programs' configs
    supervisor_conf: str
    supervisor_socket: str
    journal_dir: str
    programs: dict[str, str]  # name -> role ("worker", "beat" or "web")
    broker_kind: str
    url: str  # the stack's space (a RabbitMQ vhost, a Redis database), as a broker URL with credentials
    vhost: str  # the space's name: the vhost, or "db 7"
    user: str | None
    password: str | None
    management_url: str | None
    web_url: str | None = None
    web_ready_path: str | None = None
    ready_timeout: float = 7.0
    queues: list[str] = field(default_factory=list)  # the app's declared queues (used without a management API)
    routed_queues: list[str] = field(default_factory=list)  # the queues its tasks go to: each needs a consumer
    deploys: dict[str, list[str]] = field(default_factory=dict)
    # For cleaning up after an owner that died without doing it (``harness down``).
    work_root: str | None = None
    supervisord_pid: int | None = None
    broker_pid: int | None = None
    started: float = field(default_factory=time.time)
    transport: str = "rabbitmq"  # the broker family (harness.brokers.TRANSPORTS)
    # Where the owner (``harness up``) takes the broker controls (``ctl broker ...``); None: not offered.
    control_socket: str | None = None

    @classmethod
    def of(
        cls, owner: str, label: str, stack: AppStack, broker: Broker, queues: tuple[str, ...] = (),
        work_root: Path | None = None,
    ) -> StackState:  # fmt: skip
        endpoint = broker.endpoint
        roles = {name: "worker" for name in stack.workers} | {name: "beat" for name in stack.beats}
        if stack.spec.web is not None:
            roles[stack.spec.web.name] = "web"
        return cls(
            owner=owner,
            pid=os.getpid(),
            label=label,
            workdir=str(stack.workdir),
            supervisor_conf=str(stack.supervisor.config_path),
            supervisor_socket=str(stack.supervisor.socket),
            journal_dir=str(stack.journal_dir),
            programs=roles,
            broker_kind=broker.kind,
            url=stack.vhost.url,
            vhost=stack.vhost.name,
            user=endpoint.user,
            password=endpoint.password,
            management_url=endpoint.management_url if getattr(broker, "management", None) is not None else None,
            web_url=stack.web.base_url if stack.web is not None else None,
            web_ready_path=stack.spec.web.ready_path if stack.spec.web is not None else None,
            ready_timeout=stack.ready_timeout,
            queues=list(queues),
            deploys={name: list(args) for name, args in stack.spec.deploys.items() if name in roles},
            work_root=str(work_root) if work_root else None,
            supervisord_pid=stack.supervisor.pid,
            broker_pid=getattr(broker, "pid", None) if broker.owned else None,
            transport=broker.transport,
        )

    @property
    def alive(self) -> bool:
        return pid_alive(self.pid)

    def write(self, path: Path) -> None:
        """Write atomically: a reader never sees half a file."""
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(dataclasses.asdict(self), indent=1) + "\n")
        temporary.replace(path)

    @classmethod
    def read(cls, path: Path) -> StackState:
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except FileNotFoundError:
            raise HarnessError(
                f"no stack is up here ({path} does not exist): start one with python -m harness up, or give the "
                f"--state file (or {ENV}) of the one you mean"
            ) from None
        except (OSError, ValueError) as exc:
            raise HarnessError(f"{path} cannot be read ({exc}); remove it if no stack is up") from None
        if "url" not in data and "amqp_url" in data:  # written before Redis: a RabbitMQ stack
            data["url"] = data["amqp_url"]
        known = {f.name for f in dataclasses.fields(cls)}
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in data and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]  # fmt: skip
        if missing:
            raise HarnessError(f"{path} lacks {', '.join(missing)}; remove it if no stack is up")
        return cls(**{key: value for key, value in data.items() if key in known})

    @classmethod
    def read_if_any(cls, path: Path) -> StackState | None:
        return cls.read(path) if path.exists() else None
