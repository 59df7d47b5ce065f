"""``python -m harness.deploy_check`` on the example app's two commits: every kind of change found, with its
verdict per direction; the outputs and the exit status; bad input in one sentence, fast, nothing left.

Each run is the command in a subprocess, in the example repository, with a ``TMPDIR`` of its own: the
base's archive and everything else the check writes go there, and must be gone when it ends.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from shop_example import APP, CELERY, CHANGES, V1, commit, git

from harness.deploy.compare import BREAKS, SAFE, WAITS
from harness.deploy.compare import CHANGES as CHANGED

BOUND_S = 10.0  # bad input ends the run within this

pytestmark = pytest.mark.bound  # a time bound: CI runs these on their own, not beside a parallel suite


class Run:
    def __init__(self, done: subprocess.CompletedProcess, seconds: float, tmpdir: Path) -> None:
        self.status, self.stdout, self.stderr, self.seconds = done.returncode, done.stdout, done.stderr, seconds
        self.leftovers = sorted(p.name for p in tmpdir.iterdir())

    def json(self) -> dict:
        return json.loads(self.stdout)


def deploy_check(cwd: Path, *args: str, tmp_path: Path) -> Run:
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir(exist_ok=True)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "harness.deploy_check", *args], cwd=cwd, capture_output=True, text=True,
        env={**os.environ, "TMPDIR": str(tmpdir)}, timeout=120,
    )  # fmt: skip
    return Run(done, time.monotonic() - started, tmpdir)


def verdicts(report: dict, kind: str | None = None) -> dict[tuple[str, str], tuple[str, str, str]]:
    """(task, kind) -> its verdicts (old producer -> new worker, new producer -> old worker, queued); delivery
    changes, one per option, by (task, detail)."""
    return {
        (c["task"], c["detail"] if c["kind"] == "delivery" else c["kind"]): tuple(
            c["verdicts"][d] for d in ("old_to_new", "new_to_old", "queued")
        )
        for c in report["changes"]
        if kind is None or c["kind"] == kind
    }


def test_each_kind_of_change_is_found_with_its_verdict_per_direction(shop_repo: Path, tmp_path: Path):
    run = deploy_check(shop_repo, "--app", APP, "--base", "HEAD~1", "--format", "json", tmp_path=tmp_path)

    report = run.json()
    found: dict[str, set[str]] = {}
    for change in report["changes"]:
        found.setdefault(change["task"], set()).add(change["kind"])
    assert found == CHANGES
    assert report["unchanged"] == ["shop.tasks.add"]
    # old producer -> new worker, new producer -> old worker, queued messages
    assert verdicts(report) == {
        ("shop.tasks.send_email", "signature"): (BREAKS, BREAKS, BREAKS),  # a required parameter added
        ("shop.tasks.resize", "signature"): (SAFE, BREAKS, SAFE),  # one with a default: new producers pass it
        ("shop.tasks.charge", "signature"): (BREAKS, BREAKS, BREAKS),  # a parameter removed
        ("shop.tasks.move", "signature"): (BREAKS, BREAKS, BREAKS),  # positionals reordered: values swap
        ("shop.tasks.notify", "signature"): (SAFE, SAFE, SAFE),  # **kwargs added: tolerance
        ("shop.tasks.log_event", "signature"): (BREAKS, SAFE, BREAKS),  # **kwargs removed: old fields refused
        ("shop.tasks.cleanup", "bind"): (SAFE, SAFE, SAFE),
        ("shop.tasks.monthly_report", "routing"): (BREAKS, WAITS, BREAKS),
        ("shop.tasks.ship_order", "renamed"): (BREAKS, BREAKS, BREAKS),
        ("shop.tasks.legacy_sync", "removed"): (BREAKS, SAFE, BREAKS),
        ("shop.tasks.audit", "added"): (SAFE, BREAKS, SAFE),
        # The worker's own rules apply to what it runs; a time limit travels in the message.
        ("shop.tasks.import_feed", "acks_late False → True"): (CHANGED, SAFE, CHANGED),
        ("shop.tasks.import_feed", "max_retries 3 → 5"): (CHANGED, SAFE, CHANGED),
        ("shop.tasks.import_feed", "time_limit None → 60"): (CHANGED, CHANGED, CHANGED),
    }
    renamed = next(c for c in report["changes"] if c["kind"] == "renamed")
    assert renamed["new_task"] == "shop.tasks.dispatch_order" and "the same code" in renamed["detail"]
    assert run.status == 1 and run.leftovers == []


def test_the_tolerant_form_is_offered_for_each_breaking_signature(shop_repo: Path, tmp_path: Path):
    report = deploy_check(shop_repo, "--app", APP, "--base", "HEAD~1", "--format", "json", tmp_path=tmp_path).json()

    fixes = {c["task"]: c["fix"] for c in report["changes"] if c["kind"] == "signature"}
    assert "send_email(to, subject, body=None, **_newer_fields), called with keywords" in fixes["shop.tasks.send_email"]
    assert "deploy the workers first" in fixes["shop.tasks.send_email"]  # old workers refuse `body` whatever the form
    assert "move(src, dst, **_newer_fields), called with keywords" in fixes["shop.tasks.move"]  # the old order kept
    assert "deploy the workers first" not in fixes["shop.tasks.move"]
    assert fixes["shop.tasks.notify"] is None  # nothing breaks: nothing to fix


def test_the_call_convention_decides_whether_a_reordering_breaks(shop_repo: Path, tmp_path: Path):
    keyword = deploy_check(
        shop_repo, "--app", APP, "--base", "HEAD~1", "--format", "json", "--calls", "keyword", tmp_path=tmp_path
    ).json()
    per_task = deploy_check(
        shop_repo, "--app", APP, "--base", "HEAD~1", "--format", "json", "--calls", "shop.tasks.move=keyword",
        tmp_path=tmp_path,
    ).json()  # fmt: skip

    assert verdicts(keyword)[("shop.tasks.move", "signature")] == (SAFE, SAFE, SAFE)
    assert verdicts(per_task)[("shop.tasks.move", "signature")] == (SAFE, SAFE, SAFE)
    assert verdicts(per_task)[("shop.tasks.charge", "signature")] == (BREAKS, BREAKS, BREAKS)
    assert "shop.tasks.move: keyword" in per_task["calls"]


def test_outputs_and_exit_status(shop_repo: Path, tmp_path: Path):
    markdown, report = tmp_path / "comment.md", tmp_path / "report.json"
    run = deploy_check(
        shop_repo, "--app", APP, "--base", "HEAD~1", "--markdown", str(markdown), "--json", str(report),
        tmp_path=tmp_path,
    )  # fmt: skip
    warned = deploy_check(shop_repo, "--app", APP, "--base", "HEAD~1", "--warn-only", tmp_path=tmp_path)
    same = deploy_check(shop_repo, "--app", APP, "--base", "HEAD", tmp_path=tmp_path)
    queued_only = deploy_check(
        shop_repo, "--app", APP, "--base", "HEAD~1", "--format", "json", "--fail-on", "queued", tmp_path=tmp_path
    )

    assert run.status == 1
    table = run.stdout.splitlines()
    assert any(
        line.split()[:5] == ["shop.tasks.send_email", "signature", "BREAKS", "BREAKS", "BREAKS"] for line in table
    )
    assert "| `shop.tasks.send_email` | signature: added `body` (required) | ❌ breaks | ❌ breaks | ❌ breaks |" in (
        markdown.read_text()
    )
    assert json.loads(report.read_text())["breaking"] == 9
    assert warned.status == 0 and "exit status 0 (warn only)" in warned.stdout
    assert same.status == 0 and "no task changed" in same.stdout
    proved = deploy_check(
        shop_repo, "--app", APP, "--base", "HEAD", "--prove", "--harness-broker", "local", tmp_path=tmp_path
    )
    assert proved.status == 0 and "proof: nothing to prove" in proved.stdout
    assert "starting" not in proved.stderr  # no broker for nothing
    assert queued_only.json()["breaking"] == 7  # audit and resize break only new producer -> old worker


# -- bad input: one sentence each, fast --------------------------------------------------------------


def assert_one_sentence(run: Run, *words: str) -> None:
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert run.status == 2, run.stderr
    assert len(lines) == 1 and lines[0].startswith("deploy-check: "), run.stderr
    assert "Traceback" not in run.stderr
    for word in words:
        assert word in lines[0]
    assert run.seconds < BOUND_S
    assert run.leftovers == []


def test_a_ref_that_names_no_commit(shop_repo: Path, tmp_path: Path):
    run = deploy_check(shop_repo, "--app", APP, "--base", "no-such-branch", tmp_path=tmp_path)
    assert_one_sentence(run, "--base no-such-branch is not a commit of the repository")


def test_a_folder_outside_any_repository(tmp_path: Path):
    folder = tmp_path / "not-a-repo"
    folder.mkdir()
    run = deploy_check(folder, "--app", APP, "--base", "HEAD~1", tmp_path=tmp_path)
    assert_one_sentence(run, "needs a git repository", str(folder))


def test_an_app_that_does_not_import_at_the_base(tmp_path: Path):
    repo = tmp_path / "young-repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "README").write_text("the app comes in the next commit\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "empty")
    commit(repo, V1, "the app")

    run = deploy_check(repo, "--app", APP, "--base", "HEAD~1", tmp_path=tmp_path)
    assert_one_sentence(run, "at --base HEAD~1", "does not import", "No module named 'shop'")


def test_an_app_with_no_tasks(shop_repo: Path, tmp_path: Path):
    (shop_repo / "shop" / "celery.py").write_text(CELERY.replace(', include=["shop.tasks"]', ""))  # uncommitted
    run = deploy_check(shop_repo, "--app", APP, "--base", "HEAD~1", tmp_path=tmp_path)
    assert_one_sentence(run, "in the working tree", "registers no tasks")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--base", "HEAD~1", "--calls", "sometimes"), ("--calls 'sometimes'",)),
        (("--base", "HEAD~1", "--example", "shop.tasks.add=1,2"), ("--example", "TASK=JSON")),
        (("--base", "HEAD~1", "--fail-on", "sideways"), ("--fail-on 'sideways'",)),
        ((), ("nothing to compare",)),
    ],
    ids=["calls", "example", "fail-on", "no-base"],
)
def test_bad_options(shop_repo: Path, tmp_path: Path, args: tuple[str, ...], words: tuple[str, ...]):
    assert_one_sentence(deploy_check(shop_repo, "--app", APP, *args, tmp_path=tmp_path), *words)


@pytest.mark.parametrize(
    ("args", "typo", "meant"),
    [
        (("--calls", "shop.tasks.send_emial=keyword"), "shop.tasks.send_emial", "shop.tasks.send_email"),
        (("--example", 'shop.tasks.resise={"path": "a.png"}'), "shop.tasks.resise", "shop.tasks.resize"),
    ],
    ids=["calls", "example"],
)
def test_a_task_name_that_is_not_the_apps_names_the_close_ones(
    shop_repo: Path, tmp_path: Path, args: tuple[str, ...], typo: str, meant: str
):
    """A misspelt task would otherwise get its convention or values silently applied to nothing."""
    run = deploy_check(shop_repo, "--app", APP, "--base", "HEAD~1", *args, tmp_path=tmp_path)
    assert_one_sentence(run, f"{args[0]} names {typo}", "not a task of the app", f"did you mean {meant}")


def test_the_proof_says_it_uses_a_url_broker_and_starts_nothing():
    """A url broker is someone else's: the proof only connects to it (and keeps its password to itself)."""
    from harness.brokers.rabbitmq.url import UrlBroker
    from harness.deploy_check import proof_broker_words

    words = proof_broker_words(UrlBroker("amqp://ops:s3cret@rabbit.example:5672/prod"))
    assert words.startswith("using the url broker at amqp://ops:***@rabbit.example:5672/")
    assert "s3cret" not in words and "starting" not in words
