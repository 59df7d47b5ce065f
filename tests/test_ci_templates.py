"""The ready-made CI jobs for a team's own pipeline (examples/ci/): valid for their CI, and every
harness option they use exists."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.options import OPTIONS

CI = Path(__file__).resolve().parent.parent / "examples" / "ci"
TEMPLATES = {"github-actions.yml": "vendor.github-workflows", "gitlab-ci.yml": "vendor.gitlab-ci"}


@pytest.mark.parametrize(("name", "schema"), TEMPLATES.items())
def test_each_template_is_valid_against_its_ci_schema(name: str, schema: str) -> None:
    """Checked with check-jsonschema's vendored schemas of GitHub workflows and GitLab CI (no network)."""
    checker = Path(sys.executable).with_name("check-jsonschema")
    done = subprocess.run([str(checker), "--builtin-schema", schema, str(CI / name)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("name", TEMPLATES)
def test_each_template_uses_only_options_the_plugin_has(name: str) -> None:
    known = {option.cli for option in OPTIONS}
    used = set(re.findall(r"(?<![\w-])(--(?:harness-[\w-]+|celery-app|web-app))", (CI / name).read_text()))
    assert used and used <= known, f"unknown options in {name}: {sorted(used - known)}"


@pytest.mark.parametrize("name", TEMPLATES)
def test_each_template_runs_the_scenarios_with_and_without_docker(name: str) -> None:
    text = (CI / name).read_text()
    assert "--harness-broker docker" in text and "--harness-broker local" in text


@pytest.mark.parametrize("name", TEMPLATES)
def test_each_template_has_a_sharded_job_and_merges_its_reports(name: str) -> None:
    """Three shards by pytest-split, each its own broker and report, merged by name (tests/test_shards.py runs the
    same commands for real)."""
    text = (CI / name).read_text()
    shard = text[text.index("sharded:") :]
    split = r"--splits \S+ --group .+? --durations-path \.test_durations --splitting-algorithm least_duration"
    assert re.search(split + r"\s+--harness-broker local", shard)
    merged = re.search(r"python -m harness\.report merge\s+((?:\S+\s+)+?)--out harness-report", shard)
    assert merged and len(merged[1].split()) == 3, "each of the three shards named"
    assert "python -m harness.report durations harness-report --out" in shard
