"""What a run left behind, found by the private TMPDIR it was given (shared by test_up and test_keep).

Every temporary directory the harness makes lands in the run's TMPDIR, and every process it starts
inherits it in its environment (a broker node names it in its command line too), so a process of the run
is one whose command line, working directory or environment mentions that directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import psutil


def mentions(text: str, folder: Path) -> bool:
    return text == str(folder) or f"{folder}/" in text


def belongs(proc: psutil.Process, folder: Path) -> bool:
    if any(mentions(arg, folder) for arg in proc.cmdline()):
        return True
    try:
        if mentions(proc.cwd(), folder):
            return True
    except (psutil.AccessDenied, FileNotFoundError):
        pass
    try:
        return any(mentions(value, folder) for value in proc.environ().values())
    except psutil.AccessDenied:
        return False


def survivors(folder: Path) -> list[psutil.Process]:
    """Live processes of the run (other than this one)."""
    found = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and belongs(proc, folder):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue
    return found


def describe(proc: psutil.Process) -> str:
    try:
        return f"pid {proc.pid}: {' '.join(proc.cmdline())[:240]}"
    except psutil.Error as exc:
        return f"pid {proc.pid}: ({type(exc).__name__})"


def kill(processes: list[psutil.Process]) -> None:
    """A test's own cleanup: never let a leak it found outlive it."""
    for proc in processes:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
