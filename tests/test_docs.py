"""The scenario docs are generated from the scenarios' docstrings and must be current."""

from pathlib import Path

from harness import docs

SAMPLE = '''"""A lesson in one line."""

import pytest

pytestmark = [pytest.mark.catalogue, pytest.mark.worker_fault]


@pytest.mark.parametrize("stack_spec", [1], indirect=True)
@pytest.mark.browser
def test_something_breaks(stack):
    """First paragraph,
    on two lines.

    Second paragraph.
    """


def helper():
    """Not a scenario."""
'''


def test_a_scenario_module_is_read_without_importing_it(tmp_path: Path) -> None:
    path = tmp_path / "test_sample.py"
    path.write_text(SAMPLE)
    module = docs.read_module(path)
    assert (module.summary, module.markers, module.suite) == (
        "A lesson in one line.",
        ["catalogue", "worker_fault"],
        "Failure catalogue",
    )
    [scenario] = module.scenarios
    assert (scenario.name, scenario.markers) == ("test_something_breaks", ["browser"])
    assert scenario.lesson == "First paragraph, on two lines."
    assert scenario.title == "Something breaks"


def test_docs_scenarios_md_is_current() -> None:
    root = Path(__file__).resolve().parent.parent  # the checkout, wherever the package is installed
    assert docs.main(["--check", "--root", str(root)]) == 0, "run: python -m harness.docs"
