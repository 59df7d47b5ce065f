"""The ledger against a real broker and a real worker: every step, seen by both witnesses."""

import json
import time

import pytest
from celery import Celery

from app_under_test.stack import WORKER
from harness.errors import HarnessError
from harness.ledger import Ledger
from harness.sent import Sent
from harness.waiting import eventually

STEPS = ["task-sent", "task-received", "task-started", "task-succeeded"]
BOTH = {"events", "journal"}


def test_ledger_is_listening_before_the_first_task_is_sent(vhost):
    """Send right after start(): the task-sent event must arrive, so start() left no gap."""
    producer = Celery("probe", broker=vhost.amqp_url, set_as_current=False)
    producer.conf.task_send_sent_event = True
    ledger = Ledger(vhost.amqp_url).start()
    try:
        producer.send_task("say_hello", args=["x"], task_id="first-task", queue="hello_queue")
        eventually(lambda: ledger.history("first-task").count("task-sent"), timeout=5, what="the task-sent event")
    finally:
        ledger.close()
        producer.close()


def seen_by_both(history) -> bool:
    return all(any(e.type == step and e.witnesses == BOTH for e in history.events) for step in STEPS)


def test_a_click_is_recorded_from_send_to_success_by_both_witnesses(stack, producer, ledger):
    click = producer.send()
    # Not wait_settled: it returns on the first witness's end (the journal's, often), and the events witness's
    # task-succeeded can come a moment later (seen once in a serial run). Wait for what is asserted.
    history = eventually(
        lambda: ledger.history(click.task_id), until=seen_by_both, timeout=10,
        what="each step of the click seen by both witnesses", progress=lambda h: h.describe(),
    )  # fmt: skip

    assert [e.type for e in history.events if e.type in STEPS] == STEPS
    assert all(e.witnesses == BOTH for e in history.events if e.type in STEPS), history.describe()
    assert history.workers == ["worker_hello@harness"]
    assert ledger.sent_ids == [click.task_id]
    stack.verdict().assert_counts(succeeded=1)


def test_worker_online_is_seen_for_every_worker_start(stack, ledger):
    """Each start's worker-online comes through the broker too. The stack calls a worker ready on the journal's
    (written once it consumes), so the event may still be on its way when a start returns: wait for it, before
    the restart as after it."""

    def online(witness: str) -> int:
        return len(ledger.worker_events("worker_hello@harness", "worker-online", witness=witness))

    def caught_up(starts: int) -> int:
        return eventually(
            lambda: online("events"), until=lambda n: n >= starts, timeout=10,
            what=f"the events witness to see the {starts} worker-online of the journal", progress=str,
        )  # fmt: skip

    before = caught_up(online("journal"))
    stack.restart(WORKER)
    assert online("journal") == before + 1
    assert caught_up(before + 1) == before + 1


def test_a_worker_is_ready_only_once_it_consumes_its_queue(stack, vhost, ledger):
    """Celery's worker-online event comes before the worker declares its queues; the stack waits for the
    journal's (the worker_ready signal): by then the queue exists and has the worker as its consumer."""
    stack.restart(WORKER)  # returns once the stack calls the worker ready
    depth = vhost.depth("hello_queue")
    assert (depth.exists, depth.consumers) == (True, 1)


def test_each_program_reports_the_settings_it_runs_with(stack, ledger):
    config = ledger.program_config(WORKER)
    assert config["settings"]["worker_prefetch_multiplier"] == 4
    assert config["tasks"]["say_hello"]["queue"] == "hello_queue"


def test_a_task_is_held_by_the_live_process_that_received_it_last(tmp_path):
    """The journal names the process that received each task: a restarted worker (a new pid, the same name)
    does not hold what its predecessor received."""
    for pid, entries in {
        101: [("task-received", "a", 1.0), ("task-received", "b", 2.0)],  # the killed worker
        202: [("task-received", "b", 3.0)],  # its restart: b was redelivered to it
    }.items():
        lines = [json.dumps({"type": t, "uuid": u, "hostname": "w@h", "t": at}) for t, u, at in entries]
        (tmp_path / f"worker_hello.{pid}.jsonl").write_text("\n".join(lines) + "\n")
    ledger = Ledger("amqp://unused", journal_dir=tmp_path)
    assert ledger.held_by({202: "worker_hello"}) == {"b": "worker_hello"}
    assert ledger.held_by({}) == {}


def journal_of(folder, steps: list[tuple[str, str, float]]) -> Ledger:
    """A ledger whose only witness is a journal written here (no broker: nothing is started)."""
    lines = [json.dumps({"type": t, "uuid": u, "hostname": "w@h", "t": at}) for t, u, at in steps]
    (folder / "worker_hello.101.jsonl").write_text("\n".join(lines) + "\n")
    return Ledger("amqp://unused", journal_dir=folder)


def test_the_waits_take_what_send_many_returned_as_well_as_ids(tmp_path):
    """A user gave ledger.wait_running the list send_many returned: it waited 10 s for tasks named by Sent
    objects, which no history has, and timed out with 'last seen: []'."""
    ledger = journal_of(tmp_path, [("task-received", "a", 1.0), ("task-started", "a", 1.1),
                                   ("task-received", "b", 1.2), ("task-succeeded", "b", 1.3)])  # fmt: skip
    sent = [Sent("a", True, 0.01, 202, None, ("a",)), Sent("b", True, 0.01, 202, None, ("b",))]
    assert ledger.wait_running(sent, timeout=2) == "a"
    ledger.wait_received(sent, timeout=2)
    ledger.wait_started(sent[0], timeout=2)
    ledger.wait_settled([sent[1]], timeout=2)
    assert ledger.settled(sent) == 1 and ledger.count("task-started", sent) == 1 and ledger.event_count(sent) == 4
    assert ledger.history(sent[0]).count("task-started") == 1


@pytest.mark.parametrize(
    "call",
    [
        lambda ledger: ledger.wait_running(42),
        lambda ledger: ledger.wait_received([object()]),
        lambda ledger: ledger.wait_settled(3.5),
        lambda ledger: ledger.wait_each_has("custom", None),
        lambda ledger: ledger.assert_quiet({"a": 1}, for_=5, why="nothing runs"),
        lambda ledger: ledger.wait_started(7),
    ],
    ids=["wait_running", "wait_received", "wait_settled", "wait_each_has", "assert_quiet", "wait_started"],
)
def test_a_wait_given_anything_else_refuses_it_at_once_in_one_sentence(tmp_path, call):
    ledger = journal_of(tmp_path, [])
    started = time.monotonic()
    with pytest.raises(HarnessError, match=r"takes task ids or what send\(\)/send_many\(\) return"):
        call(ledger)
    assert time.monotonic() - started < 1, "refused at once, not after the wait's timeout"
