"""The run report: drawn from a scenario's data, and checked in a real browser."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from harness import browser, options
from harness.report import plot, section

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
BROKER_OPTIONS = (
    "harness_broker", "harness_broker_url", "harness_management_url", "harness_rabbitmq_image",
    "harness_docker_network",
)  # fmt: skip


def synthetic_record() -> dict:
    t0 = time.time()
    events = [
        {"type": "task-sent", "hostname": "web", "at": t0 + 0.1, "exception": None},
        {"type": "task-started", "hostname": "worker_hello@harness", "at": t0 + 1.0, "exception": None},
        {"type": "task-succeeded", "hostname": "worker_hello@harness", "at": t0 + 1.5, "exception": None},
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


def test_a_scenario_is_drawn_as_a_png_inside_its_section() -> None:
    assert plot(synthetic_record()).startswith(b"\x89PNG")
    html = section(synthetic_record(), "data/x.json")
    assert "data:image/png;base64," in html and "What a user sees: something." in html


def outer_broker_args(config: pytest.Config) -> list[str]:
    """Run the inner scenario on the broker this test run was given."""
    args = []
    for name in BROKER_OPTIONS:
        value = options.get(config, name)
        if value:
            args.append(f"--{name.replace('_', '-')}={value}")
    return args


@pytest.mark.browser
def test_the_worker_outage_report_shows_the_backlog_and_opens_in_a_browser(
    pytester: pytest.Pytester, pytestconfig: pytest.Config
) -> None:
    """After the worker-outage scenario the report shows the queue rising to N while the worker is
    stopped and falling to 0 after it starts, both marked; a real Chromium renders every plot."""
    if reason := browser.missing():
        pytest.skip(reason)
    (pytester.path / "scenarios").mkdir()  # the report covers what lives under scenarios/
    for name in ("test_worker_outage.py", "conftest.py"):
        shutil.copy(ROOT / "scenarios" / name, pytester.path / "scenarios")
    folder = pytester.path / "report"
    result = pytester.runpytest_subprocess(
        "scenarios/test_worker_outage.py",
        f"--harness-report={folder}",
        "--harness-stack=app_under_test.stack:demo",
        *outer_broker_args(pytestconfig),
        timeout=300,
    )
    result.assert_outcomes(passed=1)

    [data] = (folder / "data").glob("*.json")
    record = json.loads(data.read_text())
    marks = {m["label"]: m["at"] for m in record["timeline"]["marks"]}
    depth = [(s["at"], s["ready"]) for s in record["timeline"]["samples"] if s["queue"] == "hello_queue"]
    stopped, started = marks["worker_hello stopped"], marks["worker_hello started"]
    assert max(ready for at, ready in depth if stopped < at < started) == 20, "the backlog rose to 20"
    assert [ready for at, ready in depth if at > started][-1] == 0, "and drained to 0 after the start"

    with browser.browser_page() as page:
        page.goto((folder / "index.html").as_uri())
        widths = page.eval_on_selector_all("section img.plot", "images => images.map(i => i.naturalWidth)")
        page.screenshot(path=str(folder / "screenshot.png"), full_page=True)
    assert len(widths) == 1 and all(w > 0 for w in widths), f"plot widths: {widths}"
    assert (folder / "screenshot.png").stat().st_size > 0
