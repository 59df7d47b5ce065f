"""The shape of ``harness/``: broker-specific code stays in its family's folder, the harness never imports the demo
app, the names scenarios use are importable from ``harness``, and moved modules keep their old paths."""

from __future__ import annotations

import ast
import importlib
import warnings
from pathlib import Path

import pytest

import harness

HARNESS = Path(harness.__file__).parent
FAMILIES = HARNESS / "brokers"
# What only a broker family's own folder may import.
FAMILY_ONLY = ("amqp", "pika", "redis", "harness.brokers.rabbitmq.management")


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def modules() -> list[Path]:
    return sorted(HARNESS.rglob("*.py"))


def family_of(path: Path) -> str | None:
    relative = path.relative_to(FAMILIES).parts if path.is_relative_to(FAMILIES) else ()
    return relative[0] if len(relative) > 1 else None


def test_broker_specific_imports_live_only_under_their_familys_folder() -> None:
    offenders = [
        f"{path.relative_to(HARNESS.parent)} imports {name}"
        for path in modules()
        if family_of(path) is None
        for name in imports_of(path)
        if any(name == banned or name.startswith(banned + ".") for banned in FAMILY_ONLY)
    ]
    assert offenders == []


def test_one_family_does_not_import_the_others_folder() -> None:
    crossing = [
        f"{path.relative_to(HARNESS.parent)} imports {name}"
        for path in modules()
        if (family := family_of(path)) is not None
        for name in imports_of(path)
        if name.startswith("harness.brokers.") and name.split(".")[2] not in (family, "base")
        and (FAMILIES / name.split(".")[2]).is_dir()
    ]  # fmt: skip
    assert crossing == []


def test_the_harness_never_imports_the_demo_app() -> None:
    assert [p.name for p in modules() if any(n.startswith("app_under_test") for n in imports_of(p))] == []


@pytest.mark.parametrize("name", harness.__all__)
def test_the_names_scenarios_use_are_importable_from_harness(name: str) -> None:
    assert getattr(harness, name) is not None


@pytest.mark.parametrize(
    ("old", "new", "name"),
    [
        ("harness.vhost", "harness.brokers.rabbitmq.vhost", "ScenarioVhost"),
        ("harness.management", "harness.brokers.rabbitmq.management", "ManagementAPI"),
        ("harness.brokers.local", "harness.brokers.rabbitmq.local", "LocalBroker"),
        ("harness.brokers.docker", "harness.brokers.rabbitmq.docker", "DockerBroker"),
    ],
)
def test_a_moved_module_keeps_its_old_path_with_a_warning(old: str, new: str, name: str) -> None:
    import sys

    sys.modules.pop(old, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        moved = importlib.import_module(old)
    assert getattr(moved, name) is getattr(importlib.import_module(new), name)
    assert any(f"{old} moved to {new}" in str(w.message) for w in caught)
