"""The report: table, Markdown and JSON say the same thing, and the exit status follows the verdicts."""

from __future__ import annotations

import json

from harness.deploy.compare import OLD_TO_NEW, compare
from harness.deploy.output import BREAKING, CHECKER_BUG, OK, Report
from harness.deploy.prove import CONFIRMED, CONTRADICTED, Observation, Proof, Proven
from harness.deploy.versions import Version

V1 = {"queues": ["celery"], "tasks": {"add": {"parameters": [{"name": "x", "kind": "positional_or_keyword"}],
                                              "options": {"queue": "celery"}}}}  # fmt: skip
V2 = {"queues": ["celery"], "tasks": {"add": {"parameters": [{"name": "x", "kind": "positional_or_keyword"},
                                                             {"name": "y", "kind": "positional_or_keyword"}],
                                              "options": {"queue": "celery"}}}}  # fmt: skip


def report(proof_status: str | None = None, **options) -> Report:
    comparison = compare(V1, V2)
    base, new = Version("main (abc1234)", "proj:app", "/b", V1), Version("working tree", "proj:app", "/n", V2)
    made = Report(comparison, base, new, **options)
    if proof_status is not None:
        ran = Observation("runs", "succeeded")
        statuses = [proof_status if m.direction == OLD_TO_NEW else CONFIRMED for m in comparison.messages]
        results = [
            Proven(m, f"id-{i}", {}, ran, s) for i, (m, s) in enumerate(zip(comparison.messages, statuses, strict=True))
        ]
        made.proof = Proof(results, 3.0, "local")
    return made


def test_a_breaking_change_fails_unless_warn_only():
    assert report().exit_status == BREAKING
    assert report(warn_only=True).exit_status == OK
    assert report(fail_on=("new_to_old",)).exit_status == BREAKING
    assert "❌ breaks" in report().markdown()


def test_a_contradicted_verdict_is_reported_as_a_checker_bug_even_when_warn_only():
    contradicted = report(CONTRADICTED, warn_only=True)

    assert contradicted.exit_status == CHECKER_BUG
    assert "contradicted: CHECKER BUG" in contradicted.table()
    assert "❌ contradicted (checker bug)" in contradicted.markdown()
    assert "proof: 1 contradiction(s) (checker bug)" in contradicted.summary()
    assert json.loads(json.dumps(contradicted.to_json()))["exit_status"] == CHECKER_BUG


def test_a_confirmed_proof_keeps_the_static_exit_status():
    confirmed = report(CONFIRMED)
    assert confirmed.exit_status == BREAKING and "proof: no contradiction" in confirmed.summary()
