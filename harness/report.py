"""The run report: one self-contained HTML page per run, a section per scenario.

Each section has the scenario's story (its docstring) and outcome, a timeline of tasks per worker
with every fault or operator action marked, queue depth over time on the same axis, and the table
of task fates. Plots are drawn with matplotlib and inlined as PNG; each scenario's raw data (ledger,
depth samples, marks) is saved next to the page as JSON, so the plots can be redrawn.

``pytest --report DIR`` (default ``harness-report`` in the rootdir; ``--no-report`` to skip it).
"""

from __future__ import annotations

import base64
import html
import inspect
import io
import json
import re
import time
from pathlib import Path

import pytest

from harness.stack import AppStack
from harness.verdict import FATES

FATE_COLOURS = {
    "succeeded": "#2e7d32",
    "failed": "#c62828",
    "duplicated": "#ef6c00",
    "lost": "#6a1b9a",
    "queued": "#1565c0",
    "unsettled": "#757575",
    "unverified": "#5d4037",
    "unexpected": "#ad1457",
    "recovered": "#00838f",
    "unsent": "#9e9d24",
}
RUN_ENDS = ("task-succeeded", "task-failed", "task-rejected", "task-revoked", "task-retried", "task-cancelled")


def scenario_record(item: pytest.Item, report: pytest.TestReport, stack: AppStack) -> dict:
    """Everything the report shows of one scenario, as plain data."""
    verdict = stack.verdict()
    fate_of = {task_id: fate for fate, ids in verdict.fates.items() for task_id in ids}
    tasks = {
        task_id: {
            "fate": fate_of.get(task_id),
            "events": [
                {
                    "type": e.type,
                    "hostname": e.hostname,
                    "at": e.timestamp,
                    "exception": e.exception_type,
                    "witnesses": sorted(e.witnesses),
                }
                for e in history.events
            ],
        }
        for task_id, history in verdict.histories.items()
    }
    function = getattr(item, "function", None)
    return {
        "nodeid": item.nodeid,
        "name": item.name,
        "module": inspect.getdoc(getattr(item, "module", None)) or "",
        "story": inspect.getdoc(function) or "",
        "outcome": report.outcome,
        "duration": report.duration,
        "timeline": stack.timeline.as_dict(),
        "tasks": tasks,
        "fates": verdict.counts(),
        "sends": {i: {"at": send.at, "ok": send.ok, "error": send.error} for i, send in verdict.sends.items()},
        "fate_of": fate_of,
        "ended": time.time(),
    }


def plot(record: dict) -> bytes:
    """Tasks per worker above, queue depth below, on one time axis (seconds since the scenario began)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = record["tasks"]
    workers = sorted({e["hostname"] for t in tasks.values() for e in t["events"] if e["type"] == "task-started"})
    lanes = ["sent", *workers]
    figure, (top, bottom) = plt.subplots(
        2, 1, sharex=True, figsize=(10, 2.8 + 0.5 * len(lanes)), height_ratios=[max(2, len(lanes)), 2]
    )
    _plot_tasks(top, record, lanes)
    _plot_depth(bottom, record)
    _plot_marks((top, bottom), record)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return buffer.getvalue()


def _plot_tasks(axis, record: dict, lanes: list[str]) -> None:
    origin = record["timeline"]["started"]
    tasks = sorted(record["tasks"].values(), key=_first_at)
    end = max([record.get("ended", time.time()) - origin] + [e["at"] - origin for t in tasks for e in t["events"]])
    first_sent: set[int] = set()
    for k, task in enumerate(tasks):
        offset = 0.8 * k / max(1, len(tasks))  # each task its own height within a lane
        colour = FATE_COLOURS.get(task["fate"] or "", "#9e9e9e")
        events = task["events"]
        for n, event in enumerate(events):
            at = event["at"] - origin
            if event["type"] == "task-sent" and k not in first_sent:  # a retry is sent again: not a new task
                first_sent.add(k)
                axis.plot([at], [offset], marker="|", color=colour, markersize=8)
            elif event["type"] == "task-started":
                y = lanes.index(event["hostname"]) + offset
                finish = _run_end(events[n + 1 :], event["hostname"])
                ended = finish is not None and finish["type"] in RUN_ENDS
                stop = finish["at"] - origin if finish else end
                axis.plot([at, stop], [y, y], color=colour, linewidth=2, linestyle="-" if ended else ":")
                if ended:
                    axis.plot([stop], [y], marker="o" if finish["type"] == "task-succeeded" else "x", color=colour)
    # What the scenario itself sent: a refused send (the app answered an error) as a triangle.
    for task_id, send in record["sends"].items():
        if not send["ok"]:
            colour = FATE_COLOURS.get(record["fate_of"].get(task_id) or "", "#9e9e9e")
            axis.plot([send["at"] - origin], [0.4], marker="v", color=colour, markersize=7)
    axis.set_yticks([i + 0.4 for i in range(len(lanes))], lanes)
    axis.set_ylim(-0.3, len(lanes))
    used = [f for f in FATES if record["fates"].get(f)]
    for fate in used:
        axis.plot([], [], color=FATE_COLOURS[fate], linewidth=3, label=f"{fate} ({record['fates'][fate]})")
    if used:
        axis.legend(loc="upper left", fontsize=8, bbox_to_anchor=(1.01, 1.0))


def _run_end(later: list[dict], hostname: str) -> dict | None:
    """The event that ends a run: how it ended, or the task's next delivery (the run was cut off)."""
    cut = ("task-received", "task-started")
    return next((e for e in later if e["type"] in cut or (e["type"] in RUN_ENDS and e["hostname"] == hostname)), None)


