"""The audit's report goes to a folder of its own, so that it leaves the scenarios' run report as it was."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]


def folders(pytester: pytest.Pytester, *args: str) -> tuple[Path, Path]:
    """Where the run report and the audit's JSON go, as the plugin configures them for these arguments."""
    config = pytester.parseconfigure(*args)
    report = config.pluginmanager.get_plugin("harness-report")
    audit = config.pluginmanager.get_plugin("harness-audit")
    return report.folder, audit.json_path


def test_the_audit_writes_its_report_in_an_audit_folder_of_the_report_folder(pytester: pytest.Pytester) -> None:
    report, json_path = folders(pytester, "--pyargs", "harness.audit")
    assert report == pytester.path / "harness-report" / "audit"
    assert json_path == pytester.path / "harness-report" / "audit" / "audit.json"


def test_the_scenarios_keep_the_report_folder(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_scenarios="def test_x(): pass")
    report, _ = folders(pytester, "test_scenarios.py")
    assert report == pytester.path / "harness-report"


def test_a_report_folder_given_on_the_command_line_is_the_audits(pytester: pytest.Pytester) -> None:
    report, json_path = folders(pytester, "--pyargs", "harness.audit", "--harness-report=out")
    assert report == pytester.path / "out" and json_path == pytester.path / "out" / "audit.json"


def test_an_ini_report_folder_gets_the_audit_subfolder(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nharness_report = reports\n")
    report, _ = folders(pytester, "--pyargs", "harness.audit")
    assert report == pytester.path / "reports" / "audit"
