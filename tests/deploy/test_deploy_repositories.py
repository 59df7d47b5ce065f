"""The deploy check on the shapes real repositories have, each built in a temporary git repository: a
``src/`` layout with the working tree on the import path, an app that prints and opens a relative file at
import, an app that does not import, a Django project with eager mode and an unreachable result backend,
a base that cannot run a task in its checkout, a body that fails on the default a new parameter got, and
a parameter renamed in place. Each found a wrong or crashing answer before the fix (issue 22).

Each run is the command in a subprocess, as CI runs it, with a ``TMPDIR`` of its own that must be empty
after, and the repository must keep no checkout of the base.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from shop_example import git

from harness.deploy import versions
from harness.errors import HarnessError

TIMEOUT_S = 180


class Run:
    def __init__(self, done: subprocess.CompletedProcess, tmpdir: Path) -> None:
        self.status, self.stdout, self.stderr = done.returncode, done.stdout, done.stderr
        self.leftovers = sorted(p.name for p in tmpdir.iterdir())

    def json(self) -> dict:
        return json.loads(self.stdout)


def deploy_check(cwd: Path, *args: str, tmp_path: Path, env: dict[str, str] | None = None) -> Run:
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir(exist_ok=True)
    env = {**os.environ, "TMPDIR": str(tmpdir), **(env or {})}
    if env.get("PYTHONPATH") and os.environ.get("PYTHONPATH"):  # the test's entry first, then the run's own
        env["PYTHONPATH"] += os.pathsep + os.environ["PYTHONPATH"]
    done = subprocess.run(
        [sys.executable, "-m", "harness.deploy_check", *args], cwd=cwd, capture_output=True, text=True, env=env,
        timeout=TIMEOUT_S,
    )  # fmt: skip
    return Run(done, tmpdir)


def write(repo: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())


def make_repo(repo: Path, *commits: dict[str, str]) -> Path:
    """A repository whose commits write these files, in order (HEAD is the last)."""
    repo.mkdir()
    git(repo, "init", "-q")
    for number, files in enumerate(commits):
        write(repo, files)
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", f"commit {number}")
    return repo


def assert_clean(run: Run, repo: Path) -> None:
    assert run.leftovers == [], run.leftovers
    assert len(git(repo, "worktree", "list").splitlines()) == 1, "the base's checkout is gone"
    assert "Traceback" not in run.stderr, run.stderr


def proof_broker(broker) -> tuple[str, ...]:
    endpoint = broker.endpoint
    return (
        "--prove", "--harness-broker", "url", "--harness-broker-url", endpoint.amqp_url(),
        "--harness-management-url", endpoint.management_url or "",
    )  # fmt: skip


# -- a src/ layout, the working tree on the import path ------------------------------------------------

SRC_CELERY = {
    "src/shop/__init__.py": "",
    "src/shop/celery.py": 'from celery import Celery\napp = Celery("shop", include=["shop.tasks"])\n',
}
SRC_V1 = {
    **SRC_CELERY,
    "src/shop/tasks.py": """
        from shop.celery import app

        @app.task
        def export(*, event_id, make_zip=True):
            return event_id

        @app.task
        def gravatar_cache(person_id):
            return person_id
        """,
}
SRC_V2 = {
    "src/shop/tasks.py": """
        from shop.celery import app

        @app.task
        def export(*, event_id, cached_file_id=None):
            return event_id

        @app.task
        def gravatar_cache(profile_picture_id):
            return profile_picture_id

        @app.task
        def export_all(event_id):
            return event_id
        """,
}


@pytest.mark.parametrize("folder", ["", "src"], ids=["from-the-root", "from-src"])
def test_a_src_layout_with_the_working_tree_on_the_import_path_is_compared_with_its_base(tmp_path: Path, folder: str):
    """The project is installed in editable mode: src/ is on the import path (here by PYTHONPATH, as an
    editable install's path entry puts it). Before the fix the base was imported from the working tree:
    "no task changed", exit 0, for a release that breaks ``export``'s keyword callers and adds a task."""
    repo = make_repo(tmp_path / "repo", SRC_V1, SRC_V2)
    run = deploy_check(
        repo / folder, "--app", "shop.celery:app", "--base", "HEAD~1", "--calls", "positional", "--format", "json",
        tmp_path=tmp_path, env={"PYTHONPATH": str(repo / "src")},
    )  # fmt: skip

    assert run.status == 1, run.stderr
    changes = {(c["task"], c["kind"]): c for c in run.json()["changes"]}
    assert changes[("shop.tasks.export", "signature")]["verdicts"]["old_to_new"] == "breaks"
    assert "(keyword call)" in changes[("shop.tasks.export", "signature")]["reasons"]["old_to_new"]
    assert ("shop.tasks.export_all", "added") in changes
    renamed = changes[("shop.tasks.gravatar_cache", "signature")]
    assert renamed["detail"] == "`person_id` renamed `profile_picture_id` in place (position 1)"
    assert renamed["verdicts"]["queued"] == "changes"
    assert_clean(run, repo)


def test_a_copy_standing_in_front_of_the_working_tree_is_refused(tmp_path: Path):
    """An installed (non-editable) copy of the package ahead of the tree: the check would read the copy."""
    repo = make_repo(tmp_path / "repo", SRC_V1, SRC_V2)
    installed = tmp_path / "site"
    write(installed, {"shop/__init__.py": "", "shop/celery.py": SRC_CELERY["src/shop/celery.py"],
                      "shop/tasks.py": SRC_V1["src/shop/tasks.py"]})  # fmt: skip
    run = deploy_check(
        repo, "--app", "shop.celery:app", "--base", "HEAD~1", tmp_path=tmp_path, env={"PYTHONPATH": str(installed)}
    )
    assert run.status == 2, run.stderr
    [line] = run.stderr.splitlines()
    assert line.startswith("deploy-check: in the working tree, task shop.tasks.")
    assert f"comes from {installed.resolve()}/shop/tasks.py, not from {repo.resolve()}" in line
    assert "pip install -e ." in line


# -- an app that prints and reads a file at import -------------------------------------------------------

CHATTY = {
    "VERSION": "1.4.2\n",
    "notes/__init__.py": "",
    "notes/celery.py": """
        from celery import Celery

        VERSION = open("VERSION").read().strip()
        print(f"notes {VERSION} starting")

        app = Celery("notes", include=["notes.tasks"])
        """,
    "notes/tasks.py": """
        from notes.celery import app

        @app.task
        def add(x, y):
            return x + y
        """,
}


def test_an_app_that_prints_and_opens_a_relative_file_at_import_is_compared(tmp_path: Path):
    """Before the fix the base was imported from an empty folder (FileNotFoundError: VERSION, exit 2), and
    the print broke the JSON read from standard output (a raw JSONDecodeError traceback, exit 1)."""
    v2 = {"notes/tasks.py": CHATTY["notes/tasks.py"].replace("def add(x, y):", "def add(x, y, z):")}
    repo = make_repo(tmp_path / "repo", CHATTY, v2)
    run = deploy_check(repo, "--app", "notes.celery:app", "--base", "HEAD~1", "--format", "json", tmp_path=tmp_path)
    assert run.status == 1, run.stderr
    assert [c["detail"] for c in run.json()["changes"]] == ["added `z` (required)"]
    assert_clean(run, repo)


def test_an_app_that_does_not_import_in_the_working_tree_is_bad_input(tmp_path: Path):
    broken = {"notes/celery.py": textwrap.dedent(CHATTY["notes/celery.py"]) + "\nimport no_such_module\n"}
    repo = make_repo(tmp_path / "repo", CHATTY, broken)
    run = deploy_check(repo, "--app", "notes.celery:app", "--base", "HEAD~1", tmp_path=tmp_path)
    assert run.status == 2
    [line] = run.stderr.splitlines()
    assert line.startswith("deploy-check: in the working tree, --app notes.celery:app does not import:")
    assert "No module named 'no_such_module'" in line
    assert_clean(run, repo)


def test_untracked_files_the_base_needs_are_provided_by_base_setup(tmp_path: Path):
    """A local settings file git does not track: the base's import fails and says how to provide it."""
    local = dict(CHATTY)
    local["notes/celery.py"] = "import local_settings\n" + textwrap.dedent(CHATTY["notes/celery.py"])
    repo = make_repo(tmp_path / "repo", {**local, ".gitignore": "local_settings.py\n"}, {"README": "v2\n"})
    write(repo, {"local_settings.py": "DEBUG = True\n"})  # untracked

    missing = deploy_check(repo, "--app", "notes.celery:app", "--base", "HEAD~1", tmp_path=tmp_path)
    assert missing.status == 2
    assert "No module named 'local_settings'" in missing.stderr and "--base-setup" in missing.stderr

    given = deploy_check(
        repo, "--app", "notes.celery:app", "--base", "HEAD~1", "--base-setup",
        'cp "$HARNESS_WORKING_TREE/local_settings.py" .', tmp_path=tmp_path,
    )  # fmt: skip
    assert given.status == 0, given.stderr
    assert "no task changed" in given.stdout
    assert_clean(given, repo)


# -- the proof, on real workers -----------------------------------------------------------------------

ADD_V1 = {
    "calc/__init__.py": "",
    "calc/celery.py": 'from celery import Celery\napp = Celery("calc", include=["calc.tasks"])\n',
    "calc/tasks.py": """
        from calc.celery import app

        @app.task
        def add(x, y):
            return x + y
        """,
}
ADD_V2 = {
    "calc/tasks.py": """
        from calc.celery import app

        @app.task
        def add(x, y, z=None):
            return x + y + z
        """,
}


def test_a_body_that_fails_on_the_new_default_is_binding_safe_body_failed(broker, tmp_path: Path):
    """``add(x, y)`` became ``add(x, y, z=None)`` with a body ``x + y + z``: an old producer's message binds
    and the body raises on None. Before the fix: "contradicted: CHECKER BUG", exit 3."""
    repo = make_repo(tmp_path / "repo", ADD_V1, ADD_V2)
    run = deploy_check(
        repo, "--app", "calc.celery:app", "--base", "HEAD~1", "--calls", "positional", "--format", "json",
        "--example", 'calc.tasks.add={"x": 1, "y": 2, "z": 3}', *proof_broker(broker), tmp_path=tmp_path,
    )  # fmt: skip

    assert run.status == 1, run.stderr
    report = run.json()
    [change] = report["changes"]
    assert "the body must handle `z=None`" in change["fix"]
    rows = {r["direction"]: r for r in report["proof"]["rows"]}
    assert rows["old_to_new"]["status"] == "body failed"
    assert rows["old_to_new"]["observed"].startswith("binding safe, body failed: TypeError: unsupported operand")
    assert "`z` was not sent and took its default None: the body must handle it" in rows["old_to_new"]["why"]
    assert "--example" not in json.dumps(report["proof"])  # values were given
    assert_clean(run, repo)


DB_V1 = {
    ".gitignore": "*.sqlite3\n",
    "ledger/__init__.py": "",
    "ledger/celery.py": 'from celery import Celery\napp = Celery("ledger", include=["ledger.tasks"])\n',
    "ledger/tasks.py": """
        import sqlite3

        from ledger.celery import app

        @app.task
        def total(account):
            rows = sqlite3.connect("ledger.sqlite3").execute("select amount from entries where account = ?", (account,))
            return sum(amount for (amount,) in rows)
        """,
}
DB_V2 = {
    "ledger/tasks.py": DB_V1["ledger/tasks.py"].replace("def total(account):", 'def total(account, currency="EUR"):')
}


def test_a_task_the_old_release_cannot_run_in_its_checkout_is_inconclusive_with_its_error_quoted(
    broker, tmp_path: Path
):
    """The database is untracked: the base's checkout has none, so its own workers cannot run the task.
    Before the fix: "contradicted: CHECKER BUG", exit 3."""
    repo = make_repo(tmp_path / "repo", DB_V1, DB_V2)
    db = "import sqlite3; sqlite3.connect('ledger.sqlite3').execute('create table entries(account, amount)')"
    subprocess.run([sys.executable, "-c", db], cwd=repo, check=True)
    run = deploy_check(
        repo, "--app", "ledger.celery:app", "--base", "HEAD~1", "--calls", "positional", "--format", "json",
        *proof_broker(broker), tmp_path=tmp_path,
    )  # fmt: skip

    assert run.status == 1, run.stderr  # the breaking change (new producers send currency), not a checker bug
    report = run.json()
    rows = {r["direction"]: r for r in report["proof"]["rows"]}
    assert rows["old_to_new"]["status"] == "confirmed"  # the new worker, in the working tree, has the table
    assert rows["new_to_old"]["status"] == "inconclusive"
    assert (
        "the old release cannot run this task here: OperationalError: no such table: entries"
        in (rows["new_to_old"]["why"])
    )
    kinds = {m["observed"] for m in report["proof"]["messages"] if m["direction"] == "new_to_old"}
    assert "failed TypeError" in kinds  # total(account, currency): the old worker does not take currency
    assert_clean(run, repo)


DJANGO = {
    "manage.py": "",
    "proj/__init__.py": "from .celery import app as celery_app\n",
    "proj/settings.py": """
        SECRET_KEY = "x"
        INSTALLED_APPS = ["orders"]
        CELERY_BROKER_URL = "amqp://guest@broker.invalid:5672//"
        CELERY_TASK_ALWAYS_EAGER = True
        CELERY_RESULT_BACKEND = "redis://redis.invalid:6379/0"
        """,
    "proj/celery.py": """
        import os
        from celery import Celery

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")
        app = Celery("proj")
        app.config_from_object("django.conf:settings", namespace="CELERY")
        app.autodiscover_tasks()
        """,
    "orders/__init__.py": "",
    # The project reads its own settings where it runs, as pretalx's views read CELERY_TASK_ALWAYS_EAGER: each
    # run says what the worker's code saw, and fails if it saw the project's values instead of the harness's.
    "orders/tasks.py": """
        from celery import current_app, shared_task
        from django.conf import settings

        @shared_task
        def fulfil(item):
            seen = (settings.CELERY_TASK_ALWAYS_EAGER, settings.CELERY_RESULT_BACKEND, current_app.conf.result_backend)
            if seen != (False, None, None):
                raise RuntimeError(f"the worker saw eager mode and result backend {seen}")
            return item
        """,
}
DJANGO_V2 = {"orders/tasks.py": DJANGO["orders/tasks.py"].replace("def fulfil(item):", "def fulfil(item, quantity=1):")}


def test_a_django_project_in_eager_mode_with_an_unreachable_backend_is_proven_on_workers(broker, tmp_path: Path):
    """``CELERY_TASK_ALWAYS_EAGER = True`` made the proof's producers run the tasks themselves ("contradicted:
    CHECKER BUG", exit 3) and ``CELERY_RESULT_BACKEND`` sent its workers to a Redis they could not reach."""
    repo = make_repo(tmp_path / "repo", DJANGO, DJANGO_V2)
    # The deployment's environment names its result backend too (Celery reads it before any setting).
    backend = {"CELERY_RESULT_BACKEND": "redis://redis.invalid:6379/1", "RESULT_BACKEND": "redis://redis.invalid/2"}
    run = deploy_check(
        repo, "--app", "proj.celery:app", "--base", "HEAD~1", "--calls", "positional", "--format", "json",
        *proof_broker(broker), tmp_path=tmp_path, env=backend,
    )  # fmt: skip

    assert run.status == 1, run.stderr
    rows = run.json()["proof"]["rows"]
    # Old messages run on new workers (quantity takes its default); a new producer's quantity fails on an old
    # worker. Runs that succeed store no result anywhere: the workers' backend is the harness's (none).
    assert {(r["direction"], r["observed"], r["status"]) for r in rows} == {
        ("old_to_new", "ran", "confirmed"),
        ("queued", "ran", "confirmed"),
        ("new_to_old", "ran, failed TypeError", "confirmed"),
    }
    assert_clean(run, repo)


def test_a_module_the_base_lacks_is_not_taken_from_the_working_tree(tmp_path: Path):
    """wger's settings.py is untracked: the base's checkout has none, and an editable install's path entry let
    the base import the working tree's (the check then blamed the environment). Off the import path, the base
    does not import, and the sentence says how to give it the file."""
    from harness.app_info import introspect

    tree = tmp_path / "working"
    write(
        tree,
        {"settings.py": "DEBUG = True\n", "app.py": "import settings\nfrom celery import Celery\napp = Celery()\n"},
    )
    base = tmp_path / "base"
    write(base, {"app.py": "import settings\nfrom celery import Celery\napp = Celery()\n"})
    env = {"PYTHONPATH": str(tree)}  # as the .pth of an editable install puts it on every process's path
    with pytest.raises(HarnessError, match="does not import: ModuleNotFoundError: No module named 'settings'"):
        introspect("app:app", str(base), env=env, foreign_tree=str(tree))


def test_a_module_an_import_hook_brings_from_the_working_tree_is_refused_and_named():
    base = versions.Version("HEAD~1", "app:app", "/b", {"foreign_modules": [["settings", "/w/settings.py"]]}, "/b")
    with pytest.raises(HarnessError, match=r"from the working tree's settings.py, which the base's checkout does "):
        versions.check_provenance(base, "at --base HEAD~1", "/w")


RENAME_V1 = {
    "media/__init__.py": "",
    "media/celery.py": 'from celery import Celery\napp = Celery("media", include=["media.tasks"])\n',
    "media/tasks.py": """
        from media.celery import app

        @app.task
        def fetch_image(pk):
            return pk + 1

        @app.task
        def resize(width: int, height: int):
            return width * height
        """,
}
RENAME_V2 = {
    "media/tasks.py": """
        from media.celery import app

        @app.task
        def fetch_image_task(pk):
            return pk + 1

        @app.task
        def resize(width: int, height: int, keep_ratio=True):
            return width * height
        """,
}


def test_an_example_for_a_renamed_tasks_new_name_serves_its_old_name_and_annotated_numbers_get_numbers(
    broker, tmp_path: Path
):
    """wger renamed fetch_ingredient_image(pk) fetch_ingredient_image_task(pk): the --example given for the new
    name did not reach the old name's control, which failed on the placeholder string (inconclusive); nor did
    an ``int`` annotation give a number."""
    repo = make_repo(tmp_path / "repo", RENAME_V1, RENAME_V2)
    run = deploy_check(
        repo, "--app", "media.celery:app", "--base", "HEAD~1", "--calls", "positional", "--format", "json",
        "--example", 'media.tasks.fetch_image_task={"pk": 5}', *proof_broker(broker), tmp_path=tmp_path,
    )  # fmt: skip

    assert run.status == 1, run.stderr
    controls = [m for m in run.json()["proof"]["messages"] if m["direction"] == "control"]
    assert {m["observed"] for m in controls} == {"ran"}, controls
    rows = {(r["task"], r["direction"]): r["status"] for r in run.json()["proof"]["rows"]}
    assert rows[("media.tasks.fetch_image_task", "new_to_old")] == "confirmed"  # the new name, on its own row
    assert_clean(run, repo)