def _plot_depth(axis, record: dict) -> None:
    origin = record["timeline"]["started"]
    samples = record["timeline"]["samples"]
    for queue in sorted({s["queue"] for s in samples}):
        points = [s for s in samples if s["queue"] == queue]
        xs = [s["at"] - origin for s in points]
        # A failed reading (the broker down) is a gap, not the last value held.
        ready = [float("nan") if s["ready"] is None else s["ready"] for s in points]
        axis.step(xs, ready, where="post", label=f"{queue} ready")
        if any(s["unacked"] is not None for s in points):
            # Unknown counts (no management API while a consumer is connected) are gaps, not zeros.
            unacked = [float("nan") if s["unacked"] is None else s["unacked"] for s in points]
            axis.step(xs, unacked, where="post", linestyle="--", label=f"{queue} unacked")
    highest = max([s["ready"] or 0 for s in samples] + [s["unacked"] or 0 for s in samples] + [1])
    axis.set_ylim(0, highest * 1.15)
    axis.set_ylabel("messages")
    axis.set_xlabel("seconds since the scenario started")
    if samples:
        axis.legend(loc="upper left", fontsize=8, bbox_to_anchor=(1.01, 1.0))


def _plot_marks(axes, record: dict) -> None:
    """Each operator or fault action: a dashed line through both plots, labelled above the top one."""
    origin = record["timeline"]["started"]
    top = axes[0]
    for number, mark in enumerate(record["timeline"]["marks"], start=1):
        at = mark["at"] - origin
        for axis in axes:
            axis.axvline(at, color="#424242", linestyle="--", linewidth=1)
        # Numbers, listed under the plot: labels of close marks would overprint each other.
        top.text(at, 1.02, str(number), transform=top.get_xaxis_transform(), fontsize=8, ha="center", va="bottom")


def _markup(text: str) -> str:
    """Escape a docstring paragraph and render its reST inline code (``x``) and emphasis (*x*)."""
    escaped = html.escape(" ".join(text.split()))
    escaped = re.sub(r"``(.+?)``", r"<code>\1</code>", escaped)
    return re.sub(r"(?<![\w*])\*(\S[^*]*?)\*(?![\w*])", r"<em>\1</em>", escaped)


def _first_at(task: dict) -> float:
    return min((e["at"] for e in task["events"]), default=0.0)


