"""The two versions a deploy check compares, each read by ``python -m harness.introspect`` in a process of
its own (two versions of an app never share an interpreter: their modules have the same names).

- the new version: the working tree as it is (uncommitted changes included), or another app path in it;
- the base version: an app path in the same tree (``--base-app``), or the app at a git ref (``--base``):
  a real checkout of the whole repository at that commit (``git worktree add --detach``, hooks off,
  removed afterwards), so relative paths, ``src/`` layouts and monorepos behave as they do in production.

Each version's programs run from the same folder relative to its tree as the user runs from, with the
same import roots: the working tree's import path entries that lie inside the repository (the folder
itself, ``src/`` put there by an editable install, ``PYTHONPATH`` entries) are mapped to the base's
checkout and put first. Then each version is checked to be what it claims: every task's module must come
from its own tree (an installed copy or a ``PYTHONPATH`` entry standing in front of it would make the check
compare the wrong code, silently), and no module of the base may come from the working tree. Anything
else is refused in one sentence naming the module, where it came from, and the fix.

Untracked files the base needs (a local settings file, a database) are the user's: ``--base-setup CMD``
runs a command in the base's folder before it is read.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.app_info import INTROSPECTION_BROKER, introspect, last_error_line
from harness.errors import HarnessError

GIT_TIMEOUT_S = 60.0
CHECKOUT_TIMEOUT_S = 300.0  # a large repository's checkout
BASE_SETUP_TIMEOUT_S = 600.0  # a migration of the base's database
IMPORT_TIMEOUT_S = 60.0
SETUP_HINT = "; if the base needs files git does not track, create them with --base-setup CMD"


@dataclass(frozen=True)
class Version:
    """One version of the app: where its programs run and import from, and what it declares."""

    label: str  # "HEAD~1 (3f2a1c9)", "working tree"
    celery_app: str
    root: str  # the folder its programs run from (the user's folder, in this version's tree)
    info: dict[str, Any] = field(compare=False, repr=False)
    tree: str = ""  # the whole tree: the repository's top folder, or the base's checkout
    paths: tuple[str, ...] = ()  # import roots first on the import path of every process that runs it

    @property
    def tasks(self) -> dict[str, Any]:
        return self.info.get("tasks") or {}

    @property
    def queues(self) -> tuple[str, ...]:
        return tuple(self.info.get("queues") or ())

    def environment(self) -> dict[str, str]:
        """``PYTHONPATH`` for a process of this version: its import roots, then the user's own entries that
        lie outside the repository (those inside are already among the roots, mapped to this tree)."""
        own = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and not _inside(p, self.tree)]
        return {"PYTHONPATH": os.pathsep.join([*self.paths, *own])}

    def describe(self) -> dict[str, Any]:
        return {
            "label": self.label, "celery_app": self.celery_app, "root": self.root, "tree": self.tree,
            "tasks": sorted(self.tasks),
        }  # fmt: skip


def _inside(path: str | Path, folder: str | Path) -> bool:
    try:
        Path(path).resolve().relative_to(Path(folder).resolve())
    except ValueError:
        return False
    return True


def _git(cwd: str | Path, *args: str, timeout: float = GIT_TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


def top_of(cwd: str | Path) -> str | None:
    done = _git(cwd, "rev-parse", "--show-toplevel")
    return str(Path(done.stdout.strip()).resolve()) if done.returncode == 0 else None


def read(
    celery_app: str, run_from: str, where: str, env: Mapping[str, str] | None = None, paths: Sequence[str] = (),
    foreign_tree: str | None = None, named_by: str = "--app",
) -> dict[str, Any]:  # fmt: skip
    """What the app declares, read from ``run_from``; a problem becomes one sentence that says ``where``."""
    env = {**(env or {}), "CELERY_BROKER_URL": INTROSPECTION_BROKER}
    try:
        info = introspect(
            celery_app, run_from, env=env, paths=paths, foreign_tree=foreign_tree, timeout=IMPORT_TIMEOUT_S,
            named_by=named_by,
        )  # fmt: skip
    except HarnessError as error:
        hint = SETUP_HINT if where.startswith("at --base") and "--base-setup" not in where else ""
        raise HarnessError(f"{where}, {error}{hint}") from None
    if not info.get("tasks"):
        raise HarnessError(
            f"{where}, {named_by} {celery_app} registers no tasks (Celery's own aside): import its task modules "
            "from the app (include=[...] or app.autodiscover_tasks()), or point at the app that has them"
        )
    return info


def import_roots(info: Mapping[str, Any], tree: str) -> tuple[str, ...]:
    """The import path entries inside ``tree``, in order: the working tree's own roots."""
    return tuple(dict.fromkeys(p for p in info.get("sys_path") or () if _inside(p, tree)))


