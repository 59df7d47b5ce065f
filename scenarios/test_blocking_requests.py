"""Slow work inside a request blocks the whole site; offloaded to Celery, it does not."""

import re

import pytest

from app_under_test.stack import demo
from harness import browser

pytestmark = pytest.mark.seed

WORK_S = 1.5  # the slow work, inline or in the task
BLOCKED_AT_LEAST_S = 0.8 * WORK_S  # the page must wait for most of the slow work
FAST_PAGE_S = 0.5  # a page that does not wait for the work answers in milliseconds; 0.5 s is a wide margin

SLOW_WORK = demo(work_seconds=WORK_S, inline_seconds=WORK_S)


@pytest.mark.parametrize("stack_spec", [SLOW_WORK], indirect=True, ids=["slow-work"])
def test_inline_slow_work_makes_every_other_visitor_wait(stack, web):
    """A user clicks "Say hello (inline)": the web server does the slow work inside the request.

    What a user sees: the page spins, and so does the site for everyone else. With one synchronous
    web worker, as in the classic demo, a second visitor's request to the home page queues behind
    the slow one and waits about as long as the work takes.
    """
    # Arrange / inject: one visitor starts the slow inline work.
    slow = web.begin("POST", "/hello/inline")
    # Observe: another visitor opens the home page meanwhile.
    page_s = web.time_page()
    status, inline_s = slow.finish()
    # Assert
    assert status == 200 and inline_s >= WORK_S
    assert page_s >= BLOCKED_AT_LEAST_S, (
        f"the home page answered in {page_s:.2f}s while a {WORK_S}s request ran inline; it should have waited "
        f"(>= {BLOCKED_AT_LEAST_S:.2f}s) because the one web worker was busy"
    )


@pytest.mark.parametrize("stack_spec", [SLOW_WORK], indirect=True, ids=["slow-work"])
def test_offloaded_work_leaves_the_site_responsive_while_the_task_runs(stack, producer, web, ledger):
    """A user clicks "Say hello (Celery)": the work goes to the worker through RabbitMQ.

    What a user sees: the click answers at once with a task id, and the site stays fast while the
    worker does the slow work in the background.
    """
    click = producer.send()
    ledger.wait_started(click.task_id, timeout=5)
    page_s = web.time_page()
    still_running = ledger.history(click.task_id).terminal is None

    assert click.status == 202 and click.seconds < FAST_PAGE_S, f"the click took {click.seconds:.2f}s"
    assert page_s < FAST_PAGE_S, f"the home page took {page_s:.2f}s while the task ran; it should not wait"
    assert still_running, f"the {WORK_S}s task had already finished when the page answered: nothing was measured"
    ledger.wait_settled(timeout=10)
    stack.verdict().assert_counts(succeeded=1)


@pytest.mark.browser
def test_a_reader_clicks_the_button_in_a_real_browser_and_sees_the_task_queued(stack, web, ledger):
    """As the tutorial's reader does: open the page in a browser, click "Say hello (Celery)".

    What a user sees: the page says "Queued task <id>" at once, and that task then runs on the worker.
    """
    if reason := browser.missing():
        pytest.skip(reason)
    with browser.browser_page() as page:
        page.goto(web.base_url)
        page.click("#offload")
        page.wait_for_function("document.getElementById('status').textContent.startsWith('Queued task')")
        text = page.inner_text("#status")

    task_id = re.fullmatch(r"Queued task (\S+)", text)[1]
    ledger.record_send(task_id)
    ledger.wait_settled(timeout=10)
    stack.verdict().assert_counts(succeeded=1)
