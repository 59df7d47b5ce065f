"""The version matrix (docs/version-matrix.md, the brokers guide's section) is generated from recorded runs of both
RabbitMQ versions, and must be current."""

import json
from pathlib import Path

import pytest

from harness import matrix

ROOT = Path(__file__).resolve().parents[1]


def report(tmp_path: Path, version: str, outcomes: dict[str, tuple[str, dict[str, int]]]) -> Path:
    folder = tmp_path / f"report-{version}"
    (folder / "data").mkdir(parents=True)
    for i, (nodeid, (outcome, fates)) in enumerate(outcomes.items()):
        data = {"nodeid": nodeid, "outcome": outcome, "fates": fates, "rabbitmq": version}
        (folder / "data" / f"{i}.json").write_text(json.dumps(data))
    return folder


def test_a_run_report_becomes_a_record_and_the_table_shows_each_version(tmp_path: Path) -> None:
    same = "scenarios/test_a.py::test_same"
    differs = "scenarios/test_a.py::test_differs[quorum]"
    three = matrix.record(
        report(tmp_path, "3.10.8", {same: ("passed", {"succeeded": 2}), differs: ("passed", {"queued": 1})})
    )
    four = matrix.record(
        report(tmp_path, "4.0.5", {same: ("passed", {"succeeded": 2}), differs: ("failed", {"lost": 1, "failed": 0})})
    )

    text = matrix.table([three, four])
    assert "| RabbitMQ 3.10.8 | RabbitMQ 4.0.5 |" in text
    assert "| [`test_differs[quorum]`](lessons/a/differs.md) | 1 queued | **failed**: 1 lost |" in text
    assert "test_same" not in matrix.table([three, four], only_different=True)


def test_a_report_of_two_versions_is_refused(tmp_path: Path) -> None:
    mixed = report(tmp_path, "3.10.8", {"a::t": ("passed", {})})
    (mixed / "data" / "x.json").write_text(
        json.dumps({"nodeid": "b::t", "outcome": "passed", "fates": {}, "rabbitmq": "4.0.5"})
    )
    with pytest.raises(SystemExit, match="one version a run"):
        matrix.record(mixed)


def test_the_committed_matrix_comes_from_runs_of_rabbitmq_3_and_4_and_is_current() -> None:
    majors = sorted(run["rabbitmq"].split(".")[0] for run in matrix.load(ROOT))
    assert majors == ["3", "4"], f"docs/matrix/ records runs of RabbitMQ {majors}"
    assert matrix.write(ROOT, check=True) == [], "run python -m harness.matrix"


def test_a_scenario_that_errored_before_its_body_is_recorded_from_the_junit_xml(tmp_path: Path) -> None:
    folder = report(tmp_path, "4.0.5", {"scenarios/test_a.py::test_ran": ("passed", {"succeeded": 1})})
    (folder / "junit.xml").write_text(
        '<testsuites><testsuite><testcase classname="scenarios.test_a" name="test_ran"/>'
        '<testcase classname="scenarios.test_a" name="test_broke[x]"><error message="boom"/></testcase>'
        "</testsuite></testsuites>"
    )
    run = matrix.record(folder)
    assert run["scenarios"]["scenarios/test_a.py::test_broke[x]"] == {"outcome": "error", "fates": {}}
    assert matrix.cell(run["scenarios"]["scenarios/test_a.py::test_broke[x]"]) == "**error**: no task seen"