def _slug(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", nodeid).strip("-")[:150]


def section(record: dict, data_file: str) -> str:
    e = html.escape
    fates = "".join(
        f"<tr><td><span class=dot style='background:{FATE_COLOURS[f]}'></span>{f}</td>"
        f"<td>{record['fates'].get(f, 0)}</td></tr>"
        for f in FATES
    )
    where = f"{e(record['nodeid'])} &middot; test body {record['duration']:.1f} s"
    story = "".join(f"<p>{_markup(p)}</p>" for p in record["story"].split("\n\n") if p.strip())
    origin = record["timeline"]["started"]
    marks = "".join(f"<li>{e(m['label'])} at {m['at'] - origin:.1f} s</li>" for m in record["timeline"]["marks"])
    image = base64.b64encode(plot(record)).decode()
    title = record["name"].split("[")[0].removeprefix("test_").replace("_", " ").capitalize()
    return f"""
<section class="scenario {e(record["outcome"])}" id="{e(_slug(record["nodeid"]))}">
  <h2>{e(title)} <span class="outcome">{e(record["outcome"])}</span></h2>
  <p class="nodeid">{where} &middot; <a href="{e(data_file)}">raw data (JSON)</a></p>
  <div class="story">{story}</div>
  <p class="caption">Top: each task's send (|, or a triangle where the app refused it) and each run
  on a worker (a line ending in o if it succeeded, x if it failed, dotted if it never ended),
  coloured by the task's fate. Bottom: the queues' ready messages (read over AMQP every 100 ms)
  and unacknowledged ones (from the management API, whose counters refresh every 0.5 s on the
  harness's brokers, every 5 s by RabbitMQ's default). Numbered dashed lines: the actions below.</p>
  <img class="plot" alt="task timeline and queue depth of {e(record["name"])}" src="data:image/png;base64,{image}">
  <ol class="marks">{marks}</ol>
  <table class="fates"><tr><th>fate</th><th>tasks</th></tr>{fates}</table>
</section>"""


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Celery failure harness: run report</title>
<style>
body {{ font-family: sans-serif; max-width: 1100px; margin: 2rem auto; color: #212121; }}
section {{ border-top: 1px solid #ccc; padding: 1rem 0; }}
.outcome {{ font-size: .8rem; padding: .1rem .5rem; border-radius: .3rem; background: #e0e0e0; }}
.passed .outcome {{ background: #c8e6c9; }} .failed .outcome {{ background: #ffcdd2; }}
.nodeid, .caption {{ color: #616161; font-size: .85rem; }} .story p {{ margin: .4rem 0; }}
img.plot {{ max-width: 100%; display: block; margin: .8rem 0; }}
table.fates td, table.fates th {{ padding: .1rem .8rem; text-align: left; }}
.dot {{ display: inline-block; width: .7rem; height: .7rem; border-radius: 50%; margin-right: .4rem; }}
</style></head><body>
<h1>Run report</h1>
<p>{summary}</p>
<ul>{toc}</ul>
{extra}
{sections}
</body></html>
"""


class ReportPlugin:
    """Collects a record per scenario that ran a stack, and writes the page at the end of the run."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.records: list[tuple[dict, str]] = []
        self.extra_sections: list[str] = []  # HTML other plugins add before the scenarios (the audit's table)
        self.started = time.strftime("%Y-%m-%d %H:%M:%S")

    def _start_data(self) -> None:
        """On the run's first scenario, replace the previous run's records (a run without scenarios,
        such as the harness's own tests, leaves the last report alone)."""
        if self.records:
            return
        data = self.folder / "data"
        data.mkdir(parents=True, exist_ok=True)
        for old in data.glob("*.json"):
            old.unlink()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        report = yield
        stack = getattr(item, "funcargs", {}).get("stack")
        is_scenario = item.get_closest_marker("scenario") is not None  # the harness's own tests stay out
        if report.when == "call" and is_scenario and isinstance(stack, AppStack):
            try:
                record = scenario_record(item, report, stack)
            except Exception as exc:  # a broken stack must not hide the scenario's own outcome
                report.sections.append(("harness report", f"no report data: {exc!r}"))
            else:
                self._start_data()
                name = f"data/{_slug(item.nodeid)}.json"
                (self.folder / name).write_text(json.dumps(record, indent=1))
                self.records.append((record, name))
        return report

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not self.records:
            return
        passed = sum(1 for r, _ in self.records if r["outcome"] == "passed")
        toc = "".join(
            f"<li><a href='#{html.escape(_slug(r['nodeid']))}'>{html.escape(r['name'])}</a> ({r['outcome']})</li>"
            for r, _ in self.records
        )
        page = PAGE.format(
            summary=f"{len(self.records)} scenarios, {passed} passed; run started {self.started}.",
            toc=toc,
            extra="".join(self.extra_sections),
            sections="".join(section(record, name) for record, name in self.records),
        )
        (self.folder / "index.html").write_text(page)

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.records:
            terminalreporter.write_line(f"harness report: {(self.folder / 'index.html').resolve().as_uri()}")
