"""The audit against the demo app gives, for each failure, the figures of the catalogue scenario that has the
same arrangement and the same deciding settings: with Celery's defaults, and with task_acks_late and
task_reject_on_worker_lost. The catalogue's figures are the fate counts each of its scenarios asserts
(``verdict.assert_counts(...)``, evaluated in the scenario's module), which the scenario suite checks
against a real broker. Each configuration is one real run of ``python -m harness.audit`` with a broker of
its own (its broker faults need one it can stop), which also checks ``--audit-expect``: exit status and
JUnit."""

from __future__ import annotations

import ast
import json
import runpy
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from harness import options
from harness.audit.failures import BY_KEY, NO_CONSUMER_TIMEOUT

ROOT = Path(__file__).resolve().parents[2]
BROKER_OPTIONS = ("harness_broker", "harness_rabbitmq_image", "harness_docker_network", "harness_rabbitmq_server")

CONFIGURATIONS = {
    "defaults": {
        "settings": {},
        "expect": "lost=0",
        "matched": {
            "worker_outage", "worker_killed", "pool_process_killed", "warm_shutdown", "supervisorctl_stop",
            "cold_shutdown", "broker_restart_backlog", "publish_while_broker_down", "bad_message",
        },
        # The failures that lose a task with early acknowledgement (and the undecodable message).
        "failed": {
            "test_worker_killed_mid_task", "test_cold_shutdown_mid_task", "test_a_bad_message_on_the_apps_queue",
        },
    },
    "acks-late": {
        "settings": {"task_acks_late": True, "task_reject_on_worker_lost": True},
        "expect": "lost=0, bad_message:lost=1",
        "matched": {
            "worker_outage", "worker_killed", "pool_process_killed", "broker_restart_backlog",
            "broker_restart_in_flight", "publish_while_broker_down", "consumer_timeout", "bad_message",
        },
        "failed": set(),
    },
}  # fmt: skip


def catalogue_figures(nodeid: str) -> dict[str, int]:
    """The fate counts a catalogue scenario asserts, its constants (TASKS - 1...) evaluated in its module."""
    path, name = nodeid.split("::")
    source = ROOT / path
    function = next(n for n in ast.parse(source.read_text()).body if isinstance(n, ast.FunctionDef) and n.name == name)
    [call] = [
        node for node in ast.walk(function)
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "assert_counts"
    ]  # fmt: skip
    namespace = runpy.run_path(str(source))
    counts = {kw.arg: eval(compile(ast.Expression(kw.value), path, "eval"), namespace) for kw in call.keywords}
    return {fate: n for fate, n in counts.items() if n}


def broker_args(config: pytest.Config) -> list[str]:
    if options.get(config, "harness_broker") == "url":
        pytest.skip("the audit's broker faults need a broker the harness owns; this run was given a url broker")
    return [f"--{name.replace('_', '-')}={v}" for name in BROKER_OPTIONS if (v := options.get(config, name))]


@pytest.mark.parametrize("name", list(CONFIGURATIONS))
def test_the_audit_of_the_demo_gives_the_figures_of_the_matching_catalogue_scenarios(
    name: str, tmp_path: Path, pytestconfig: pytest.Config
) -> None:
    configuration = CONFIGURATIONS[name]
    report, junit = tmp_path / "audit.json", tmp_path / "junit.xml"
    command = [
        sys.executable, "-m", "harness.audit", "app_under_test.tasks:app", "-q", "-p", "no:randomly",
        "--harness-no-report", f"--audit-json={report}", f"--junitxml={junit}",
        f"--audit-expect={configuration['expect']}", f"--audit-config={json.dumps(configuration['settings'])}",
        *broker_args(pytestconfig),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)

    rows = {row["failure"]: row for row in json.loads(report.read_text())["failures"]}
    matched = {key: row for key, row in rows.items() if row["same_as"]}
    assert set(matched) == configuration["matched"], done.stdout[-3000:]
    differences = {
        key: (row["fates"], row["same_as"], catalogue_figures(row["same_as"]))
        for key, row in matched.items()
        if row["fates"] != catalogue_figures(row["same_as"])
    }
    assert not differences, f"audit vs catalogue (audit, scenario, catalogue): {differences}\n{done.stdout[-3000:]}"

    cases = ElementTree.parse(junit).iter("testcase")
    failed = {case.get("name") for case in cases if case.find("failure") is not None}
    assert failed == configuration["failed"], done.stdout[-3000:]
    assert done.returncode == (1 if configuration["failed"] else 0), done.stdout[-3000:]


REDIS_APPLIES = {key for key in BY_KEY if BY_KEY[key].why_not("redis") is None}


def test_the_audit_on_redis_runs_the_rows_that_apply_and_says_why_not_the_others(tmp_path: Path) -> None:
    """The same audit of the demo on a Redis the harness starts: every row that applies on Redis is recorded, the
    matched ones with the figures of the Redis story they repeat; the RabbitMQ-only rows say "not applicable" and
    why. A killed worker's held tasks come back within the audit's short visibility timeout (the row says when the
    app's own would bring them back), and a crash of a Redis without persistence loses the whole backlog."""
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed (scripts/bootstrap installs it)")
    report, junit = tmp_path / "audit.json", tmp_path / "junit.xml"
    command = [
        sys.executable, "-m", "harness.audit", "app_under_test.tasks:app", "-q", "-p", "no:randomly",
        "--harness-no-report", f"--audit-json={report}", f"--junitxml={junit}", "--audit-expect=lost=0",
        "--harness-transport", "redis", "--harness-broker", "local",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    out = done.stdout[-5000:]

    audit = json.loads(report.read_text())
    rows = {row["failure"]: row for row in audit["failures"]}
    assert (audit["transport"], audit["broker"]["product"], audit["redis_persistence"]) == ("redis", "Redis", "off")
    assert audit["broker"]["version"], "the server's version"
    assert {k for k, row in rows.items() if row["outcome"] == "recorded"} == REDIS_APPLIES, out
    for key in set(BY_KEY) - REDIS_APPLIES:
        assert (rows[key]["outcome"], rows[key]["fates"]) == ("not applicable", {}), out
        assert rows[key]["notes"] == [NO_CONSUMER_TIMEOUT]

    matched = {key: row for key, row in rows.items() if row["same_as"]}
    assert set(matched) == {"worker_outage", "publish_while_broker_down"}, out
    for row in matched.values():
        assert row["same_as"].startswith("scenarios/redis/") and row["fates"] == catalogue_figures(row["same_as"]), out
    assert rows["worker_killed"]["fates"] == {"succeeded": 3, "lost": 1}, out
    assert any("come back after 3600s" in note for note in rows["worker_killed"]["notes"]), out
    assert rows["warm_shutdown"]["fates"] == {"succeeded": 4}, "put back at once, with the app's own 3600 s"
    assert rows["broker_restart_backlog"]["fates"] == {"lost": 20}, out
    assert rows["broker_restart_backlog"]["differs"].startswith("on RabbitMQ: ")
    assert "broker Redis " in done.stdout and "not applicable: RabbitMQ's consumer_timeout" in done.stdout

    cases = ElementTree.parse(junit).iter("testcase")
    failed = {case.get("name") for case in cases if case.find("failure") is not None}
    assert failed == {
        "test_worker_killed_mid_task", "test_cold_shutdown_mid_task", "test_a_bad_message_on_the_apps_queue",
        "test_broker_restart_under_load",
    }, out  # fmt: skip
    assert done.returncode == 1, out
