"""The audit on each broker family: which failures apply (declared once, in each failure's definition), what a
failure is on Redis (its deciding facts, levers, settings and notes), and how the table says it. Pure logic."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from harness.audit.failures import (
    AUDIT_VISIBILITY_S,
    BY_KEY,
    FAILURES,
    KOMBU_VISIBILITY_S,
    NO_CONSUMER_TIMEOUT,
    facts,
    reference,
    row_settings,
    select,
    visibility_of,
)
from harness.audit.plan import make_plan
from harness.audit.results import AuditRecorder, Row, as_json, table
from harness.brokers import TRANSPORTS
from harness.errors import HarnessError
from harness.spec import StackSpec

ROOT = Path(__file__).resolve().parents[2]
AUDIT = ROOT / "harness" / "audit"
# What the audit's scenarios may call only on RabbitMQ: a failure whose scenario does must not claim Redis.
RABBITMQ_ONLY = ("rabbitmqctl", "rabbit_settings", 'how="app"', "alarm(")


def test_every_failure_applies_on_the_families_it_declares_and_says_why_not_on_the_others() -> None:
    for failure in FAILURES:
        assert set(failure.transports) <= set(TRANSPORTS), failure.key
        for transport in TRANSPORTS:
            why = failure.why_not(transport)
            assert (why is None) == (transport in failure.transports), (failure.key, transport)
            if why is not None:
                assert failure.not_on.get(transport), f"{failure.key} gives no reason for {transport}"


def test_the_consumer_timeout_rows_are_not_applicable_on_redis_with_the_reason() -> None:
    runs, not_applicable = select(["consumer_timeout", "consumer_timeout_behind"], "redis")
    assert runs == []
    assert not_applicable == {"consumer_timeout": NO_CONSUMER_TIMEOUT, "consumer_timeout_behind": NO_CONSUMER_TIMEOUT}
    assert "visibility_timeout" in NO_CONSUMER_TIMEOUT
    runs, not_applicable = select(["consumer_timeout"], "rabbitmq")
    assert [f.key for f in runs] == ["consumer_timeout"] and not not_applicable


def audit_scenarios() -> dict[str, str]:
    """Each audit scenario's source, by the failures its ``@pytest.mark.audit`` names (and its fixtures')."""
    found = {}
    for path in AUDIT.glob("test_*.py"):
        source = path.read_text()
        for node in ast.parse(source).body:
            if not isinstance(node, ast.FunctionDef):
                continue
            for decorator in node.decorator_list:
                if isinstance(decorator, ast.Call) and getattr(decorator.func, "attr", None) == "audit":
                    keys = [a.value for a in decorator.args if isinstance(a, ast.Constant)]
                    # A scenario's fixtures live in its module: read the whole module.
                    found.update({key: source for key in keys})
    return found


def test_a_failure_whose_scenario_uses_rabbitmq_only_levers_does_not_claim_redis() -> None:
    scenarios = audit_scenarios()
    assert set(scenarios) == set(BY_KEY), "every failure has its scenario"
    for key, source in scenarios.items():
        uses = [word for word in RABBITMQ_ONLY if word in source]
        if uses:
            assert BY_KEY[key].transports == ("rabbitmq",), f"{key}'s scenario uses {uses}"


def test_on_redis_a_failure_never_claims_a_rabbitmq_scenarios_figures() -> None:
    for failure in FAILURES:
        if failure.why_not("redis") is None:
            for match in failure.on_transport("redis").matches:
                assert match.scenario.startswith("scenarios/redis/"), (failure.key, match.scenario)


def test_every_redis_story_the_audit_names_exists() -> None:
    defined = set()
    for path in (ROOT / "scenarios" / "redis").glob("test_*.py"):
        names = [n.name for n in ast.parse(path.read_text()).body if isinstance(n, ast.FunctionDef)]
        defined |= {f"scenarios/redis/{path.name}::{name}" for name in names}
    named = set()
    for failure in FAILURES:
        variant = failure.on_transport("redis")
        named |= {lever.shown_by for lever in variant.levers if lever.shown_by and "/redis/" in lever.shown_by}
        named |= {match.scenario for match in variant.matches}
    assert named and named <= defined, sorted(named - defined)
    text = reference(sorted(named)[0])
    assert "docs/scenarios.md" not in text and "scenarios/redis/" in text, "no anchor that does not exist"


def test_a_killed_worker_on_redis_runs_with_a_short_visibility_timeout_over_the_apps_own_options() -> None:
    runs, _ = select(["worker_killed"], "redis")
    settings = row_settings(runs, {"global_keyprefix": "shop:", "visibility_timeout": 7200})
    assert settings["broker_transport_options"]["global_keyprefix"] == "shop:", "the app's other options stay"
    assert settings["broker_transport_options"]["visibility_timeout"] == AUDIT_VISIBILITY_S
    assert row_settings(select(["worker_killed"], "rabbitmq")[0], {"x": 1}) == {}, "RabbitMQ: the app's settings"
    assert row_settings(select(["warm_shutdown"], "redis")[0], None) == {}, "a warm shutdown: the app's own value"


@pytest.mark.parametrize(
    ("options", "expected"),
    [(None, (KOMBU_VISIBILITY_S, "kombu")), ({}, (KOMBU_VISIBILITY_S, "kombu")), ({"visibility_timeout": 43200.0},
     (43200, "the app's"))],
)  # fmt: skip
def test_the_apps_own_visibility_timeout_and_where_it_comes_from(options, expected) -> None:
    seconds, source = visibility_of(options)
    assert seconds == expected[0] and source.startswith(expected[1])


def test_the_killed_worker_row_on_redis_says_when_the_apps_own_value_brings_the_tasks_back() -> None:
    redis = BY_KEY["worker_killed"].on_transport("redis")
    broker = {
        "transport": "redis",
        "visibility_timeout": 43200,
        "visibility_from": "the app's broker_transport_options",
    }
    known = facts({"settings": {"worker_prefetch_multiplier": 4}, "tasks": {}}, "t", {"concurrency": 1}, "q", None,
                  broker)  # fmt: skip
    [note] = redis.noted(known)
    assert "after 43200s" in note and f"shortened to {AUDIT_VISIBILITY_S}s" in note
    assert redis.deciding(known)["visibility_timeout"] == 43200
    assert redis.differs.startswith("on RabbitMQ: ")
    assert redis.lever(known).shown_by.startswith("scenarios/redis/"), "Redis's own story, not RabbitMQ's"
    assert BY_KEY["worker_killed"].on_transport("rabbitmq").differs is None


def test_the_redis_restart_row_is_decided_by_the_servers_persistence_and_names_appendonly() -> None:
    redis = BY_KEY["broker_restart_backlog"].on_transport("redis")
    assert redis.persistence and redis.decided_by == ("persistence",)
    off = {"persistence": "off"}
    assert "appendonly yes" in redis.lever(off).change and "appendonly yes" in redis.noted(off)[0]
    assert "survive a restart" in redis.differs
    assert redis.lever({"persistence": "aof-everysec"}).change.startswith("keep appendonly yes")


def test_a_bad_persistence_option_is_one_sentence() -> None:
    info = {"default_queue": "celery", "tasks": {}}
    with pytest.raises(HarnessError, match=r"^--audit-redis-persistence 'aof' is not one of off, rdb, "):
        make_plan(StackSpec(celery_app="proj:app"), info, persistence="aof")
    plan = make_plan(
        StackSpec(celery_app="proj:app"), {**info, "settings": {"broker_transport_options": {"visibility_timeout": 9}}}
    )
    assert (plan.redis_persistence, plan.transport_options) == ("off", {"visibility_timeout": 9})


def test_a_not_applicable_row_is_shown_with_its_reason_never_dropped_and_never_with_a_fate(tmp_path) -> None:
    recorder = AuditRecorder(tmp_path / "audit.json")
    recorder.not_applicable("consumer_timeout", NO_CONSUMER_TIMEOUT)
    recorder.add(Row.of("worker_killed", tasks=4, fates={"succeeded": 3, "lost": 1},
                        differs=BY_KEY["worker_killed"].on_transport("redis").differs))  # fmt: skip
    meta = {"transport": "redis", "redis_persistence": "off",
            "broker": {"product": "Redis", "version": "7.0.15", "kind": "local"}}  # fmt: skip
    lines = table(recorder.rows, meta)
    assert "broker Redis 7.0.15 (transport redis, local broker; persistence off)" in lines
    [row] = [line for line in lines if line.startswith("a task past the broker's consumer timeout")]
    assert row.split()[-1] == "instead" and f"not applicable: {NO_CONSUMER_TIMEOUT}" in row
    assert any(line.strip().startswith("on RabbitMQ: the held messages") for line in lines)
    body = as_json(recorder.rows, meta)
    assert '"outcome": "not applicable"' in body and '"differs": "on RabbitMQ: ' in body


def test_a_rabbitmq_header_says_its_version() -> None:
    meta = {"broker": {"rabbitmq_version": "3.10.8", "kind": "local"}}
    assert "broker RabbitMQ 3.10.8 (transport rabbitmq, local broker)" in table([], meta)
