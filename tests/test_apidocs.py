"""The scenario API's reference (docs/api.md) is generated from the docstrings, complete and current."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from harness import apidocs
from harness.stack import AppStack

ROOT = Path(__file__).resolve().parent.parent  # the checkout, wherever the package is installed


def public_members(cls: type, beyond: type | None) -> list[str]:
    """The public methods and properties the harness defines on ``cls``, found apart from the generator's own
    reading (``dir`` and the defining class), so a member the generator would skip is still asked for."""
    names = []
    for name in dir(cls):
        if name.startswith("_") or (beyond is not None and hasattr(beyond, name)):
            continue
        owner = next(k for k in cls.__mro__ if name in vars(k))
        raw = vars(owner)[name]
        callable_ = isinstance(raw, property | classmethod | staticmethod) or inspect.isfunction(raw)
        if callable_ and owner.__module__.startswith("harness."):
            names.append(name)
    return names


def test_docs_api_md_is_current() -> None:
    assert apidocs.main(["--check", "--root", str(ROOT)]) == 0, "run: python -m harness.apidocs"


@pytest.mark.parametrize("documented", apidocs.OBJECTS, ids=[o.cls.__name__ for o in apidocs.OBJECTS])
def test_every_public_method_and_property_is_in_the_reference_with_a_docstring(documented: apidocs.Documented) -> None:
    text = (ROOT / apidocs.PATH).read_text()
    section = text.split(f"\n## {documented.cls.__name__}\n", 1)[1].split("\n## ", 1)[0]
    names = public_members(documented.cls, documented.beyond)
    missing = [name for name in names if f"### `{documented.prefix}{name}" not in section]
    assert not missing, f"{documented.cls.__name__} members missing from {apidocs.PATH}: {missing}"
    bare = [name for name in names if not inspect.getdoc(inspect.getattr_static(documented.cls, name))]
    assert not bare, f"{documented.cls.__name__} members without a docstring: {bare}"


def test_a_control_added_without_a_docstring_or_regenerating_fails_the_check(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def new_control(self, name: str) -> None: ...

    monkeypatch.setattr(AppStack, "new_control", new_control, raising=False)
    assert apidocs.main(["--check", "--root", str(ROOT)]) == 1
    assert "no docstring (say what each does and returns): AppStack.new_control" in capsys.readouterr().err
    new_control.__doc__ = "Does something new; returns None."
    assert apidocs.main(["--check", "--root", str(ROOT)]) == 1
    assert "docs/api.md is out of date: run python -m harness.apidocs" in capsys.readouterr().err


def test_each_entry_has_its_signature_and_docstring() -> None:
    page = apidocs.page()
    assert "### `stack.kill(name: str) -> None`\n\nSIGKILL the program's whole process group" in page
    assert "### `producer.send_many(count: int) -> list[Sent]`\n\n``count`` sends" in page
    assert "### `vhost.depth(queue: str, unacked_within: float = 0.0) -> Depth`" in page
    assert "### `net.blackhole(program: str) -> Iterator[None]` (context manager)" in page
