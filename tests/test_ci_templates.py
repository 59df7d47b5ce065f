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
