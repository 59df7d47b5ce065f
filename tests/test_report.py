"""The run report: drawn from a scenario's data, and checked in a real browser.

The browser cases run a real scenario in an inner pytest on the broker this run was given, read the
report's data, open the page in Chromium at 1400 px and save a screenshot in this run's report folder
(``<harness_report>/screenshots/``, where CI keeps artefacts) as well as in the inner report.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness import browser, options
from harness.plots import runs
from harness.report import (
    _drawn_section,
    group_of,
    index_table,
    ordered,
    plot_caption,
    scenario_record,
    section,
    write_page,
)
from harness.timeline import Timeline
from harness.verdict import FATES, Send, TaskEvent, TaskHistory, judge

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
BROKER_OPTIONS = (
    "harness_broker", "harness_broker_url", "harness_management_url", "harness_rabbitmq_image",
    "harness_docker_network",
)  # fmt: skip


W = "worker_hello@harness"
BOTH = ["events", "journal"]


def synthetic_record() -> dict:
    t0 = time.time()
    events = [
        {"type": "task-sent", "hostname": "web", "at": t0 + 0.1, "exception": None, "witnesses": ["events"]},
        {"type": "task-started", "hostname": W, "at": t0 + 1.0, "exception": None, "witnesses": BOTH},
        {"type": "task-succeeded", "hostname": W, "at": t0 + 1.5, "exception": None, "witnesses": BOTH},
    ]
    samples = [{"at": t0 + i / 10, "queue": "hello_queue", "ready": i % 3, "unacked": None} for i in range(20)]
    return {
        "nodeid": "scenarios/test_x.py::test_x",
        "name": "test_x",
        "module": "",
        "story": "A story.\n\nWhat a user sees: something.",
        "outcome": "passed",
        "duration": 2.0,
        "timeline": {"started": t0, "marks": [{"at": t0 + 0.5, "label": "worker_hello stopped"}], "samples": samples},
        "tasks": {"a": {"fate": "succeeded", "events": events}},
        "fates": {"succeeded": 1},
        "sends": {"a": {"at": t0 + 0.1, "ok": True, "error": None}},
        "fate_of": {"a": "succeeded"},
    }


def test_a_scenario_is_drawn_as_inline_svg_inside_its_section() -> None:
    html = section(synthetic_record(), "data/x.json")
    assert '<figure class="plot"><svg' in html and "What a user sees: something." in html


def test_the_page_takes_the_section_its_scenario_drew_and_draws_one_that_is_missing(tmp_path: Path) -> None:
    record = synthetic_record()
    drawn, missing = tmp_path / "drawn.json", tmp_path / "missing.json"
    for path in (drawn, missing):
        path.write_text(json.dumps(record))
    drawn.with_suffix(".html").write_text("<section>drawn by the worker</section>")
    assert _drawn_section(record, drawn) == "<section>drawn by the worker</section>"
    assert '<figure class="plot"><svg' in _drawn_section(record, missing), "drawn by the controller instead"


def record_of(nodeid: str, outcome: str, started: float, markers: tuple[str, ...] = (), **fates: int) -> dict:
    return {
        "nodeid": nodeid, "name": nodeid.split("::")[1], "outcome": outcome, "markers": list(markers),
        "timeline": {"started": started}, "fates": fates, "duration": 1.0,
        "durations": {"setup": 0.5, "call": 1.0, "teardown": 0.25},
    }  # fmt: skip


def test_the_index_groups_by_suite_and_lists_failures_first() -> None:
    """Groups with a failure come first, then the suites in the docs' order; in a group, failures first, then the
    order they ran. A scenario without a suite marker (a team's own) is grouped by its file."""
    records = [
        (record_of("s/test_a.py::test_one", "passed", 1, ("catalogue", "worker_fault")), Path("1")),
        (record_of("s/test_b.py::test_two", "passed", 2, ("seed",)), Path("2")),
        (record_of("s/test_c.py::test_three", "failed", 3, ("catalogue",)), Path("3")),
        (record_of("s/redis/test_d.py::test_four", "passed", 4, ("redis", "catalogue")), Path("4")),
        (record_of("tests/failures/test_e.py::test_five", "passed", 5), Path("5")),
    ]
    grouped = ordered(records)
    assert [(name, [r["name"] for r, _ in members]) for name, members in grouped] == [
        ("Failure catalogue", ["test_three", "test_one"]),
        ("Seed lessons", ["test_two"]),
        ("Failure catalogue on Redis", ["test_four"]),
        ("tests/failures/test_e.py", ["test_five"]),
    ]
    assert group_of({"nodeid": "x.py::test_y"}) == "x.py", "a record written before records had markers"


def test_each_index_row_has_its_outcome_fates_in_colour_time_and_why_it_failed() -> None:
    failed = record_of("s/test_c.py::test_three", "failed", 3, ("catalogue",), succeeded=3, lost=1)
    failed["failure"] = "AssertionError: one task was lost\nmore lines"
    html = index_table(ordered([(failed, Path("3"))]))
    assert "(1 scenario, 1 failed)" in html
    assert "#2e7d32'></span>3 succeeded</span>" in html and "#6a1b9a'></span>1 lost</span>" in html
    assert "<td class=num>1.8 s</td>" in html  # setup + call + teardown
    assert "<code class=why-line>AssertionError: one task was lost</code>" in html
    assert "data-text='s/test_c.py::test_three three failed catalogue succeeded lost assertionerror" in html


@pytest.mark.browser
def test_the_index_filter_keeps_the_rows_with_every_word_typed(tmp_path: Path) -> None:
    """In Chromium: typing words hides the rows without them (and a group left empty); "failures only" keeps the
    failed scenarios."""
    (tmp_path / "data").mkdir()
    for n, (nodeid, outcome, markers) in enumerate(
        [("s/test_a.py::test_broker_restart", "passed", ("catalogue", "broker_fault")),
         ("s/test_b.py::test_worker_killed", "failed", ("catalogue", "worker_fault")),
         ("s/test_c.py::test_renamed_task", "passed", ("seed",))]
    ):  # fmt: skip
        record = synthetic_record()
        record |= {"nodeid": nodeid, "name": nodeid.split("::")[1], "outcome": outcome, "markers": list(markers)}
        (tmp_path / "data" / f"{n}.json").write_text(json.dumps(record))
    assert write_page(tmp_path, "now")
    count = "() => [...document.querySelectorAll('tr[data-text]')].filter(r => !r.hidden).length"
    with browser.browser_page() as page:
        page.goto((tmp_path / "index.html").as_uri())
        assert page.evaluate(count) == 3
        page.fill("#filter", "broker")
        assert page.evaluate(count) == 1 and page.inner_text("#shown") == "1 of 3 shown"
        assert page.evaluate("() => document.querySelectorAll('.group:not([hidden])').length") == 1
        page.fill("#filter", "")
        page.check("#failures")
        assert page.evaluate(count) == 1 and "worker killed" in page.inner_text("tr[data-text]:not([hidden])").lower()


def test_the_plots_caption_says_what_the_depth_counts_are_on_the_broker_the_scenario_ran_on() -> None:
    assert "management API" in plot_caption({"broker": "RabbitMQ 4.0.5"})
    on_redis = plot_caption({"broker": "Redis 7.0.15"})
    assert "unacked hash" in on_redis and "AMQP" not in on_redis and "management" not in on_redis


def test_the_fate_table_shows_the_fates_that_occurred_and_every_fate_on_demand() -> None:
    html = section(synthetic_record(), "data/x.json")
    shown, _, on_demand = html.partition("<details class=allfates>")
    first_table = shown[shown.index("<table class=fates>") :]
    assert "succeeded" in first_table and not any(f in first_table for f in FATES if f != "succeeded")
    assert all(f"{fate}</td>" in on_demand for fate in FATES)


def test_each_task_has_a_row_with_each_step_and_the_witnesses_that_saw_it() -> None:
    html = section(synthetic_record(), "data/x.json")
    row = html[html.index("id='scenarios-test_x.py-test_x-task-1'") :]
    row = row[: row.index("</tr>")]
    assert "<b>task-started</b> on worker_hello@harness" in row and "[events+journal]" in row


class FakeStack:
    """What ``scenario_record`` reads of a stack, from a ready-made verdict (no programs)."""

    def __init__(self, histories: dict[str, TaskHistory], not_running: list[str] | None = None) -> None:
        self.timeline = Timeline()
        self._verdict = judge({i: Send(i, True, 0.0) for i in histories}, histories)
        self._not_running = not_running or []

    def verdict(self):
        return self._verdict

    def not_running(self) -> list[str]:
        return self._not_running

    def unconsumed(self) -> list[str]:
        return []


def test_a_failed_scenarios_section_starts_with_why_it_failed_then_the_programs_not_running() -> None:
    def body() -> None:
        raise AssertionError("task fates differ (succeeded: expected 20, got 19)")

    stack = FakeStack({}, not_running=["worker_hello is EXITED (exit status 1): MemoryError"])
    item = SimpleNamespace(nodeid="t.py::test_x", name="test_x", funcargs={}, iter_markers=list)
    call = pytest.CallInfo.from_call(body, when="call")
    record = scenario_record(item, SimpleNamespace(outcome="failed", failed=True, duration=1.0), stack, call)
    html = section({**synthetic_record(), **record}, "data/x.json")
    why = html.index("AssertionError: task fates differ (succeeded: expected 20, got 19)")
    assert html.index("<h3>Why it failed</h3>") < why < html.index("Programs not running") < html.index("MemoryError")
    assert why < html.index('<div class="story">') < html.index('<figure class="plot">'), "before everything else"
    passed = section(synthetic_record(), "data/x.json")
    assert "Why it failed" not in passed


def test_a_failed_step_shows_the_real_exception_not_billiards_wrapper() -> None:
    """Celery's task-failed event said ``ExceptionWithTraceback()``; the task's row says ``ValueError: bad
    input``, the cause, from the traceback that came with it."""
    t0 = time.time()
    failed = TaskEvent(
        "task-failed", "a", W, t0 + 1, t0 + 1,
        {"exception": "ExceptionWithTraceback()", "traceback": "Traceback ...\nValueError: bad input\n"},
    )  # fmt: skip
    stack = FakeStack({"a": TaskHistory("a", [TaskEvent("task-started", "a", W, t0, t0), failed])})
    item = SimpleNamespace(nodeid="t.py::test_x", name="test_x", funcargs={}, iter_markers=list)
    record = scenario_record(item, SimpleNamespace(outcome="failed", failed=True, duration=1.0), stack)
    assert [step["exception"] for step in record["tasks"]["a"]["events"]] == [None, "ValueError: bad input"]
    html = section(record, "data/x.json")
    assert "task-failed</b> on worker_hello@harness ValueError: bad input" in html and "ExceptionWith" not in html


def test_a_record_keeps_the_setup_and_call_seconds_pytest_split_counts() -> None:
    """The stack starts in the setup, so a scenario's time is not its body's alone (the plugin adds the teardown's
    once it is over: tests/test_shards.py's real run checks all three)."""
    item = SimpleNamespace(nodeid="t.py::test_x", name="test_x", funcargs={}, iter_markers=list)
    report = SimpleNamespace(outcome="passed", failed=False, duration=2.5)
    record = scenario_record(item, report, FakeStack({}), setup=8.0)
    assert (record["duration"], record["durations"]) == (2.5, {"setup": 8.0, "call": 2.5})


def outer_broker_args(config: pytest.Config) -> list[str]:
    """Run the inner scenario on the broker this test run was given."""
    args = []
    for name in BROKER_OPTIONS:
        value = options.get(config, name)
        if value:
            args.append(f"--{name.replace('_', '-')}={value}")
    return args


def run_for_report(pytester: pytest.Pytester, config: pytest.Config, scenario: str, *args: str) -> tuple[Path, dict]:
    """Run one scenario of scenarios/ in an inner pytest on this run's broker; its report folder and data."""
    (pytester.path / "scenarios").mkdir()  # the report covers what lives under scenarios/
    for name in (scenario, "conftest.py"):
        shutil.copy(ROOT / "scenarios" / name, pytester.path / "scenarios")
    folder = pytester.path / "report"
    result = pytester.runpytest_subprocess(
        f"scenarios/{scenario}", *args, f"--harness-report={folder}", "--harness-stack=app_under_test.stack:demo",
        *outer_broker_args(config), timeout=300,
    )  # fmt: skip
    result.assert_outcomes(passed=1)
    [data] = (folder / "data").glob("*.json")
    return folder, json.loads(data.read_text())


FAILING = """
import pytest

from app_under_test.stack import WORKER


def test_a_click_while_the_worker_is_stopped(stack, producer, ledger):
    stack.stop(WORKER)
    producer.send()
    assert ledger.count("task-succeeded") == 1, "the click was never handled"


@pytest.fixture
def an_app_that_does_not_start():
    raise RuntimeError("the app could not start")


@pytest.mark.scenario
def test_a_scenario_whose_setup_fails(an_app_that_does_not_start):
    pass  # never runs: its setup fails
"""


def test_a_failed_scenarios_page_starts_with_why_it_failed(pytester: pytest.Pytester, pytestconfig: pytest.Config):
    """A real scenario that fails: its section of the page says first what pytest says first (the assertion),
    then the program that is not running, before its story and plot."""
    pytester.makepyfile(test_failing=FAILING)
    folder = pytester.path / "report"
    result = pytester.runpytest_subprocess(
        "test_failing.py", f"--harness-report={folder}", "--harness-stack=app_under_test.stack:demo",
        *outer_broker_args(pytestconfig), timeout=300,
    )  # fmt: skip
    result.assert_outcomes(failed=1, errors=1)
    page = (folder / "index.html").read_text()
    section = page[page.index('<section class="scenario failed"') :]
    why = section.index("AssertionError: the click was never handled")
    assert section.index("Why it failed") < why < section.index("Programs not running")
    assert section.index("worker_hello is STOPPED") < section.index('<figure class="plot">')
    index = page[: page.index("<section")]
    assert "2 scenarios: 0 passed, <b class=bad>1 failed, 1 error</b>" in index
    assert "<code class=why-line>AssertionError: the click was never handled" in index
    # A scenario whose setup failed has no stack, no plot: listed all the same, with why.
    assert "<code class=why-line>RuntimeError: the app could not start</code>" in index
    errored = page[page.index('<section class="scenario error"') :]
    assert "its setup failed" in errored and "RuntimeError: the app could not start" in errored


def open_in_browser(folder: Path, screenshot: Path) -> dict:
    """Open the report at 1400 px in Chromium; measure what a reader sees; save a full-page screenshot."""
    with browser.browser_page() as page:
        page.set_viewport_size({"width": 1400, "height": 900})
        page.goto((folder / "index.html").as_uri())
        seen = page.evaluate(
            """() => {
              const plots = [...document.querySelectorAll("figure.plot svg")];
              const texts = plots.flatMap(svg => [...svg.querySelectorAll("text")]);
              return {
                plots: plots.length,
                widths: plots.map(svg => svg.getBoundingClientRect().width
                                         / svg.closest("section").getBoundingClientRect().width),
                smallest_text_px: Math.min(...texts.map(t => t.getBoundingClientRect().height)),
                texts: texts.map(t => t.textContent).join(" "),
              };
            }"""
        )
        page.screenshot(path=str(screenshot), full_page=True)
        # Click task #1 where a reader would: on its mark with the largest area (its end marker).
        x, y = page.evaluate(
            """() => {
              const marks = [...document.querySelectorAll("figure.plot svg g[id*='-task-1-']")];
              const area = g => { const b = g.getBoundingClientRect(); return b.width * b.height; };
              const box = marks.sort((a, b) => area(b) - area(a))[0].getBoundingClientRect();
              return [box.x + box.width / 2, box.y + box.height / 2];
            }"""
        )
        page.mouse.click(x, y)
        seen["clicked_row"] = page.evaluate(
            """() => {
              const row = document.getElementById(location.hash.slice(1));
              if (!row) return null;
              const box = row.getBoundingClientRect();
              return {open: row.closest("details").open, visible: box.height > 0 && box.top < innerHeight,
                      text: row.textContent};
            }"""
        )
        page.screenshot(path=str(screenshot.with_name(f"{screenshot.stem}-task-history.png")), full_page=True)
    shutil.copy(screenshot, folder / "screenshot.png")
    return seen


def assert_readable(seen: dict, plots: int) -> None:
    assert seen["plots"] == plots, seen
    assert all(ratio >= 0.95 for ratio in seen["widths"]), f"plot width / section width: {seen['widths']}"
    assert seen["smallest_text_px"] >= 12, f"the smallest text in a plot is {seen['smallest_text_px']:.1f} px high"
    row = seen["clicked_row"]
    assert row and row["open"] and row["visible"] and "task-" in row["text"], f"after a click on a task: {row}"


@pytest.mark.browser
def test_the_worker_outage_report_shows_the_backlog_and_opens_in_a_browser(
    pytester: pytest.Pytester, pytestconfig: pytest.Config, screenshots: Path
) -> None:
    """After the worker-outage scenario the report shows the queue rising to N while the worker is
    stopped and falling to 0 after it starts, both marked; a real Chromium renders the plot at the page's
    width with legible text, and a click on a task opens its history."""
    if reason := browser.missing():
        pytest.skip(reason)
    folder, record = run_for_report(pytester, pytestconfig, "test_worker_outage.py")

    marks = {m["label"]: m["at"] for m in record["timeline"]["marks"]}
    depth = [(s["at"], s["ready"]) for s in record["timeline"]["samples"] if s["queue"] == "hello_queue"]
    stopped, started = marks["worker_hello stopped"], marks["worker_hello started"]
    assert max(ready for at, ready in depth if stopped < at < started) == 20, "the backlog rose to 20"
    assert [ready for at, ready in depth if at > started][-1] == 0, "and drained to 0 after the start"

    seen = open_in_browser(folder, screenshots / "worker-outage.png")
    assert_readable(seen, plots=1)
    assert "20 sends" in seen["texts"], "the twenty clicks are counted on the plot"


@pytest.mark.browser
def test_the_acks_late_broker_restart_report_shows_both_runs_ended_and_the_broker_down_span(
    pytester: pytest.Pytester, pytestconfig: pytest.Config, screenshots: Path
) -> None:
    """The task ran twice: the first run ended (its success written by the worker's journal while the broker
    was down, Celery's event for it only after the redelivery), the second too. The report's data has both
    runs ending in a success and the broker-down span; the page draws the span labelled."""
    if reason := browser.missing():
        pytest.skip(reason)
    if options.get(pytestconfig, "harness_broker") == "url":
        pytest.skip("a broker restart needs a broker the harness owns (local or docker)")
    folder, record = run_for_report(pytester, pytestconfig, "test_broker_restart.py", "-k", "acks_late")

    [task] = record["tasks"].values()
    first, second = runs(task["events"])
    assert (first.how, second.how) == ("task-succeeded", "task-succeeded"), (first, second)
    [down] = record["timeline"]["broker_down"]
    assert down["what"] == "broker down" and down["end"] is not None, down
    assert down["start"] < first.end < down["end"] < second.start, "run 1 ended while the broker was down"

    seen = open_in_browser(folder, screenshots / "acks-late-broker-restart.png")
    assert_readable(seen, plots=1)
    assert "broker down:" in seen["texts"] and "no samples" in seen["texts"], seen["texts"]
