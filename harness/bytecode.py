"""Compiled Python for the run's processes, where ``PYTHONDONTWRITEBYTECODE`` would have every process compile
the harness's and the app's modules again.

Docker images and some CI machines set ``PYTHONDONTWRITEBYTECODE=1``. Then each program a scenario starts
compiles the launcher and the app from source, and each pytest process the harness (and pytest rewrites its
assertions again), at every start: about 0.05 CPU-seconds per program start, measured on the launcher's imports
with the demo app (``/usr/bin/time``, with and without a cache). So the run's first process gives itself and
every process it starts a bytecode cache of the harness's own (``PYTHONPYCACHEPREFIX``, in the user's cache
folder): the user's tree still gets no ``__pycache__``. Python checks each cached file against its source's time
and size, as it does in ``__pycache__``; files whose source is gone (a temporary folder's) are pruned by a run
at most once a day (``PRUNE_EVERY_S``: a walk of the cache cost 0.08 s, which every run would pay for a little
less litter).

Nothing changes where bytecode is written anyway (no ``PYTHONDONTWRITEBYTECODE``) or where the user chose a
prefix of their own (``PYTHONPYCACHEPREFIX``).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

PRUNE_EVERY_S = 24 * 3600
PRUNED_STAMP = ".pruned"  # in the cache folder: its modification time is the last prune's


def cache_folder() -> Path:
    """``$XDG_CACHE_HOME`` (else ``~/.cache``)/celery-failure-harness/pycache."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "celery-failure-harness" / "pycache"


@dataclass
class RunBytecodeCache:
    """The cache as this run uses it; ``close()`` gives the environment back at the run's end."""

    folder: Path
    dont_write: str

    def close(self) -> None:
        if os.environ.get("PYTHONPYCACHEPREFIX") == str(self.folder):
            del os.environ["PYTHONPYCACHEPREFIX"]
            os.environ["PYTHONDONTWRITEBYTECODE"] = self.dont_write
        if sys.pycache_prefix == str(self.folder):
            sys.pycache_prefix = None
            sys.dont_write_bytecode = True


def prune(folder: Path) -> int:
    """Remove cached files whose source is gone; returns how many. A cached ``X/__name__.cpython-311.pyc``
    (pytest's rewritten ones have a longer tag) stands for the source ``/X/__name__.py``."""
    removed = 0
    for cached in folder.rglob("*.pyc"):
        source = Path("/") / cached.parent.relative_to(folder) / f"{cached.name.split('.', 1)[0]}.py"
        if not source.exists():
            cached.unlink(missing_ok=True)
            removed += 1
    return removed


def cache_for_run(folder: Path | None = None) -> RunBytecodeCache | None:
    """When ``PYTHONDONTWRITEBYTECODE`` is set and no prefix is: the harness's bytecode cache for this process
    and every process it starts from now on (returned, for ``close()`` at the run's end); else None."""
    dont_write = os.environ.get("PYTHONDONTWRITEBYTECODE")
    if not dont_write or os.environ.get("PYTHONPYCACHEPREFIX"):
        return None
    folder = folder or cache_folder()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        stamp = folder / PRUNED_STAMP
        if not stamp.exists() or time.time() - stamp.stat().st_mtime > PRUNE_EVERY_S:
            prune(folder)
            stamp.touch()
    except OSError:  # a read-only home: compile as before
        return None
    os.environ["PYTHONPYCACHEPREFIX"] = str(folder)
    del os.environ["PYTHONDONTWRITEBYTECODE"]
    sys.pycache_prefix = str(folder)  # this process too, for what it imports from now on
    sys.dont_write_bytecode = False
    return RunBytecodeCache(folder, dont_write)
