"""python -m harness.audit: pytest --pyargs harness.audit, with the app as its first argument, apart from the
project's own test set-up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from harness.audit.__main__ import ONE_PROCESS, command, isolation, main


def test_the_command_is_pytest_on_the_audit_package() -> None:
    args = command(["proj.celery:app", "--audit-like", "proj.tasks.send", "-x"])
    assert args[:4] == ["--pyargs", "harness.audit", "--celery-app", "proj.celery:app"]
    assert args[-3:] == ["--audit-like", "proj.tasks.send", "-x"]


def test_without_an_app_the_ini_or_the_stack_names_it() -> None:
    assert "--celery-app" not in command(["--audit-expect", "lost=0"])


def test_a_parallel_audit_is_refused_in_one_sentence(capsys) -> None:
    assert main(["proj.celery:app", "-n", "3"]) == 4
    assert capsys.readouterr().err.strip() == ONE_PROCESS


def test_the_projects_ini_keys_for_the_harness_are_carried_over_and_nothing_else(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\ncelery_app = shop.celery:app\naddopts = --reuse-db\n")
    args = isolation(tmp_path / "own.ini", tmp_path)
    assert args[args.index("-o") : args.index("-o") + 2] == ["-o", "celery_app=shop.celery:app"]
    assert "--reuse-db" not in args and args[args.index("--rootdir") + 1] == str(tmp_path)


def test_the_projects_conftests_plugins_and_options_stay_out_of_the_audit(tmp_path: Path) -> None:
    """A trial ran the audit from a Django project's root: pytest loaded the project's tests/conftest.py (which
    made the app eager: every probe ran in the test process, "lost 20") and its pytest.ini (pytest-django's
    test settings; ``--help`` ended in Django's traceback)."""
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "conftest.py").write_text(
        "def pytest_configure(config):\n    raise RuntimeError('project')\n"
    )
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\ntestpaths = tests\naddopts = --no-such-option\npython_files = check_*.py\n"
        "celery_app = shop.celery:app\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "harness", "audit", "--collect-only", "-q"], cwd=tmp_path, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    collected = [line for line in done.stdout.splitlines() if "::test_" in line]
    assert len(collected) == 11 and all(line.startswith("test_") for line in collected), done.stdout


def test_from_a_subfolder_the_rootdir_is_the_projects_as_pytest_would_choose_it(tmp_path: Path) -> None:
    """CI audits examples/ci, a folder of this repository without an ini of its own: the app (this repository's
    demo) imports from the repository's root, where pyproject.toml's [tool.pytest.ini_options] is."""
    (tmp_path / "pyproject.toml").write_text('[tool.pytest.ini_options]\nharness_stack = "app.stack:demo"\n')
    (tmp_path / "sub").mkdir()
    args = isolation(tmp_path / "own.ini", tmp_path / "sub")
    assert args[args.index("--rootdir") + 1] == str(tmp_path)
    assert "harness_stack=app.stack:demo" in args
