"""``--prove``: the checker's verdicts against real producers and workers of both versions on a real broker.

The end-to-end cases run the example app's two commits (through the ``deploy_check`` fixture, on the
session's broker) and the demo's v1 → v2 (through the command, pointed at the same broker as a ``url``
broker); the others check, without a broker, how one message's prediction and observation are judged.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from shop_example import APP, EXAMPLES

from harness.deploy import versions
from harness.deploy.compare import (
    BREAKS,
    DIRECTIONS,
    MESSAGE_KINDS,
    NEW_TO_OLD,
    OLD_TO_NEW,
    STRANDED,
    Message,
    compare,
)
from harness.deploy.compare import Prediction as Predicted
from harness.deploy.prove import (
    BODY_FAILED,
    CONFIRMED,
    CONTRADICTED,
    INCONCLUSIVE,
    NEW_WORKER,
    Examples,
    Observation,
    VersionProducer,
    defaults_taken,
    fleet,
    judge,
    placeholder,
    value_of,
)
from harness.deploy.signatures import FAILS, MISBINDS, POSITIONAL, RUNS, Call, Signature

ROOT = Path(__file__).resolve().parents[2]


def test_the_proof_confirms_every_breaking_change_with_real_processes(deploy_check, shop_repo: Path):
    report = deploy_check(base="HEAD~1", celery_app=APP, cwd=shop_repo, prove=True, examples=EXAMPLES)

    rows = {(row["task"], row["direction"]): row for row in report.proof.rows()}
    breaking = {  # a renamed task's new-producer row carries the name the new producer sends
        (change.new_task if direction == NEW_TO_OLD and change.new_task else change.task, direction)
        for change in report.comparison.changes
        if change.kind in MESSAGE_KINDS
        for direction in DIRECTIONS
        if change.verdicts[direction] == BREAKS
    }
    assert len(breaking) == 20  # 9 tasks, 1 to 3 directions each
    assert breaking <= set(rows), "every breaking change and direction was run"
    unconfirmed = {key: row for key, row in rows.items() if row["status"] != CONFIRMED}
    assert unconfirmed == {}, "\n".join(  # each row's prediction and observation, to tell why
        f"{task} {direction}: predicted {row['predicted']}; observed {row['observed']}; {row['status']}: {row['why']}"
        for (task, direction), row in unconfirmed.items()
    )
    messages = report.proof.to_json()["messages"]
    swapped = [m for m in messages if m["task"] == "shop.tasks.move" and m["convention"] == POSITIONAL]
    assert {m["observed"] for m in swapped if m["direction"] != "control"} == {
        "ran with values in the wrong parameters"
    }
    stranded = [m for m in messages if m["task"] == "shop.tasks.monthly_report" and m["direction"] == OLD_TO_NEW]
    assert {m["observed"] for m in stranded} == {"queued in `reports`"}
    assert report.exit_status == 1  # breaking changes, and no contradiction


def prove_the_demos_new_required_parameter(broker_args: list[str], tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "harness.deploy_check", "--base-app", "app_under_test.tasks:app",
        "--app", "app_under_test.tasks_v2:app", "--calls", "positional", "--prove", "--format", "json",
        "--env", "HELLO_WORK_SECONDS=0.05", *broker_args,
    ]  # fmt: skip
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, "TMPDIR": str(tmp_path)}
    )

    assert done.returncode == 1, done.stderr
    rows = json.loads(done.stdout)["proof"]["rows"]
    assert {(r["direction"], r["observed"], r["status"]) for r in rows} == {
        (OLD_TO_NEW, "failed TypeError", CONFIRMED),
        (NEW_TO_OLD, "failed TypeError", CONFIRMED),
        ("queued", "failed TypeError", CONFIRMED),
    }
    assert list(tmp_path.iterdir()) == []


def test_the_command_proves_the_demos_new_required_parameter(broker, tmp_path: Path):
    endpoint = broker.endpoint
    prove_the_demos_new_required_parameter(
        ["--harness-broker", "url", "--harness-broker-url", endpoint.amqp_url(),
         "--harness-management-url", endpoint.management_url or ""],
        tmp_path,
    )  # fmt: skip


def test_the_command_proves_the_demos_new_required_parameter_on_redis(tmp_path: Path):
    """The same proof on a private Redis: the space is a database, consumers are known from the workers."""
    prove_the_demos_new_required_parameter(["--harness-transport", "redis", "--harness-broker", "local"], tmp_path)


# -- judging one message (no broker) ------------------------------------------------------------------

CALL = Call("proj.add", POSITIONAL, "required", ("x", "y"), ())


def message(predicted: Predicted) -> Message:
    return Message("proj.add", OLD_TO_NEW, "base", "new", CALL, predicted)


def test_an_observation_that_agrees_confirms():
    assert judge(message(Predicted(FAILS, error="TypeError")), Observation(FAILS, "failed", "TypeError"), None)[0] == (
        CONFIRMED
    )
    waits = Predicted(STRANDED, queue="reports")
    assert judge(message(waits), Observation("waits", "queued", queue="reports"), None)[0] == CONFIRMED


def test_an_observation_that_disagrees_is_a_checker_bug():
    unbound = Observation(FAILS, "failed", "TypeError", bound=False)
    status, why = judge(message(Predicted(RUNS)), unbound, Observation(RUNS, "ok"))
    assert status == CONTRADICTED and "the run saw failed TypeError" in why
    # Predicted not to bind, and it bound (the TypeError came from the body): binding was mispredicted.
    in_body = Observation(FAILS, "failed", "TypeError", bound=True, message="TypeError: bad operand")
    assert judge(message(Predicted(FAILS, error="TypeError")), in_body, Observation(RUNS, "ok"))[0] == CONTRADICTED
    status, _ = judge(message(Predicted(FAILS, error="TypeError")), Observation(FAILS, "failed", "NotRegistered"), None)
    assert status == CONTRADICTED
    status, _ = judge(message(Predicted(STRANDED, queue="reports")), Observation("lost", "lost"), None)
    assert status == CONTRADICTED


def test_a_result_that_depends_on_the_body_needs_a_control_that_ran():
    failed_control = Observation(FAILS, "failed", "ValueError")
    status, why = judge(message(Predicted(RUNS)), Observation(FAILS, "failed", "ValueError"), failed_control)
    assert status == INCONCLUSIVE and "--example" in why
    # A name the worker does not know never reaches the body: the control does not matter.
    unknown = Predicted(FAILS, error="NotRegistered")
    assert judge(message(unknown), Observation(FAILS, "failed", "NotRegistered"), failed_control)[0] == CONFIRMED


def test_a_body_that_fails_after_binding_is_said_so_not_called_a_checker_bug():
    """``add(x, y)`` became ``add(x, y, z=None)`` with a body ``x + y + z``: an old producer's message binds
    (z takes None) and the body raises; the new version's own call runs. Not a contradiction: a break the
    signatures cannot show, with what the body must handle."""
    body = Observation(FAILS, "failed", "TypeError", bound=True, message="TypeError: unsupported operand type(s)")
    status, why = judge(message(Predicted(RUNS)), body, Observation(RUNS, "ok"), False, "`z` was not sent and took "
                        "its default None", worker_control=Observation(RUNS, "ok"))  # fmt: skip
    assert status == BODY_FAILED
    assert why == (
        "binding safe, body failed: TypeError: unsupported operand type(s); `z` was not sent and took its default "
        "None: the body must handle it"
    )


def test_a_failure_where_the_workers_own_release_cannot_run_the_task_is_inconclusive_and_quoted():
    """The old release's checkout has no database (an untracked file): its own call of the task fails too."""
    body = Observation(FAILS, "failed", "OperationalError", bound=True, message="OperationalError: no such table: x")
    own = Observation(FAILS, "failed", "OperationalError", bound=True, message="OperationalError: no such table: x")
    new_to_old = Message("proj.add", NEW_TO_OLD, "new", "base", CALL, Predicted(RUNS))
    status, why = judge(new_to_old, body, Observation(RUNS, "ok"), True, "", worker_control=own)
    assert (status, why) == (
        INCONCLUSIVE,
        "the old release cannot run this task here: OperationalError: no such table: x",
    )