def provides(version: Version, module: str) -> bool:
    """Whether the version's tree has ``module``: under one of its import roots, or anywhere among its files
    (a ``src/`` the import path does not name: an installed copy then stands in for it)."""
    top = module.split(".")[0]
    roots = [version.root, *version.paths]
    if any((Path(r) / top).is_dir() or (Path(r) / f"{top}.py").is_file() for r in roots):
        return True
    stem = module.replace(".", "/")
    files = _git(version.tree, "ls-files", "--", f"*{stem}.py", f"*{stem}/__init__.py")
    return any(
        line == f"{stem}.py" or line.endswith((f"/{stem}.py", f"/{stem}/__init__.py")) or line == f"{stem}/__init__.py"
        for line in files.stdout.splitlines()
    )


def check_provenance(version: Version, where: str, other_tree: str | None = None) -> None:
    """Every task's module comes from the version's own tree (or from outside the repository altogether: a
    library's task); no module of the base comes from the working tree. Else one sentence and the fix."""
    foreign = version.info.get("foreign_modules") or []
    if foreign and other_tree:
        module, path = foreign[0]
        relative = os.path.relpath(path, other_tree)
        if not (Path(version.tree) / relative).exists():
            raise HarnessError(
                f"{where}, module {module} was imported from the working tree's {relative}, which the base's "
                "checkout does not have (git does not track it at that commit): give the base its own with "
                f'--base-setup CMD (e.g. cp "$HARNESS_WORKING_TREE/{relative}" .)'
            )
        raise HarnessError(
            f"{where}, module {module} was imported from the working tree ({path}), not from the base's checkout "
            f"({version.tree}): an import hook of the environment (an editable install's finder) stands in front "
            "of the base, and the check would compare the working tree with itself. Run the check where the "
            "project is installed with a path entry (pip install -e . --config-settings editable_mode=compat), "
            "or not installed"
        )
    for name, task in sorted(version.tasks.items()):
        module, path = task.get("module"), task.get("file")
        if not module or not path or _inside(path, version.tree) or not provides(version, module):
            continue
        raise HarnessError(
            f"{where}, task {name} comes from {path}, not from {version.tree}, which has module {module} too: an "
            "installed copy or a PYTHONPATH entry stands in front of this version's code, and the check would "
            "compare the wrong code. Install the project editable (pip install -e .) or uninstall the copy "
            f"(python -m pip show {module.split('.')[0]})"
        )


def working_tree(celery_app: str, cwd: str | Path, named_by: str = "--app") -> Version:
    """The app as it is in the folder the user runs from, uncommitted changes included."""
    root = str(Path(cwd).resolve())
    tree = top_of(root) or root
    where = "in the working tree"
    info = read(celery_app, root, where, named_by=named_by)
    version = Version("working tree", celery_app, root, info, tree, import_roots(info, tree))
    check_provenance(version, where)
    return version


