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


def test_a_deploy_restarts_the_program_with_its_new_environment_and_marks_the_timeline(stack, producer, ledger):
    old_pid = stack.supervisor.info("web")["pid"]
    change = stack.deploy("web", env={"HELLO_PRODUCER": "v2"})
    assert change == "HELLO_PRODUCER=v2 (was v1)" and stack.supervisor.info("web")["pid"] != old_pid
    click = producer.send()  # v2 sends say_hello(name, greeting) to a v1 worker
    ledger.wait_settled([click.task_id], timeout=10)
    assert ledger.history(click.task_id).exception_type == "TypeError"
    assert [f.label for f in stack.timeline.faults] == ["web deployed: HELLO_PRODUCER=v2 (was v1)"]


def test_a_deploy_of_another_worker_app_runs_that_code(stack, producer, ledger):
    stack.deploy(WORKER, app="app_under_test.tasks_v2:app")  # say_hello(name, greeting): v1 clicks now fail
    click = producer.send()
    ledger.wait_settled([click.task_id], timeout=10)
    assert ledger.history(click.task_id).exception_type == "TypeError"  # the v1 worker would have succeeded
