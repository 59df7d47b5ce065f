"""Which live processes belong to a folder (those that name it in their command line or environment), and
how to interrupt a pytest run so that it tears down as after a terminal's Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import psutil


def _mentions(text: str, folder: str) -> bool:
    return text == folder or f"{folder}/" in text


def live_processes_of(folder: Path | str) -> list[psutil.Process]:
    """Live processes that name ``folder`` (a run's TMPDIR, a stack's directory) anywhere they can be asked
    about: their command line or their environment."""
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
                found.append(process)
        except (psutil.Error, OSError):
            continue
    return found


def processes_of(folder: Path | str) -> list[str]:
    """``live_processes_of``, each described in a line."""
    return [f"process {p.pid}: {' '.join(p.info['cmdline'] or [])[:160]}" for p in live_processes_of(folder)]


def interrupt(process: subprocess.Popen, timeout: float) -> None:
    """One SIGTERM to a pytest run, which the harness's plugin turns into its Ctrl-C (its tear-down removes what it
    started), then wait for it; killed if its tear-down takes longer than ``timeout``. Not SIGINT: a process started
    from a background job (``cmd &`` in a script, ``nohup``) ignores SIGINT, and its children inherit that."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
