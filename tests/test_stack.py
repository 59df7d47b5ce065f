"""AppStack's operator controls against real supervisord, gunicorn and Celery processes."""

from harness.waiting import eventually, never


def test_a_killed_worker_stays_down_because_nothing_restarts_it(stack):
    stack.signal("worker_hello", "KILL")
    eventually(lambda: stack.state("worker_hello"), until=lambda s: s == "EXITED", timeout=5, what="the worker to exit")
    never(
        lambda: stack.state("worker_hello"), until=lambda s: s != "EXITED", for_=1.5,
        what="supervisord restarted the killed worker (autorestart must be off for fault scenarios)",
    )  # fmt: skip


def test_stop_then_start_gives_a_ready_worker(stack, web, ledger):
    stack.stop("worker_hello")
    assert stack.state("worker_hello") == "STOPPED"
    stack.start_program("worker_hello")
    click = web.click()
    ledger.wait_settled([click.task_id], timeout=10)
    assert ledger.history(click.task_id).count("task-succeeded") == 1


def test_the_web_app_serves_the_page_with_its_button(web):
    page = web.page()
    assert page.status_code == 200
    assert 'id="offload"' in page.text and 'data-url="/hello"' in page.text
