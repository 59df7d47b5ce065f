"""harness.lessons: lesson pages from the scenarios and their recorded runs, and when a recorded run is stale."""

from __future__ import annotations

import json
import time
from pathlib import Path

from harness.lessons import check, fingerprint, lesson_page, lessons, record, source_of

SCENARIO = '''"""Stories of a worker."""
import pytest


@pytest.mark.celery_config(task_acks_late=True)
def test_a_worker_stops(stack):
    """A worker stops.

    What a user sees: ``nothing`` is lost."""
    stack.stop("worker")


def test_another(stack):
    """Another story."""
    stack.start("worker")
'''


def project(tmp_path: Path) -> Path:
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "test_worker.py").write_text(SCENARIO)
    return tmp_path


def report_with(tmp_path: Path, *runs: tuple[str, str]) -> Path:
    """A run report folder holding one record per (node id, outcome)."""
    folder = tmp_path / "report"
    (folder / "data").mkdir(parents=True)
    for n, (nodeid, outcome) in enumerate(runs):
        t0 = time.time()
        run = {
            "nodeid": nodeid, "name": nodeid.split("::")[1], "story": "", "outcome": outcome, "duration": 1.0,
            "timeline": {"started": t0, "marks": [], "samples": []}, "tasks": {}, "fates": {"succeeded": 2},
            "sends": {}, "fate_of": {}, "broker": "RabbitMQ 3.10.8", "celery": "5.7.0", "failure": "not kept",
        }  # fmt: skip
        (folder / "data" / f"{n}.json").write_text(json.dumps(run))
    return folder


def test_a_lessons_code_is_the_function_with_its_decorators_and_without_its_docstring(tmp_path: Path) -> None:
    source = source_of(project(tmp_path) / "scenarios" / "test_worker.py", "test_a_worker_stops")
    assert source.splitlines() == [
        "@pytest.mark.celery_config(task_acks_late=True)",
        "def test_a_worker_stops(stack):",
        '    stack.stop("worker")',
    ]


def test_recording_keeps_the_passed_runs_of_known_scenarios_with_their_codes_fingerprint(tmp_path: Path) -> None:
    root = project(tmp_path)
    report = report_with(
        tmp_path,
        ("scenarios/test_worker.py::test_a_worker_stops", "passed"),
        ("scenarios/test_worker.py::test_another", "failed"),  # a lesson shows what the scenario asserts
        ("scenarios/test_gone.py::test_gone", "passed"),  # no such scenario any more
    )
    assert record([report], root) == ["scenarios/test_worker.py::test_a_worker_stops"]
    [kept] = [json.loads(p.read_text()) for p in (root / "docs/runs").glob("*.json")]
    assert kept["fingerprint"] == fingerprint(source_of(root / "scenarios/test_worker.py", "test_a_worker_stops"))
    assert "failure" not in kept and kept["celery"] == "5.7.0"


def test_a_scenario_without_a_run_or_changed_since_its_run_is_named(tmp_path: Path) -> None:
    root = project(tmp_path)
    record([report_with(tmp_path, ("scenarios/test_worker.py::test_a_worker_stops", "passed"))], root)
    assert check(root) == ["scenarios/test_worker.py::test_another: no recorded run"]
    path = root / "scenarios" / "test_worker.py"
    path.write_text(SCENARIO.replace('stack.stop("worker")', 'stack.kill("worker")'))
    assert check(root) == [
        "scenarios/test_worker.py::test_a_worker_stops: recorded from an earlier version of the scenario",
        "scenarios/test_worker.py::test_another: no recorded run",
    ]
    stale = next(lesson for lesson in lessons(root) if lesson.name == "test_a_worker_stops")
    assert "Recorded from an earlier version of this scenario" in lesson_page(stale, {})
    # Only the story's words changed: the run is still the scenario's.
    path.write_text(SCENARIO.replace("A worker stops.", "A worker is stopped."))
    assert check(root) == ["scenarios/test_worker.py::test_another: no recorded run"]


def test_a_lesson_page_tells_the_story_shows_the_code_and_the_recorded_run(tmp_path: Path) -> None:
    root = project(tmp_path)
    record([report_with(tmp_path, ("scenarios/test_worker.py::test_a_worker_stops", "passed"))], root)
    lesson = next(lesson for lesson in lessons(root) if lesson.name == "test_a_worker_stops")
    versions = {"scenarios/test_worker.py::test_a_worker_stops": [("RabbitMQ 4.0.5", "2 succeeded")]}
    page = lesson_page(lesson, versions)
    assert page.startswith("# A worker stops\n") and "What a user sees: `nothing` is lost." in page
    assert "```python\n@pytest.mark.celery_config(task_acks_late=True)\ndef test_a_worker_stops" in page
    assert "Ran on RabbitMQ 3.10.8, Celery 5.7.0: **2 succeeded**" in page and '<figure class="plot"><svg' in page
    assert "| RabbitMQ 4.0.5 | 2 succeeded |" in page
    assert lesson.page == "lessons/worker/a_worker_stops.md"
