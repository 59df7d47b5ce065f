"""harness.audit.results: the table, the JSON for CI, and the report section."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness import options
from harness.audit.results import Row, as_json, html_section, merge, run_label, table

pytest_plugins = ["pytester"]
BROKER_OPTIONS = (
    "harness_broker", "harness_broker_url", "harness_management_url", "harness_rabbitmq_image",
    "harness_docker_network", "harness_rabbitmq_server",
)  # fmt: skip

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


def test_a_run_of_some_rows_replaces_those_and_keeps_the_others() -> None:
    """``-k killed`` after a whole audit: the JSON kept only the killed row (the rest of the table was erased)."""
    whole = [Row.of("worker_outage", tasks=20, fates={"succeeded": 20}, run="the whole audit"),
             Row.of("worker_killed", tasks=4, fates={"succeeded": 3, "lost": 1}, run="the whole audit")]  # fmt: skip
    again = [Row.of("worker_killed", tasks=4, fates={"succeeded": 3, "duplicated": 1}, run="-k killed")]
    every, kept = merge(again, META, as_json(whole, META))
    rows = {row["failure"]: row for row in json.loads(as_json(every, META))["failures"]}
    assert rows["worker_killed"]["fates"] == {"succeeded": 3, "duplicated": 1}
    assert rows["worker_killed"]["run"] == "-k killed"
    assert rows["worker_outage"]["fates"] == {"succeeded": 20} and rows["worker_outage"]["run"] == "the whole audit"
    assert [row.failure for row in kept] == ["worker_outage"]


@pytest.mark.parametrize(
    "previous",
    [
        None, "not json", json.dumps({"failures": "x"}),
        as_json([Row.of("worker_outage")], {**META, "celery_app": "other:app"}),
    ],
    ids=["no-file", "not-json", "not-ours", "another-audit"],
)  # fmt: skip
def test_rows_of_another_audit_or_no_readable_file_are_not_kept(previous: str | None) -> None:
    rows = [Row.of("worker_killed", tasks=4)]
    assert merge(rows, META, previous) == (rows, [])


def test_a_run_is_named_by_its_selection(pytester: pytest.Pytester) -> None:
    config = pytester.parseconfigure("-k", "killed", "-m", "worker_fault")
    assert run_label(config) == "-k killed -m worker_fault"
    assert run_label(pytester.parseconfigure()) == "the whole audit"


SHOP = """import os

from celery import Celery

app = Celery("shop", broker=os.environ.get("CELERY_BROKER_URL", "amqp://guest:guest@127.0.0.1:1//"))
app.conf.worker_concurrency = 3  # what the team's workers run with
"""


def test_two_runs_of_some_rows_make_one_json_of_a_worker_with_the_apps_concurrency(
    tmp_path: Path, pytestconfig: pytest.Config
) -> None:
    """Two real audits of an app whose workers run ``worker_concurrency = 3``, each of one failure (``-k``): the
    JSON has both rows, each saying its run, and the worker audited ran 3 pool processes, saying why."""
    (tmp_path / "shop.py").write_text(SHOP)
    (tmp_path / "pytest.ini").write_text("[pytest]\ncelery_app = shop:app\n")
    report = tmp_path / "audit.json"
    broker = [
        f"--{name.replace('_', '-')}={value}" for name in BROKER_OPTIONS if (value := options.get(pytestconfig, name))
    ]
    for selection in ("worker_outage", "worker_killed_mid"):
        done = subprocess.run(
            [sys.executable, "-m", "harness.audit", "-q", "-p", "no:randomly", "--harness-no-report",
             f"--audit-json={report}", "--audit-work=0.5", "-k", selection, *broker],
            cwd=tmp_path, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode in (0, 1), done.stdout[-3000:] + done.stderr[-2000:]
    data = json.loads(report.read_text())
    runs = {row["failure"]: row["run"] for row in data["failures"]}
    assert runs == {"worker_outage": "-k worker_outage", "worker_killed": "-k worker_killed_mid"}, done.stdout[-3000:]
    assert data["concurrency"] == 3, data["worker"]
    assert data["worker"] == (
        "worker (-Q celery -c 3 -P prefork; concurrency from the app's own (worker_concurrency=3); "
        "pool from Celery's default (worker_pool='prefork'))"
    )
    assert "kept from earlier runs: worker_outage (-k worker_outage)" in done.stdout
