"""The checker's verdicts on the demo's versions match what the seed scenarios observe.

Each case runs the stack of a seed scenario (the very ``StackSpec`` of ``scenarios/test_signature_mismatch.py``,
``test_tolerant_signatures.py`` or ``test_renamed_task.py``): the demo's web app sends clicks with one
version of its producer code, a worker of one version of the tasks runs them, and the fates are counted.
The checker compares the same two versions (each read in a process of its own) with the call convention
the demo's producers use (v1, v2 and renamed call positionally, the tolerant ones with keywords). For the
direction the scenario deploys, its verdict must say ``breaks`` exactly when the tasks did not succeed, and
its prediction for the call the demo's producer makes must name the exception the worker raised.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType

import pytest

from harness.deploy import versions
from harness.deploy.compare import BREAKS, NEW_TO_OLD, OLD_TO_NEW, SAFE, CallPolicy, Comparison, compare
from harness.deploy.signatures import FAILS, RUNS
from harness.spec import StackSpec

ROOT = Path(__file__).resolve().parents[2]
CLICKS = 5


def scenario(name: str) -> ModuleType:
    """A scenario module of this checkout, by file (scenarios/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"deploy_demo_{name}", ROOT / "scenarios" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


mismatch = scenario("test_signature_mismatch")
tolerant = scenario("test_tolerant_signatures")
renamed = scenario("test_renamed_task")


@dataclass(frozen=True)
class Case:
    spec: StackSpec
    base: str  # the running version's tasks module
    new: str
    direction: str  # the deploy the scenario plays
    calls: str  # how the demo's producers call say_hello
    sent: tuple[str, tuple[str, ...], tuple[str, ...]]  # the demo producer's call: name, positional, keywords


CASES = {
    "web-v2+worker-v1": Case(
        mismatch.NEW_PRODUCER_OLD_WORKER, "tasks", "tasks_v2", NEW_TO_OLD, "positional",
        ("say_hello", ("name", "greeting"), ()),
    ),
    "web-v1+worker-v2": Case(
        mismatch.OLD_PRODUCER_NEW_WORKER, "tasks", "tasks_v2", OLD_TO_NEW, "positional", ("say_hello", ("name",), ())
    ),
    "web-v1+worker-v2-default": Case(
        mismatch.OLD_PRODUCER_NEW_WORKER_WITH_DEFAULT, "tasks", "tasks_v2_default", OLD_TO_NEW, "positional",
        ("say_hello", ("name",), ()),
    ),
    "tolerant-new-producer+old-worker": Case(
        tolerant.NEW_PRODUCER_OLD_WORKER, "tasks_tolerant", "tasks_tolerant_v2", NEW_TO_OLD, "keyword",
        ("say_hello", (), ("name", "greeting")),
    ),
    "tolerant-old-producer+new-worker": Case(
        tolerant.OLD_PRODUCER_NEW_WORKER, "tasks_tolerant", "tasks_tolerant_v2", OLD_TO_NEW, "keyword",
        ("say_hello", (), ("name",)),
    ),
    "web-v3-renamed+worker-v1": Case(
        renamed.RENAMED, "tasks", "tasks_v3", NEW_TO_OLD, "positional", ("send_greeting", ("name",), ())
    ),
}  # fmt: skip


@cache
def checked(base: str, new: str, calls: str) -> Comparison:
    old_version = versions.same_tree(f"app_under_test.{base}:app", ROOT)
    new_version = versions.same_tree(f"app_under_test.{new}:app", ROOT)
    return compare(old_version.info, new_version.info, CallPolicy.parse([calls]))


@pytest.mark.parametrize(
    ("stack_spec", "case"), [(c.spec, c) for c in CASES.values()], indirect=["stack_spec"], ids=list(CASES)
)
def test_the_checkers_verdict_is_what_the_scenario_observes(stack, producer, ledger, case: Case):
    producer.send_many(CLICKS)
    ledger.wait_settled(timeout=15)
    verdict = stack.verdict()
    comparison = checked(case.base, case.new, case.calls)

    observed = SAFE if verdict.count("succeeded") == CLICKS else BREAKS
    assert comparison.task_verdict("say_hello", case.direction) == observed, verdict.explain()
    predicted = next(
        m.predicted for m in comparison.messages if m.direction == case.direction and m.call.key() == case.sent
    )
    if predicted.kind == RUNS:
        verdict.assert_counts(succeeded=CLICKS)
    else:
        assert predicted.kind == FAILS
        verdict.assert_counts(failed=CLICKS)
        assert verdict.exception_types() == {predicted.error: CLICKS}
