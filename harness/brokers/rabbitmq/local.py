"""The ``local`` provider: a private RabbitMQ node, started from the ``rabbitmq-server`` on PATH.

``--harness-rabbitmq-version 4`` runs RabbitMQ 4 the same way without Docker: from a Debian 13 root
(``scripts/build-rabbitmq-root``), with chroot, in a mount namespace of its own where ``/proc`` and
``/etc/hosts`` are mounted (so the mounts end with the node's processes, even when they are killed).

The node lives in its own temporary directory with its own config, cookie (HOME), node name and
free ports, so it never collides with a system broker, and the whole directory goes at the end.
mirakuru starts it in its own session and waits until both the AMQP listener and the management
API answer.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import uuid
from pathlib import Path

import psutil
import requests
from mirakuru.exceptions import ProcessExitedWithError, TimeoutExpired

from harness.brokers.rabbitmq.base import Endpoint, RabbitMQBroker
from harness.errors import HarnessError
from harness.executors import OwnedTCPExecutor
from harness.ports import free_ports, require_free
from harness.waiting import eventually

INSTALL_HINT = (
    "install it (Debian/Ubuntu: apt-get install -y rabbitmq-server), name one with --harness-rabbitmq-server PATH, "
    "or use another broker (--harness-broker url --harness-broker-url amqp://...)"
)
# Debian installs rabbitmq-server in /usr/sbin, which a non-root PATH often lacks.
SBIN_FALLBACK = "/usr/sbin:/usr/local/sbin"
# Debian's /usr/sbin/rabbitmq-server is a wrapper that su's to the rabbitmq user and writes its logs
# to /var/log/rabbitmq; the real script sits here and runs as whoever calls it.
DEBIAN_REAL_SBIN = Path("/usr/lib/rabbitmq/bin")


def which_server() -> str | None:
    return shutil.which("rabbitmq-server") or shutil.which("rabbitmq-server", path=SBIN_FALLBACK)


def find_server(given: str | None) -> Path:
    """The rabbitmq-server script to run (the one named, else the one on PATH)."""
    if given:
        path = Path(given)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise HarnessError(f"--harness-rabbitmq-server {given} is not an executable file; {INSTALL_HINT}")
    else:
        found = which_server()
        if found is None:
            raise HarnessError(f"rabbitmq-server was not found on PATH; {INSTALL_HINT}")
        path = Path(found)
    real = DEBIAN_REAL_SBIN / "rabbitmq-server"
    if real.exists() and "su rabbitmq" in path.read_text(errors="replace"):
        return real
    return path


VERSIONS = ("3", "4")
ROOT_HINT = "run scripts/build-rabbitmq-root (as root, about 40 s) or name a built root with HARNESS_RABBITMQ_4_ROOT"
# Inside the root: Debian's real script (its /usr/sbin one su's to the rabbitmq user).
ROOT_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"


def rabbitmq_4_root() -> Path:
    """Where scripts/build-rabbitmq-root puts the Debian 13 root (``HARNESS_RABBITMQ_4_ROOT`` overrides)."""
    given = os.environ.get("HARNESS_RABBITMQ_4_ROOT")
    if given:
        return Path(given)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "celery-failure-harness" / "rabbitmq-4-root"


def find_root(version: str) -> Path:
    """The built root for ``version`` (only 4 has one), or HarnessError saying how to build it."""
    if version not in VERSIONS:
        raise HarnessError(f"--harness-rabbitmq-version {version!r} is not one of {', '.join(VERSIONS)}")
    root = rabbitmq_4_root()
    if not (root / ".harness-complete").is_file() or not (root / ROOT_SERVER.lstrip("/")).exists():
        raise HarnessError(f"RabbitMQ {version} needs a Debian 13 root at {root}, which is not built; {ROOT_HINT}")
    if os.geteuid() != 0:
        raise HarnessError(
            "RabbitMQ 4 on the local provider runs in a chroot, which needs root; run as root or use docker"
        )
    return root


def chrooted(root: Path, argv: list[str]) -> list[str]:
    """``argv`` run inside ``root``, in a private mount namespace holding its /proc and /etc/hosts: the
    mounts go when the last process in it ends, so nothing is left mounted on the host. Each step execs
    the next, so the node's pid stays the command's pid (and its process group's leader)."""
    script = 'mount -t proc proc "$0/proc" && mount --bind /etc/hosts "$0/etc/hosts" && exec chroot "$0" "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(root), *argv]


class RabbitMQNode(OwnedTCPExecutor):
    """Ready when the AMQP port accepts connections and the management API answers."""

    def __init__(self, *args, management_url: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.management_url = management_url

    def after_start_check(self) -> bool:
        if not super().after_start_check():
            return False
        try:
            response = requests.get(f"{self.management_url}/api/overview", auth=("guest", "guest"), timeout=1)
        except requests.RequestException:
            return False
        return response.status_code == 200


class LocalBroker(RabbitMQBroker):
    kind = "local"

    @classmethod
    def from_options(cls, options) -> LocalBroker:
        return cls(
            options.rabbitmq_server, options.rabbitmq_port, options.boot_timeout, work_root=options.work_root,
            version=options.rabbitmq_version,
        )  # fmt: skip

    @classmethod
    def available(cls, options) -> bool:
        if options.rabbitmq_version != "3":
            return (rabbitmq_4_root() / ".harness-complete").is_file()
        return bool(options.rabbitmq_server or which_server())

    def __init__(
        self,
        server: str | None = None,
        port: int | None = None,
        boot_timeout: float = 90.0,
        extra_erl_args: str = "",
        work_root: str | None = None,
        version: str = "3",
    ) -> None:
        self.version = version
        self.root: Path | None = None
        if version == "3":
            self.server = find_server(server)
        else:
            if server:
                raise HarnessError(
                    "--harness-rabbitmq-server names a 3.x script; leave it out with --harness-rabbitmq-version 4"
                )
            self.root = find_root(version)
            self.server = Path(ROOT_SERVER)
            # The node sees only the root: its directory lives inside it (a 3.x data dir could not be reused anyway).
            work_root = str(self.root / "var/lib/harness-nodes")
            Path(work_root).mkdir(parents=True, exist_ok=True)
        self.ctl = self.server.with_name("rabbitmqctl")
        if port is not None:
            require_free(port, "the local RabbitMQ node", "--harness-rabbitmq-port")
        if port is None:
            port = free_ports(1)[0]
        self.port = port
        self.management_port, self.dist_port = free_ports(2, exclude=[port])
        self.nodename = f"harness-{uuid.uuid4().hex[:8]}@localhost"
        self.boot_timeout = boot_timeout
        self.extra_erl_args = extra_erl_args
        self.dir = Path(tempfile.mkdtemp(prefix="harness-rabbitmq-", dir=work_root))
        self._executor: RabbitMQNode | None = None
        self._write_config()

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint("127.0.0.1", self.port, "guest", "guest", "/", f"http://127.0.0.1:{self.management_port}")

    @property
    def pid(self) -> int | None:
        """The node's start script (the leader of the node's own process group), while it runs."""
        process = self._executor.process if self._executor is not None else None
        return process.pid if process is not None else None

    @property
    def log_path(self) -> Path:
        """The node's console output (its boot and crash messages), in the node's directory."""
        return self.dir / "stdout.log"

    def _write_config(self) -> None:
        for sub in ("mnesia", "log"):
            (self.dir / sub).mkdir()
        # The plugins file must exist before start, or the node crashes updating it.
        (self.dir / "enabled_plugins").write_text("[rabbitmq_management].\n")
        # An empty env file keeps the system's /etc/rabbitmq/rabbitmq-env.conf (node name, ports) out.
        (self.dir / "rabbitmq-env.conf").write_text("")
        (self.dir / "rabbitmq.conf").write_text(
            "\n".join(
                [
                    f"listeners.tcp.default = 127.0.0.1:{self.port}",
                    "management.tcp.ip = 127.0.0.1",
                    f"management.tcp.port = {self.management_port}",
                    # Queue counters in the management API refresh every 5 s by default; scenarios
                    # read unacknowledged counts from it, so sample faster.
                    "collect_statistics_interval = 500",
                    "log.file.level = info",
                    "",
                ]
            )
        )

    def _in_root(self, argv: list[str]) -> list[str]:
        return argv if self.root is None else chrooted(self.root, argv)

    @property
    def node_dir(self) -> Path:
        """The node's directory as the node sees it (inside the root, for version 4)."""
        return self.dir if self.root is None else Path("/") / self.dir.relative_to(self.root)

    def _environment(self) -> dict[str, str]:
        d = self.node_dir
        return {
            "HOME": str(d),  # the Erlang cookie goes here, shared with rabbitmqctl
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_PID_FILE": str(d / "node.pid"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(d / "rabbitmq-env.conf"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": self.extra_erl_args,
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    def start(self) -> None:
        self._boot()

    def _start_again(self) -> None:
        self._boot()

    def _boot(self) -> None:
        """Start the node (again): same directory, data and ports."""
        log = self.log_path.open("ab")
        self._executor = RabbitMQNode(
            self._in_root([str(self.server)]),
            host="127.0.0.1",
            port=self.port,
            management_url=self.endpoint.management_url,
            timeout=self.boot_timeout,
            sleep=0.05,
            envvars=self._environment(),
            cwd=str(self.dir),
            stdout=log,
            stderr=log,
        )
        try:
            self._executor.start()
        except ProcessExitedWithError as exc:
            self._executor = None
            raise HarnessError(self._boot_failure(exc.exit_code)) from None
        except TimeoutExpired:
            self._executor = None
            raise HarnessError(
                f"the local RabbitMQ node did not answer on port {self.port} within {self.boot_timeout:.0f}s; "
                f"last log line: {self._log_tail(1) or '(none)'}"
            ) from None
        except BaseException:  # Ctrl-C during the boot: the half-started node is still ours to stop
            self._executor.kill()
            self._executor = None
            raise
        finally:
            log.close()

    def _log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:] if line.strip())

    def _boot_failure(self, code: int) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        listener = re.search(r"could_not_start_listener,\"([^\"]+)\",(\d+)", text)
        if listener and "eaddrinuse" in text:
            return (
                f"the local RabbitMQ node could not listen on {listener[1]}:{listener[2]}: the port is already "
                "in use; free it or let the harness pick a port (leave --harness-rabbitmq-port out)"
            )
        return (
            f"rabbitmq-server ({self.server}) exited during boot with code {code}; "
            f"its log ends: {self._log_tail(3) or '(empty)'}"
        )

    def _stop(self) -> None:
        """Stop the node, keeping its data directory (for broker-restart scenarios)."""
        self._quick_stop_prepare()
        if self._executor is not None:
            # RabbitMQ shuts down cleanly on SIGTERM; mirakuru SIGKILLs the group if it hangs.
            self._executor.stop(expected_returncode=0)
            self._executor = None

    def rabbitmqctl(self, *args: str) -> str:
        env = {**os.environ, **self._environment()}
        command = self._in_root([str(self.ctl), "-n", self.nodename, *args])
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise HarnessError(f"rabbitmqctl {' '.join(args)} failed: {done.stderr.strip() or done.stdout.strip()}")
        return done.stdout

    def _pause(self) -> None:
        """SIGSTOP the node's process group: its sockets stay open, nothing answers. Checked: a fault that
        was not injected must not pass for one."""
        group = self._group()
        os.killpg(group, signal.SIGSTOP)
        eventually(
            lambda: all(p.status() == psutil.STATUS_STOPPED for p in self._members(group)), timeout=5,
            interval=0.02, what="every process of the RabbitMQ node to be stopped (SIGSTOP)",
        )  # fmt: skip

    def _resume(self) -> None:
        os.killpg(self._group(), signal.SIGCONT)

    def _group(self) -> int:
        if self.pid is None:
            raise HarnessError("the local RabbitMQ node is not running (stopped, and not started again)")
        return os.getpgid(self.pid)

    @staticmethod
    def _members(group: int) -> list[psutil.Process]:
        members = []
        for process in psutil.process_iter(["pid"]):
            try:
                if os.getpgid(process.pid) == group and process.status() != psutil.STATUS_ZOMBIE:
                    members.append(process)
            except (ProcessLookupError, psutil.Error):
                continue
        return members

    def close(self) -> None:
        try:
            if self._executor is not None:
                # The data is about to be deleted, so skip the graceful stop (about 6 s) and kill.
                self._executor.kill()
                self._executor = None
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
