"""Which live processes belong to a folder: those that name it in their command line or environment."""

from __future__ import annotations

import os
from pathlib import Path

import psutil


def _mentions(text: str, folder: str) -> bool:
    return text == folder or f"{folder}/" in text


def processes_of(folder: Path) -> list[str]:
    """Live processes that name ``folder`` (the run's TMPDIR) anywhere they can be asked about."""
    mark = str(folder)
    found = []
    for process in psutil.process_iter(["pid", "cmdline", "status"]):
        if process.info["pid"] == os.getpid() or process.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            cmdline = process.info["cmdline"] or []
            if any(_mentions(arg, mark) for arg in cmdline) or any(
                _mentions(value, mark) for value in process.environ().values()
            ):
                found.append(f"process {process.info['pid']}: {' '.join(cmdline)[:160]}")
        except (psutil.Error, OSError):
            continue
    return found
