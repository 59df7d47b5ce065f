"""The deploy check's tests: the example app's repository (``shop_example``), made fresh per test."""

from __future__ import annotations

from pathlib import Path

import pytest
from shop_example import make_repo


@pytest.fixture
def shop_repo(tmp_path: Path) -> Path:
    """A git repository whose HEAD~1 is the example app's v1 and HEAD its v2."""
    return make_repo(tmp_path / "shop-repo")
