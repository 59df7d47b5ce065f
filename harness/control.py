"""The broker controls of a stack that ``harness up`` keeps up: ``python -m harness ctl broker ACTION``.

The ``up`` process owns the broker: it started it, a server it restarts must stay its child (a local broker dies
with the thread that started it), and it closes it at the end. So ``ctl`` does not act on the broker itself: it
asks ``up`` over a unix socket (``control_socket`` in the state file), and ``up`` runs the broker's own fault
calls (``stop_broker``, ``start_broker``, ``pause_broker``...) on its main thread, between two status lines, as a
scenario would. The fault bus hears them, so the ledger and the timeline follow as in a scenario.

Actions on both families: ``stop [HOW]``, ``start``, ``restart [HOW]``, ``freeze``, ``thaw``. RabbitMQ's own:
``alarm memory|disk on|off``, ``rabbitmqctl ARGS...``; Redis's own: ``persistence MODE``, ``kill-connections``.
An action of the other family, or any action on a broker the harness did not start (``url``), is refused in one
sentence.
"""

from __future__ import annotations

import json
import os
import socket
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from harness.brokers.base import BrokerNotOwned
from harness.errors import HarnessError

# action -> (the families it is offered on, its arguments, what it does)
ACTIONS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "stop": (("rabbitmq", "redis"), "[HOW]", "stop the broker, keeping its port and data; HOW: see STOPS"),
    "start": (("rabbitmq", "redis"), "", "start the stopped broker again, same port and data"),
    "restart": (("rabbitmq", "redis"), "[HOW]", "stop, then start"),
    "freeze": (("rabbitmq", "redis"), "", "freeze the broker: connections stay open, nothing answers"),
    "thaw": (("rabbitmq", "redis"), "", "let a frozen broker answer again"),
    "alarm": (("rabbitmq",), "memory|disk on|off", "RabbitMQ's resource alarm: publishers blocked"),
    "rabbitmqctl": (("rabbitmq",), "ARGS...", "run rabbitmqctl against the broker's node"),
    "persistence": (("redis",), "MODE", "how Redis keeps its data across a crash: off, rdb, aof-everysec, aof-always"),
    "kill-connections": (("redis",), "", "CLIENT KILL every connection of the stack's programs"),
}
PRODUCT = {"rabbitmq": "RabbitMQ", "redis": "Redis"}
# How each family stops (the first is the default): the broker's own STOP_KINDS.
STOPS = {
    "rabbitmq": "node|app: the whole node, or only the RabbitMQ application in it, faster",
    "redis": "crash|shutdown: a SIGKILL, keeping what persistence wrote, or Redis's SHUTDOWN (a snapshot if on)",
}
ANSWER_TIMEOUT_S = 180.0  # a RabbitMQ node's stop and start take seconds; a wait inside them, up to a minute


class BrokerControls:
    """Runs the actions on the broker ``up`` owns; ``space`` is the stack's (``kill-connections`` cuts the
    connections of its database only)."""

    def __init__(self, broker: Any, space: Any) -> None:
        self.broker = broker
        self.space = space
        self.frozen = False
        self._alarms: dict[str, ExitStack] = {}

    def run(self, action: str, args: list[str]) -> str:
        broker = self.broker
        if action not in ACTIONS:
            raise HarnessError(f"ctl broker {action!r} is not one of {', '.join(ACTIONS)}")
        families = ACTIONS[action][0]
        if broker.transport not in families:
            raise HarnessError(
                f"ctl broker {action} acts on {' and '.join(PRODUCT[f] for f in families)}; this stack runs on "
                f"{PRODUCT.get(broker.transport, broker.transport)}"
            )
        if not broker.owned:
            raise HarnessError(
                f"the {broker.kind} broker is not the harness's to {action} (it did not start it); start the stack "
                "with --harness-broker local or docker for the broker controls"
            )
        if self.frozen and action not in ("thaw", "persistence", "kill-connections", "alarm", "rabbitmqctl"):
            raise HarnessError(f"the broker is frozen: ctl broker thaw first, then {action}")
        started = time.monotonic()
        try:
            said = getattr(self, "_" + action.replace("-", "_"))(*args)
        except TypeError as exc:
            if "positional argument" not in str(exc):
                raise
            raise HarnessError(f"ctl broker {action} takes {ACTIONS[action][1] or 'no argument'}") from None
        except BrokerNotOwned as exc:
            raise HarnessError(str(exc)) from None
        return f"broker: {said} ({time.monotonic() - started:.1f} s)"

    def _how(self, how: str | None) -> str:
        kinds = self.broker.STOP_KINDS
        how = how or getattr(self.broker, "DEFAULT_STOP", kinds[0])
        if how not in kinds:
            raise HarnessError(f"a {self.broker.product} stop is one of {', '.join(kinds)}, not {how!r}")
        return how

    def _stop(self, how: str | None = None) -> str:
        if self.broker._stopped_how is not None:
            raise HarnessError("the broker is already stopped: ctl broker start")
        how = self._how(how)
        self.broker.stop_broker(how)
        return f"stopped ({how})"

    def _start(self) -> str:
        if self.broker._stopped_how is None:
            raise HarnessError("the broker is not stopped: ctl broker stop first (or restart)")
        self.broker.start_broker()
        return "started"

    def _restart(self, how: str | None = None) -> str:
        self._stop(how)
        self._start()
        return f"restarted ({self._how(how)})"

    def _freeze(self) -> str:
        if self.broker._stopped_how is not None:
            raise HarnessError("the broker is stopped: there is nothing to freeze")
        self.broker.pause_broker()
        self.frozen = True
        return "frozen: connections stay open, nothing answers; ctl broker thaw ends it"

    def _thaw(self) -> str:
        if not self.frozen:
            raise HarnessError("the broker is not frozen")
        self.broker.resume_broker()
        self.frozen = False
        return "thawed"

    def _alarm(self, resource: str, on_off: str) -> str:
        if resource not in ("memory", "disk") or on_off not in ("on", "off"):
            raise HarnessError("ctl broker alarm takes memory or disk, then on or off")
        if on_off == "on":
            if resource in self._alarms:
                raise HarnessError(f"the {resource} alarm is on already")
            stack = ExitStack()
            stack.enter_context(getattr(self.broker, f"{resource}_alarm")())
            self._alarms[resource] = stack
            return f"{resource} alarm on: publishers are blocked"
        if resource not in self._alarms:
            raise HarnessError(f"the {resource} alarm is not on")
        self._alarms.pop(resource).close()
        return f"{resource} alarm off"

    def _rabbitmqctl(self, *args: str) -> str:
        if not args:
            raise HarnessError("ctl broker rabbitmqctl takes rabbitmqctl's arguments, e.g. list_queues -p VHOST")
        return "rabbitmqctl said:\n" + self.broker.rabbitmqctl(*args).rstrip()

    def _persistence(self, mode: str) -> str:
        self.broker.persistence(mode)
        return f"persistence {mode}"

    def _kill_connections(self) -> str:
        killed = self.broker.kill_connections(db=getattr(self.space, "db", None))
        return f"{killed} connection(s) of the stack's programs killed (CLIENT KILL)"

    def close(self) -> None:
        """Undo what would outlive ``up``'s own teardown: an alarm left on, a frozen broker (it must stop)."""
        for stack in self._alarms.values():
            try:
                stack.close()
            except Exception:  # the broker is going down with the stack anyway
                pass
        self._alarms.clear()
        if self.frozen:
            try:
                self.broker.resume_broker()
            except Exception:  # closed below regardless
                pass
            self.frozen = False


