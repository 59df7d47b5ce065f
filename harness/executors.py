"""mirakuru executors for the processes a run owns: a tag no other process can match, and a process
that dies with its owner.

The tag: mirakuru marks every process it starts with an environment variable (`mirakuru_uuid`,
inherited by children: supervisord's programs, a node's Erlang VM) and, when *any* Python process that
imported mirakuru exits, SIGKILLs every process whose tag *contains* that exiting process's pid as a
substring (`mirakuru.base.cleanup_subprocesses`; `processes_with_env` matches with `in`). The default
tag is "<pid>:<uuid4>", full of digits, so a short-lived process of another run (an xdist worker, a
`harness ctl` call, a neighbour's pytest) whose pid happens to appear in it kills this run's broker or
workers. A tag without digits never contains a pid; mirakuru's own stop (which looks the tag up whole)
still finds every child. mirakuru has no option for this, hence the private attribute.

Dying with the owner: an owner that is SIGKILLed runs no teardown (pytest-xdist kills a worker that
has not finished its teardown 10 s after Ctrl-C; CI runners kill jobs), so the process is started with
the kernel's parent-death signal (Linux ``PR_SET_PDEATHSIG``): SIGTERM, on which RabbitMQ and supervisord
both shut down cleanly, when the thread that started it ends. Set only from the main thread, which
lives as long as the owner (a worker thread's end would stop the process too early).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import secrets
import signal
import string
import sys
import threading
from typing import Any

from mirakuru import TCPExecutor
from mirakuru.unixsocket import UnixSocketExecutor  # mirakuru 3.0.x (the newest on Python 3.10) does not export it

_LETTERS = string.ascii_lowercase
_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True) if sys.platform == "linux" else None


def _new_session_dying_with(owner: int) -> None:
    """Runs in the child between fork and exec: what mirakuru does (a session of its own), plus the
    parent-death signal; if the owner already died before that was set, stop here."""
    os.setsid()
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != owner:
            os._exit(1)


class OwnedProcess:
    """Mixin for a mirakuru executor class: a digit-free tag, and death with its owner."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._uuid = "celery-failure-harness-" + "".join(secrets.choice(_LETTERS) for _ in range(24))

    @property
    def _popen_kwargs(self) -> dict[str, Any]:
        kwargs = super()._popen_kwargs  # type: ignore[misc]
        if _libc is not None and threading.current_thread() is threading.main_thread():
            owner = os.getpid()
            kwargs["preexec_fn"] = lambda: _new_session_dying_with(owner)
        return kwargs


class OwnedTCPExecutor(OwnedProcess, TCPExecutor):
    """A TCPExecutor whose process is the run's own (see the module docstring)."""


class OwnedUnixSocketExecutor(OwnedProcess, UnixSocketExecutor):
    """A UnixSocketExecutor whose process is the run's own (see the module docstring)."""
