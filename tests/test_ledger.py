"""The ledger against a real broker and a real worker: every event, nothing missed."""

from celery import Celery

from harness.ledger import Ledger
from harness.waiting import eventually


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


def test_a_click_is_recorded_from_send_to_success_with_the_worker_hostname(stack, web, ledger):
    click = web.click()
    ledger.wait_settled(timeout=10)

    history = ledger.history(click.task_id)
    assert [e.type for e in history.events] == [
        "task-sent",
        "task-received",
        "task-started",
        "task-succeeded",
    ]
    assert history.workers == ["worker_hello@harness"]
    assert ledger.sent_ids == [click.task_id]
    stack.verdict().assert_counts(succeeded=1)


def test_worker_online_is_seen_for_every_worker_start(stack, ledger):
    before = len(ledger.worker_events("worker_hello@harness", "worker-online"))
    stack.restart("worker_hello")
    assert len(ledger.worker_events("worker_hello@harness", "worker-online")) == before + 1
