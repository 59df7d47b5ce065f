"""harness.bytecode: a run's bytecode cache where PYTHONDONTWRITEBYTECODE would have every process compile again."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.bytecode import PRUNED_STAMP, cache_for_run, prune


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch):
    """The process's bytecode settings and environment, restored after the test whatever it changed."""
    monkeypatch.setattr(sys, "pycache_prefix", None)
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.delenv("PYTHONPYCACHEPREFIX", raising=False)
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    return monkeypatch


def test_a_process_started_during_the_run_writes_its_bytecode_to_the_cache_not_beside_the_source(
    environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    source = tmp_path / "src" / "module_x.py"
    source.parent.mkdir()
    source.write_text("VALUE = 1\n")
    cache = cache_for_run(tmp_path / "cache")
    assert cache is not None
    try:
        subprocess.run([sys.executable, "-c", "import module_x"], cwd=source.parent, check=True)
    finally:
        cache.close()
    assert not (source.parent / "__pycache__").exists()
    [compiled] = (tmp_path / "cache").rglob("module_x.*.pyc")
    assert compiled.parent == tmp_path / "cache" / source.parent.relative_to("/")
    assert sys.pycache_prefix is None and sys.dont_write_bytecode
    assert os.environ["PYTHONDONTWRITEBYTECODE"] == "1" and "PYTHONPYCACHEPREFIX" not in os.environ


def test_nothing_changes_without_pythondontwritebytecode_or_with_a_prefix_of_the_users(
    environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    environment.delenv("PYTHONDONTWRITEBYTECODE")
    assert cache_for_run(tmp_path) is None
    environment.setenv("PYTHONDONTWRITEBYTECODE", "1")
    environment.setenv("PYTHONPYCACHEPREFIX", str(tmp_path / "theirs"))
    assert cache_for_run(tmp_path) is None


def test_cached_files_whose_source_is_gone_are_pruned(tmp_path: Path) -> None:
    kept_source = tmp_path / "src" / "kept.py"
    kept_source.parent.mkdir()
    kept_source.write_text("")
    cache = tmp_path / "cache"
    kept = cache / kept_source.parent.relative_to("/") / "kept.cpython-311.pyc"
    rewritten = cache / kept_source.parent.relative_to("/") / "kept.cpython-311-pytest-8.3.4.pyc"
    gone = cache / kept_source.parent.relative_to("/") / "gone.cpython-311.pyc"
    for path in (kept, rewritten, gone):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    assert prune(cache) == 1
    assert kept.exists() and rewritten.exists() and not gone.exists()


def test_a_run_prunes_the_cache_at_most_once_a_day(environment: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Walking the cache costs every run a fraction of a second: the first run of the day prunes, the next do not."""
    cache = tmp_path / "cache"
    orphan = cache / "nowhere" / "gone.cpython-311.pyc"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"")
    first = cache_for_run(cache)
    assert first is not None
    first.close()
    assert not orphan.exists() and (cache / PRUNED_STAMP).exists()
    orphan.write_bytes(b"")
    second = cache_for_run(cache)
    assert second is not None
    second.close()
    assert orphan.exists(), "pruned again the same day"
