"""The deploy check in CI: ``pytest --pyargs harness.deploy_check_test`` in the example app's repository,
with the plugin's options, in a pytest of its own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from shop_example import APP


def ci_run(repo: Path, *args: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "pytest", "--pyargs", "harness.deploy_check_test", "--celery-app", APP, "-q",
        "-p", "no:cacheprovider", "--harness-no-report", *args,
    ]  # fmt: skip
    return subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=120)


def test_a_release_that_breaks_tasks_fails_the_test_with_the_table(shop_repo: Path):
    done = ci_run(shop_repo, "--harness-deploy-base", "HEAD~1")

    assert done.returncode == 1, done.stdout
    assert "1 failed" in done.stdout
    lines = done.stdout.splitlines()
    assert any(
        line.split()[:5] == ["shop.tasks.send_email", "signature", "BREAKS", "BREAKS", "BREAKS"] for line in lines
    )


def test_the_call_convention_is_an_option(shop_repo: Path):
    done = ci_run(shop_repo, "--harness-deploy-base", "HEAD~1", "--harness-deploy-calls", "keyword")

    lines = done.stdout.splitlines()
    assert any(line.split()[:5] == ["shop.tasks.move", "signature", "safe", "safe", "safe"] for line in lines)


def test_a_release_that_changes_nothing_passes(shop_repo: Path):
    done = ci_run(shop_repo, "--harness-deploy-base", "HEAD")
    assert done.returncode == 0, done.stdout
    assert "1 passed" in done.stdout


def test_without_a_base_the_test_says_what_to_give(shop_repo: Path):
    done = ci_run(shop_repo)

    assert done.returncode == 1
    said = [line for line in done.stdout.splitlines() if line.startswith("harness: ")]
    assert said == [said[0]] and "nothing to compare: give --base REF" in said[0]
    assert "Traceback" not in done.stdout