def socket_path(work_root: Path) -> Path:
    """Where ``up`` listens: in its work folder, unless that path is too long for a unix socket (107 bytes)."""
    path = work_root / "ctl.sock"
    if len(str(path)) > 100:
        import tempfile

        path = Path(tempfile.mkdtemp(prefix="hsv-", dir="/tmp")) / "ctl.sock"
    return path


class ControlServer:
    """``up``'s end: a unix socket, answered one request at a time on the caller's thread (``serve``)."""

    def __init__(self, path: Path, controls: BrokerControls) -> None:
        self.path = path
        self.controls = controls
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._socket.bind(str(path))
        os.chmod(path, 0o600)
        self._socket.listen(4)

    def serve(self, timeout: float) -> str | None:
        """Wait up to ``timeout`` seconds for one request and answer it; returns the action done (None: none
        came, or it failed)."""
        self._socket.settimeout(timeout)
        try:
            connection, _ = self._socket.accept()
        except TimeoutError:
            return None
        with connection:
            connection.settimeout(5.0)
            try:
                request = json.loads(_read_line(connection))
                action, args = str(request["action"]), [str(a) for a in request.get("args", [])]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                _send(connection, {"ok": False, "said": f"a malformed request ({type(exc).__name__})"})
                return None
            try:
                reply = {"ok": True, "said": self.controls.run(action, args)}
            except HarnessError as error:
                reply = {"ok": False, "said": str(error)}
            except Exception as exc:  # the broker's own failure: said, and up keeps running
                reply = {"ok": False, "said": f"ctl broker {action} failed: {type(exc).__name__}: {exc}".strip()}
            try:
                _send(connection, reply)
            except OSError:  # ctl went away (Ctrl-C): the action is done all the same
                pass
            return action if reply["ok"] else None

    def close(self) -> None:
        self._socket.close()
        self.path.unlink(missing_ok=True)
        if self.path.parent.name.startswith("hsv-"):
            try:
                self.path.parent.rmdir()
            except OSError:
                pass


def _read_line(connection: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = connection.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _send(connection: socket.socket, reply: dict) -> None:
    connection.sendall(json.dumps(reply).encode() + b"\n")


def ask(path: str | None, action: str, args: list[str], timeout: float = ANSWER_TIMEOUT_S) -> str:
    """``ctl``'s end: ask the ``up`` listening on ``path`` to run ``action``; returns what it said, or raises
    its refusal (one sentence)."""
    if not path:
        raise HarnessError(
            "the broker controls are python -m harness up's; this stack was kept up by pytest (--keep-on-failure), "
            "whose scenario owns its broker"
        )
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(timeout)
        try:
            connection.connect(path)
            _send(connection, {"action": action, "args": args})
            answer = _read_line(connection)
        except (FileNotFoundError, ConnectionRefusedError):
            raise HarnessError(
                f"harness up does not answer on {path}; is the stack still up? (python -m harness down cleans up "
                "after one that died)"
            ) from None
        except TimeoutError:
            raise HarnessError(f"harness up did not answer ctl broker {action} within {timeout:.0f}s") from None
    if not answer:
        raise HarnessError(f"harness up ended before answering ctl broker {action}")
    reply = json.loads(answer)
    if not reply["ok"]:
        raise HarnessError(reply["said"])
    return reply["said"]
