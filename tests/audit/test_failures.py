"""harness.audit.failures: what decides each failure, what would change it, which catalogue scenario matches."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import docs
from harness.audit.failures import (
    BY_KEY,
    FAILURES,
    KILLED_EARLY,
    KILLED_LATE,
    POOL_REJECT,
    behind_note,
    facts,
    prefetches_behind,
    queue_facts,
    reference,
)
from harness.audit.results import lever_dict

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


def test_a_lever_names_only_the_settings_not_already_as_it_asks() -> None:
    pool = BY_KEY["pool_process_killed"]
    late = known(acks_late=True)  # the trial app's case: acks_late on, reject_on_worker_lost off
    assert pool.lever(late).change_for(late) == (
        "task_reject_on_worker_lost = True (or task_retry_on_worker_lost = True)"
    )
    early = known()
    assert pool.lever(early).change_for(early) == (
        "task_acks_late = True and task_reject_on_worker_lost = True (or task_retry_on_worker_lost = True)"
    )
    assert lever_dict(pool.lever(late), late)["change"].startswith("task_reject_on_worker_lost = True")
    assert "task_acks_late" not in lever_dict(pool.lever(late), late)["change"]


def test_no_lever_asks_for_a_setting_that_is_already_as_it_asks() -> None:
    """Under every combination of the two settings the levers read, a lever's own words never ask for a
    value the facts already have."""
    for acks_late in (False, True):
        for reject in (False, True):
            facts_now = known(acks_late=acks_late, reject_on_worker_lost=reject)
            for failure in FAILURES:
                change = failure.lever(facts_now).change_for(facts_now)
                if acks_late:
                    assert "task_acks_late = True" not in change, (failure.key, change)
                else:
                    assert "task_acks_late = False" not in change, (failure.key, change)
                if reject:
                    assert "task_reject_on_worker_lost = True" not in change, (failure.key, change)


def test_a_catalogue_scenario_is_shown_as_a_name_and_a_docs_anchor_a_pip_user_can_follow() -> None:
    text = reference(POOL_REJECT)
    assert not text.startswith("scenarios/") and "scenarios/test_" not in text
    name = POOL_REJECT.rpartition("::")[2]
    assert text.startswith(name) and "harness repository" in text
    anchor = text.rpartition("docs/scenarios.md#")[2].rstrip(")")
    headings = (ROOT / "docs" / "scenarios.md").read_text().splitlines()
    slugs = {h.removeprefix("#### ").lower().replace(" ", "-") for h in headings if h.startswith("#### ")}
    assert anchor in slugs, "the anchor of the scenario's heading in docs/scenarios.md"


@pytest.mark.parametrize(
    ("multiplier", "concurrency", "acks_late", "expected"),
    [(1, 1, True, False), (1, 1, False, True), (4, 1, True, True), (0, 1, True, True), (1, 2, False, False)],
)
def test_whether_a_task_is_prefetched_behind_a_long_one_follows_the_prefetch_window(
    multiplier: int, concurrency: int, acks_late: bool, expected: bool
) -> None:
    facts_now = {"worker_prefetch_multiplier": multiplier, "concurrency": concurrency, "acks_late": acks_late}
    assert prefetches_behind(facts_now) is expected


def test_the_row_behind_says_nothing_was_prefetched_with_multiplier_one_and_late_acks() -> None:
    facts_now = {"worker_prefetch_multiplier": 1, "concurrency": 1, "acks_late": True, "prefetched_behind": False}
    note = behind_note(facts_now, prefetched=False)
    assert note.startswith("nothing was prefetched") and "(as worker_prefetch_multiplier=1" in note
    behind = BY_KEY["consumer_timeout_behind"]
    assert "prefetched delivery also counts" not in behind.lever(facts_now).effect
    assert "prefetched delivery also counts" in behind.lever({**facts_now, "prefetched_behind": True}).effect
    assert "unlike what" in behind_note(facts_now, prefetched=True), "an observation the settings do not explain"


def test_an_app_that_accepts_pickle_is_told_what_the_foreign_message_did_and_not_matched_to_the_json_scenario():
    """A trial audited taiga (accept_content=["pickle"]): the row said to add a dead-letter exchange, named the
    JSON-only catalogue scenario as having the same figures, and nothing of the pickled message having run."""
    bad = BY_KEY["bad_message"]
    pickled = {**known(), "accept_content": ["pickle"], "accepts_pickle": True, "dead_letter_exchange": None}
    assert bad.same_as(pickled) is None
    assert "whoever can publish to the broker can run code there" in bad.lever(pickled).effect
    plain = {**known(), "dead_letter_exchange": None}
    assert plain["accepts_pickle"] is False and bad.same_as(plain) is not None
    assert bad.lever(plain).change.startswith("a dead-letter exchange")
