"""harness.audit.failures: what decides each failure, what would change it, which catalogue scenario matches."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import docs
from harness.audit.failures import BY_KEY, FAILURES, KILLED_EARLY, KILLED_LATE, POOL_REJECT, facts, queue_facts

ROOT = Path(__file__).resolve().parents[2]
CONFIG = {  # a worker's config line, as the launcher writes it
    "settings": {"worker_prefetch_multiplier": 4, "task_default_delivery_mode": None, "accept_content": ["json"]},
    "tasks": {"harness.probe": {"acks_late": False, "reject_on_worker_lost": None, "queue": "emails"}},
}
WORKER = {"concurrency": 1, "pool": "prefork"}


def known(**task_options) -> dict:
    config = {**CONFIG, "tasks": {"harness.probe": {**CONFIG["tasks"]["harness.probe"], **task_options}}}
    return facts(config, "harness.probe", WORKER, "emails", {"durable": True, "arguments": {}, "type": "classic"})


def test_every_catalogue_scenario_the_audit_names_exists() -> None:
    scenarios = {f"scenarios/{m.path.name}::{s.name}" for m in docs.read_all(ROOT / "scenarios") for s in m.scenarios}
    named = {lever.shown_by for f in FAILURES for lever in f.levers if lever.shown_by}
    named |= {match.scenario for f in FAILURES for match in f.matches}
    assert named and named <= scenarios, f"not in scenarios/: {sorted(named - scenarios)}"


def test_every_failure_says_what_would_change_it_under_any_facts() -> None:
    for failure in FAILURES:
        for acks_late in (False, True):
            assert failure.lever(known(acks_late=acks_late, reject_on_worker_lost=acks_late)), failure.key


def test_the_lever_and_the_matching_scenario_follow_the_settings() -> None:
    killed = BY_KEY["worker_killed"]
    early, late = known(), known(acks_late=True)
    assert (killed.lever(early).change, killed.lever(early).shown_by) == ("task_acks_late = True", KILLED_LATE)
    assert "idempotent" in killed.lever(late).change and killed.lever(late).shown_by == KILLED_EARLY
    assert (killed.same_as(early), killed.same_as(late)) == (KILLED_EARLY, KILLED_LATE)
    assert killed.deciding(late) == {"acks_late": True, "worker_prefetch_multiplier": 4}


def test_a_scenario_matches_only_when_every_deciding_setting_agrees() -> None:
    pool = BY_KEY["pool_process_killed"]
    assert pool.same_as(known(acks_late=True, reject_on_worker_lost=True)) == POOL_REJECT
    assert pool.same_as(known(acks_late=True)) is None, "acks_late without reject_on_worker_lost: no catalogue twin"
    assert pool.lever(known(acks_late=True)).shown_by == POOL_REJECT
    one_prefetched = {**CONFIG, "settings": {**CONFIG["settings"], "worker_prefetch_multiplier": 1}}
    killed = facts(one_prefetched, "harness.probe", WORKER, "emails")
    assert BY_KEY["worker_killed"].same_as(killed) is None, "one task held, not the catalogue's four"


@pytest.mark.parametrize(
    ("task_mode", "app_mode", "expected"),
    [
        (None, None, "persistent"),
        (None, "transient", "transient"),
        (2, "transient", "persistent"),
        (1, None, "transient"),
    ],
)
def test_the_delivery_mode_is_the_tasks_else_the_apps(task_mode, app_mode, expected) -> None:
    config = {"settings": {"task_default_delivery_mode": app_mode}, "tasks": {"t": {"delivery_mode": task_mode}}}
    assert facts(config, "t", WORKER, "q")["delivery_mode"] == expected


def test_queue_facts_come_from_its_arguments_or_its_policy() -> None:
    declared = queue_facts({"durable": True, "arguments": {"x-queue-type": "quorum", "x-message-ttl": 60000}})
    assert (declared["queue_type"], declared["message_ttl"]) == ("quorum", 60000)
    assert declared["dead_letter_exchange"] is None
    policy = queue_facts({"type": "classic", "effective_policy_definition": {"dead-letter-exchange": "dlx"}})
    assert policy["dead_letter_exchange"] == "dlx"
    assert queue_facts(None)["queue_durable"] is None, "unknown without a management API, not guessed"
