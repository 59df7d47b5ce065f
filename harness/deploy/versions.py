"""The two versions a deploy check compares, each read by ``python -m harness.introspect`` in a process of
its own (two versions of an app never share an interpreter: their modules have the same names).

- the new version: the working tree as it is (uncommitted changes included), or another app path in it;
- the base version: an app path in the same tree (``--base-app``), or the app at a git ref (``--base``),
  whose tree is written to a temporary folder with ``git archive`` (no worktree to register or prune)
  and put first on the import path of every process that runs it. If the working folder is a
  subfolder of the repository, the base's is the same subfolder of the archive.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

# A URL no broker answers at: apps that insist on a broker URL at import get one while being read.
INTROSPECTION_BROKER = "amqp://guest:guest@127.0.0.1:1/harness-introspection"
GIT_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Version:
    """One version of the app: where it imports from, and what it declares."""

    label: str  # "HEAD~1 (3f2a1c9)", "working tree"
    celery_app: str
    root: str  # the folder it imports from (first on sys.path of every process that runs it)
    info: dict[str, Any] = field(compare=False, repr=False)

    @property
    def tasks(self) -> dict[str, Any]:
        return self.info.get("tasks") or {}

    @property
    def queues(self) -> tuple[str, ...]:
        return tuple(self.info.get("queues") or ())

    def describe(self) -> dict[str, Any]:
        return {"label": self.label, "celery_app": self.celery_app, "root": self.root, "tasks": sorted(self.tasks)}


def introspect(
    celery_app: str, root: str, where: str, run_from: str | Path | None = None, timeout: float = 30.0
) -> dict[str, Any]:
    """What the app at ``root`` declares, read with ``root`` first on the import path. ``run_from``: the
    process's folder (a base version's is an empty one, so that nothing of the folder the check was
    started in can stand in for a module the version lacks)."""
    env = {**os.environ, "CELERY_BROKER_URL": INTROSPECTION_BROKER}
    command = [sys.executable, "-m", "harness.introspect", "--celery-app", celery_app, "--path", root]
    try:
        done = subprocess.run(command, cwd=run_from or root, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise HarnessError(
            f"{where}, --celery-app {celery_app} took more than {timeout:.0f}s to import; does it connect at import?"
        ) from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        why = next((line.split(": ", 1)[1] for line in lines if line.startswith("HarnessLaunchError:")), None)
        raise HarnessError(f"{where}, {why or f'--celery-app {celery_app} could not be read: ' + lines[-1]}")
    info = json.loads(done.stdout)
    if not info.get("tasks"):
        raise HarnessError(
            f"{where}, --celery-app {celery_app} registers no tasks (Celery's own aside): import its task modules "
            "from the app (include=[...] or app.autodiscover_tasks()), or point at the app that has them"
        )
    return info


def working_tree(celery_app: str, cwd: str | Path) -> Version:
    root = str(Path(cwd).resolve())
    return Version("working tree", celery_app, root, introspect(celery_app, root, "in the working tree"))


def _git(cwd: str | Path, *args: str, binary: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=not binary, timeout=GIT_TIMEOUT_S, check=False
    )


def resolve(ref: str, cwd: str | Path) -> tuple[str, str, str]:
    """The repository's top folder, the commit ``ref`` names, and the working folder's path inside it."""
    top = _git(cwd, "rev-parse", "--show-toplevel")
    if top.returncode != 0:
        raise HarnessError(f"--base {ref} needs a git repository, and {Path(cwd).resolve()} is not in one")
    commit = _git(cwd, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
    if commit.returncode != 0 or not commit.stdout.strip():
        raise HarnessError(
            f"--base {ref} is not a commit of the repository at {top.stdout.strip()} (a branch, tag or sha: "
            "in CI, fetch it first, e.g. git fetch origin main)"
        )
    prefix = _git(cwd, "rev-parse", "--show-prefix").stdout.strip()
    return top.stdout.strip(), commit.stdout.strip(), prefix


def extract(commit: str, cwd: str | Path, into: Path) -> None:
    """The tree of ``commit`` written to ``into`` (``git archive``, read as a tar stream)."""
    process = subprocess.Popen(["git", "archive", "--format=tar", commit], cwd=cwd, stdout=subprocess.PIPE)
    assert process.stdout is not None
    try:
        with tarfile.open(fileobj=process.stdout, mode="r|") as archive:
            if hasattr(tarfile, "data_filter"):
                archive.extractall(into, filter="data")
            else:  # Python < 3.11.4: git's own archive of our own repository
                archive.extractall(into)
    finally:
        process.stdout.close()
        if process.wait(timeout=GIT_TIMEOUT_S) != 0:
            raise HarnessError(f"git archive {commit[:12]} failed in {cwd}")


def at_ref(celery_app: str, ref: str, cwd: str | Path, workdir: Path) -> Version:
    """The app as it is at the git ref ``ref``; its tree goes in ``workdir`` (the caller removes it)."""
    _, commit, prefix = resolve(ref, cwd)
    tree, empty = workdir / f"base-{commit[:12]}", workdir / "empty"
    tree.mkdir(parents=True)
    empty.mkdir(exist_ok=True)
    extract(commit, cwd, tree)
    root = str((tree / prefix).resolve())
    label = f"{ref} ({commit[:7]})"
    return Version(label, celery_app, root, introspect(celery_app, root, f"at --base {ref}", empty))


def same_tree(celery_app: str, cwd: str | Path) -> Version:
    """Another app path of the working tree, as the base (``--base-app`` without ``--base``)."""
    root = str(Path(cwd).resolve())
    return Version("working tree", celery_app, root, introspect(celery_app, root, "in the working tree"))
