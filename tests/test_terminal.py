"""harness.terminal: a notice is a line of its own, and pytest's progress line goes on below it."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

CONFTEST = """
import pytest
from harness.terminal import notice

@pytest.fixture
def noisy(pytestconfig):
    notice(pytestconfig, "harness: a notice")
"""
TESTS = """
def test_one():
    pass

def test_two(noisy):
    pass

def test_three():
    pass
"""


@pytest.mark.parametrize("verbosity", [[], ["-q"]], ids=["default", "quiet"])
def test_a_notice_raised_mid_file_has_its_own_line(pytester: pytest.Pytester, verbosity: list[str]) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_file=TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *verbosity)
    result.assert_outcomes(passed=3)
    lines = result.outlines
    at = lines.index("harness: a notice")
    # The progress line before it ends with test_one's dot; below it the line goes on, with the file's name
    # again where pytest shows one, and test_two's and test_three's dots.
    prefix = "" if verbosity else "test_file.py "
    assert lines[at - 1] == f"{prefix}.", lines
    assert lines[at + 1].startswith(f"{prefix}..") and lines[at + 1].endswith("[100%]"), lines
