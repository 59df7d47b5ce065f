"""AppStack's operator controls against real supervisord, gunicorn and Celery processes."""

from app_under_test.stack import WORKER
from harness.waiting import eventually, never


def test_a_killed_worker_stays_down_because_nothing_restarts_it(stack):
    stack.signal(WORKER, "KILL")
    eventually(lambda: stack.state(WORKER), until=lambda s: s == "EXITED", timeout=5, what="the worker to exit")
    never(
        lambda: stack.state(WORKER), until=lambda s: s != "EXITED", for_=1.5,
        what="supervisord restarted the killed worker (autorestart must be off for fault scenarios)",
    )  # fmt: skip


def test_stop_then_start_gives_a_ready_worker(stack, producer, ledger):
    stack.stop(WORKER)
    assert stack.state(WORKER) == "STOPPED"
    stack.start(WORKER)
    click = producer.send()
    ledger.wait_settled([click.task_id], timeout=10)
    assert ledger.history(click.task_id).count("task-succeeded") == 1


def test_the_web_app_serves_the_page_with_its_button(web):
    page = web.page()
    assert page.status_code == 200
    assert 'id="offload"' in page.text and 'data-url="/hello"' in page.text
