"""The examples: apps the harness was not written for, each with its own scenarios, run as a user would.

Each example folder is a project of its own (``pytest.ini`` naming its Celery and web apps, a
``tests/conftest.py`` of at most 15 lines of code). Its scenarios run in a pytest of their own, in that
folder, against this session's broker (as a ``url`` broker: the examples inject no broker fault).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from harness.brokers.base import Broker

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NAMES = sorted(p.name for p in EXAMPLES.iterdir() if (p / "pytest.ini").exists())
CONFTEST_LIMIT = 15  # lines of code


def code_lines(path: Path) -> int:
    """Lines of code: not blank, not a comment, not a docstring."""
    tree = ast.parse(path.read_text())
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.FunctionDef | ast.ClassDef) and ast.get_docstring(node):
            first = node.body[0]
            docstrings.update(range(first.lineno, first.end_lineno + 1))
    lines = path.read_text().splitlines()
    return sum(
        1
        for n, line in enumerate(lines, 1)
        if line.strip() and not line.strip().startswith("#") and n not in docstrings
    )


def test_there_are_three_examples() -> None:
    assert NAMES == ["django_project", "flask_factory", "worker_only"]


@pytest.mark.parametrize("name", NAMES)
def test_each_examples_conftest_is_short(name: str) -> None:
    lines = code_lines(EXAMPLES / name / "tests" / "conftest.py")
    assert lines <= CONFTEST_LIMIT, f"examples/{name}/tests/conftest.py has {lines} lines of code"


@pytest.mark.parametrize("name", NAMES)
def test_each_examples_scenarios_pass_against_a_real_broker(name: str, broker: Broker, tmp_path: Path) -> None:
    e = broker.endpoint
    args = ["--harness-broker", "url", "--harness-broker-url", e.amqp_url()]
    if e.management_url:
        args += ["--harness-management-url", e.management_url]
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--harness-report={tmp_path}", *args]
    done = subprocess.run(command, cwd=EXAMPLES / name, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"examples/{name}: exit {done.returncode}\n{done.stdout[-6000:]}{done.stderr[-2000:]}"
    assert " passed" in done.stdout.splitlines()[-1] and "failed" not in done.stdout.splitlines()[-1]
