"""harness.audit.results: the table, the JSON for CI, and the report section."""

from __future__ import annotations

import json

from harness.audit.results import Row, as_json, html_section, table

META = {"celery_app": "proj.celery:app", "describe": "the probe, routed like proj.send (queue emails)"}
ROWS = [
    Row.of(
        "worker_killed", tasks=4, fates={"succeeded": 3, "lost": 1}, decided_by={"acks_late": False},
        lever={"change": "task_acks_late = True", "effect": "it runs again", "shown_by": "t (catalogue scenario)"},
        exceeded=["lost=1 > 0"], nodeid="harness/audit/test_worker_killed.py::t",
    ),
    Row.of("worker_outage", tasks=20, fates={"succeeded": 20}, decided_by={"queue": "emails"}),
    Row.of("broker_restart_backlog", outcome="skipped", notes=["the url broker is not the harness's to stop"]),
]  # fmt: skip


def test_the_table_lists_failures_in_catalogue_order_with_fates_settings_and_levers() -> None:
    lines = table(ROWS, META)
    body = "\n".join(lines)
    assert lines[0].startswith("harness audit of proj.celery:app")
    assert body.index("worker outage") < body.index("worker killed") < body.index("broker restart")
    killed = next(line for line in lines if line.startswith("worker killed"))
    assert "succeeded 3, lost 1" in killed and "acks_late=False" in killed
    assert "more than accepted: lost=1 > 0" in killed
    assert "would change it: task_acks_late = True -> it runs again\n    shown by: t (catalogue scenario)" in body
    assert "skipped: the url broker is not the harness's to stop" in body


def test_the_json_is_stable_for_diffs() -> None:
    text = as_json(ROWS, META)
    data = json.loads(text)
    assert [f["failure"] for f in data["failures"]] == ["worker_outage", "worker_killed", "broker_restart_backlog"]
    assert "nodeid" not in data["failures"][0], "nothing that changes from run to run"
    assert as_json(list(reversed(ROWS)), META) == text


def test_the_report_section_escapes_what_it_shows() -> None:
    section = html_section([Row.of("bad_message", tasks=7, fates={"lost": 1}, notes=["<script>"])], META)
    assert "&lt;script&gt;" in section and "<script>" not in section