def test_the_advice_to_give_example_values_comes_only_when_none_were_given():
    failed = Observation(FAILS, "failed", "ValueError", bound=True, message="ValueError: not a number")
    _, why = judge(message(Predicted(RUNS)), failed, failed, examples_given=False)
    assert why.endswith("ValueError: not a number; give --example values")
    _, why = judge(message(Predicted(RUNS)), failed, failed, examples_given=True)
    assert "--example" not in why


def test_the_defaults_a_call_leaves_to_the_worker_are_named():
    worker = Signature.from_introspection(
        [
            {"name": "x", "kind": "positional_or_keyword"},
            {"name": "y", "kind": "positional_or_keyword"},
            {"name": "z", "kind": "positional_or_keyword", "has_default": True, "default": "None"},
        ]
    )
    assert defaults_taken(CALL, worker) == "`z` was not sent and took its default None"
    assert defaults_taken(Call("proj.add", POSITIONAL, "full", ("x", "y", "z"), ()), worker) == ""


def test_a_swap_that_could_not_show_is_inconclusive():
    blind = Observation(RUNS, "succeeded", detail="two parameters were sent equal values: a swap would not show")
    assert judge(message(Predicted(MISBINDS)), blind, Observation(RUNS, "succeeded"))[0] == INCONCLUSIVE