def resolve(ref: str, cwd: str | Path) -> tuple[str, str, str]:
    """The repository's top folder, the commit ``ref`` names, and the working folder's path inside it."""
    top = top_of(cwd)
    if top is None:
        raise HarnessError(f"--base {ref} needs a git repository, and {Path(cwd).resolve()} is not in one")
    commit = _git(cwd, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
    if commit.returncode != 0 or not commit.stdout.strip():
        raise HarnessError(
            f"--base {ref} is not a commit of the repository at {top} (a branch, tag or sha: "
            "in CI, fetch it first, e.g. git fetch origin main)"
        )
    prefix = os.path.relpath(Path(cwd).resolve(), top)
    return top, commit.stdout.strip(), "" if prefix == "." else prefix


def checkout(top: str, commit: str, into: Path) -> None:
    """A real checkout of the whole repository at ``commit`` (its hooks off: a post-checkout hook is the
    user's, not the check's). ``remove_checkout`` takes it away."""
    _git(top, "worktree", "prune")  # entries of checkouts a killed run left behind
    done = _git(
        top, "-c", "core.hooksPath=/dev/null", "worktree", "add", "--detach", "--quiet", str(into), commit,
        timeout=CHECKOUT_TIMEOUT_S,
    )  # fmt: skip
    if done.returncode != 0:
        raise HarnessError(f"git worktree add of {commit[:12]} failed in {top}: {last_error_line(done.stderr)}")


def remove_checkout(top: str, into: Path) -> None:
    _git(top, "worktree", "remove", "--force", str(into), timeout=CHECKOUT_TIMEOUT_S)
    _git(top, "worktree", "prune")


def run_setup(command: str, folder: str, version_env: Mapping[str, str], working_folder: str) -> None:
    """``--base-setup``: the user's command, in the base's folder, with the base first on the import path and
    ``HARNESS_WORKING_TREE`` naming the folder the check was run from (``cp "$HARNESS_WORKING_TREE/.env" .``)."""
    print(f"deploy-check: --base-setup in the base checkout ({folder}): {command}", file=sys.stderr, flush=True)
    env = {
        **os.environ, **version_env, "CELERY_BROKER_URL": INTROSPECTION_BROKER, "HARNESS_WORKING_TREE": working_folder,
    }  # fmt: skip
    try:
        done = subprocess.run(
            command, shell=True, cwd=folder, env=env, capture_output=True, text=True, timeout=BASE_SETUP_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        raise HarnessError(f"--base-setup {command!r} took more than {BASE_SETUP_TIMEOUT_S:.0f}s") from None
    if done.returncode != 0:
        why = last_error_line(done.stderr) or last_error_line(done.stdout) or "no output"
        raise HarnessError(f"--base-setup {command!r} exited {done.returncode} in the base checkout: {why}")


@contextmanager
def at_ref(
    celery_app: str, ref: str, cwd: str | Path, workdir: Path, new: Version, setup: str | None = None,
    named_by: str = "--app",
) -> Iterator[Version]:  # fmt: skip
    """The app as it is at the git ref ``ref``, checked out in ``workdir`` for as long as the context lasts,
    run from the same relative folder, with ``new``'s import roots mapped to it."""
    top, commit, prefix = resolve(ref, cwd)
    tree = (workdir / f"base-{commit[:12]}").resolve()
    if _inside(tree, new.tree):
        raise HarnessError(
            f"the base's checkout would lie inside the repository ({tree}): set TMPDIR to a folder outside it"
        )
    checkout(top, commit, tree)
    try:
        yield _base(celery_app, ref, commit, tree, prefix, new, setup, named_by)
    finally:
        remove_checkout(top, tree)


def _base(
    celery_app: str, ref: str, commit: str, tree: Path, prefix: str, new: Version, setup: str | None, named_by: str
) -> Version:
    root = tree / prefix
    label = f"{ref} ({commit[:7]})"
    where = f"at --base {ref}" + (" (after --base-setup)" if setup else "")
    if not root.is_dir():
        raise HarnessError(
            f"at --base {ref}, the folder {prefix} does not exist: run the check from a folder both versions have"
        )
    paths = tuple(str(tree / os.path.relpath(p, new.tree)) for p in new.paths)
    version = Version(label, celery_app, str(root), {}, str(tree), paths)
    if setup:
        run_setup(setup, str(root), version.environment(), new.root)
    info = read(celery_app, str(root), where, version.environment(), paths, new.tree, named_by)
    version = Version(label, celery_app, str(root), info, str(tree), paths)
    check_provenance(version, where, new.tree)
    return version


def same_tree(celery_app: str, cwd: str | Path, named_by: str = "--base-app") -> Version:
    """Another app path of the working tree, as the base (``--base-app`` without ``--base``)."""
    return working_tree(celery_app, cwd, named_by)