def test_values_come_from_examples_then_plain_defaults_then_placeholders():
    signature = Signature.from_introspection(
        [
            {"name": "path", "kind": "positional_or_keyword"},
            {"name": "width", "kind": "positional_or_keyword", "has_default": True, "default": "100"},
            {"name": "fit", "kind": "positional_or_keyword", "has_default": True, "default": "None"},
            {"name": "mode", "kind": "positional_or_keyword", "has_default": True, "default": "<Mode.FAST: 1>"},
        ]
    )
    typed = Signature.from_introspection(
        [{"name": n, "kind": "positional_or_keyword", "annotation": a} for n, a in (("pk", "int"), ("ids", "int"))]
    )
    assert [value_of(n, typed, {}) for n in typed.names] == [101, 102]  # numbers, and distinct: a swap shows
    given = Examples.parse(['proj.resize=["cat.png"]']).by_name(["proj.resize"], signature.positional_names)
    assert [value_of(n, signature, given) for n in signature.names] == [
        "cat.png", 100, placeholder("fit"), placeholder("mode"),
    ]  # fmt: skip


# -- a Celery fact the checker's delivery verdicts rest on ----------------------------------------------

SLOW = """
import time
from celery import Celery

app = Celery("slow")


@app.task(name="slow", time_limit={limit})
def slow(seconds):
    time.sleep(seconds)
"""


def test_a_time_limit_travels_in_the_message_as_the_checker_says(broker, tmp_path: Path):
    """v1 limits ``slow`` to 1 s, v2 to 10 s. A 2.5 s task queued by a v1 producer through the task object
    (apply_async) carries v1's limit, and the v2 worker applies it: the task is killed. Sent by name
    (send_task) it carries none, and the v2 worker's own 10 s apply."""
    (tmp_path / "slow_v1.py").write_text(SLOW.format(limit=1))
    (tmp_path / "slow_v2.py").write_text(SLOW.format(limit=10))
    old, new = versions.same_tree("slow_v1:app", tmp_path), versions.same_tree("slow_v2:app", tmp_path)
    change = compare(old.info, new.info).change("slow", "delivery")
    assert "puts time_limit=1 in the message: the new worker applies it, not its 10" in change.reasons[OLD_TO_NEW]

    call = Call("slow", POSITIONAL, "full", ("seconds",), ())
    sent = Message("slow", OLD_TO_NEW, "base", "new", call, Predicted(RUNS))
    examples = Examples({"slow": {"seconds": 2.5}})
    with fleet(broker, new, NEW_WORKER, tmp_path, new.queues, {}) as stack:
        by_task = VersionProducer(old, examples, stack, "old-producer", "apply_async").send([sent])
        by_name = VersionProducer(old, examples, stack, "old-producer-by-name", "send_task").send([sent])
        stack.ledger.wait_settled(timeout=20)
        verdict = stack.verdict()

    assert verdict.ids("failed") == by_task and verdict.exception_types() == {"TimeLimitExceeded": 1}
    assert verdict.ids("succeeded") == by_name
