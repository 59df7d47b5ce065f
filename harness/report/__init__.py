"""The run report: one self-contained HTML page per run, an index to scan, then a section per scenario.

The index (``index_table``) is a table per group (``group_of``: the scenario's suite, else its file), failures
first, with each scenario's fates as coloured counts, its time and why it failed, and a filter. Each section has
the scenario's story (its docstring) and outcome, a timeline of tasks per worker with every fault or operator
action marked, queue depth over time on the same axis (``harness.plots``: inline SVG, each task linked to its
row), the fates that occurred (every fate on demand) and every task's history with the witness that saw each step.
A scenario whose setup failed has a section too (why, and its story). Each scenario's raw data (ledger, depth
samples, marks, broker-down spans, each test phase's seconds) is saved next to the page as JSON, so the plots can
be redrawn; ``harness.shards`` merges the reports of a sharded run and writes pytest-split's durations from them.

``pytest --harness-report DIR`` (default ``harness-report`` in the rootdir; ``--harness-no-report`` to skip it).
"""

from __future__ import annotations

import dataclasses
import html
import inspect
import json
import re
import shutil
import time
from pathlib import Path

import celery
import pytest

from harness import evidence
from harness.docs import SUITE_ORDER, suite_of, title_of
from harness.errors import HarnessError
from harness.plots import FATE_COLOURS, numbered, plot
from harness.stack import AppStack
from harness.verdict import FATES

# The pytest process's CPU clock when the scenario's setup began: its record's ``cpu.pytest_s`` counts from there
# (the stack's start, the scenario, its verdict; all the process's threads: event receivers, the depth sampler).
CPU_AT_SETUP = pytest.StashKey[float]()
Record = tuple[dict, Path]  # a scenario's record, and the data/*.json file it was read from
FAILED = ("failed", "error")  # a scenario's outcomes that are failures: its test failed, or its setup did
FAILURE_CHARS = 6000  # of the failure's text shown: an assertion on a verdict lists the histories of 10 tasks a fate


def failure_text(call: pytest.CallInfo | None) -> str | None:
    """Why the scenario failed, as pytest says it first: the exception and its message (an assertion's text with
    pytest's explanation); a problem the user must fix as its one sentence."""
    if call is None or call.excinfo is None:
        return None
    if call.excinfo.errisinstance(HarnessError):
        return f"harness: {call.excinfo.value}"
    return call.excinfo.exconly().strip()[:FAILURE_CHARS]


def why_failed(stack: AppStack) -> dict[str, list[str]]:
    """What a reader of a failure looks at next, as the plugin's failure report lists it: the programs that are
    not running (the likeliest cause), then the queues no one consumes."""
    found: dict[str, list[str]] = {}
    for key, read in (("not_running", stack.not_running), ("unconsumed", stack.unconsumed)):
        try:
            found[key] = read()
        except Exception as exc:  # supervisord or the broker may be what broke: say so, keep the rest
            found[key] = [f"could not be read: {exc!r}"]
    return found


def scenario_record(
    item: pytest.Item,
    report: pytest.TestReport,
    stack: AppStack,
    call: pytest.CallInfo | None = None,
    setup: float | None = None,
) -> dict:
    """Everything the report shows of one scenario, as plain data; a failed one starts with why it failed.

    ``durations`` is the scenario's time per phase, as pytest-split counts a test's time (``harness.shards``
    writes its durations file from them): ``setup`` (the seconds the setup phase took, where the stack
    starts), ``call``, and ``teardown``, which the plugin adds once the teardown is over. The plugin adds ``cpu``
    too, the CPU-seconds the scenario cost (``python -m harness.bench --cpu`` prints the dearest): its pytest
    process's from set-up to the call's end (``pytest_s``), its programs' and supervisord's (``programs_s``), and
    its section's drawing (``drawing_s``); its broker's share is not split out (a broker serves many scenarios)."""
    failed = report.failed
    failure = {"failure": failure_text(call), **why_failed(stack)} if failed else {}
    verdict = stack.verdict()
    fate_of = {task_id: fate for fate, ids in verdict.fates.items() for task_id in ids}
    histories = dict(verdict.histories)
    if verdict.periodic_tasks is not None:  # the tasks a beat sent: judged apart, shown with the others
        histories.update(verdict.periodic_tasks.histories)
        fate_of.update({i: fate for fate, ids in verdict.periodic_tasks.fates.items() for i in ids})
    tasks = {
        task_id: {
            "fate": fate_of.get(task_id),
            "reason": verdict.reasons.get(task_id)
            or (verdict.periodic_tasks.reasons.get(task_id) if verdict.periodic_tasks is not None else None),
            "events": [
                {
                    "type": e.type,
                    "hostname": e.hostname,
                    "at": e.timestamp,
                    "received": e.received_at,
                    "exception": e.error if e.type in ("task-failed", "task-retried") else e.exception_type,
                    "witnesses": sorted(e.witnesses),
                    "late": e.fields.get("reported_late_s"),
                }
                for e in history.events
            ],
        }
        for task_id, history in histories.items()
    }
    periodic = verdict.periodic
    runs = (
        {
            "counts": periodic.counts(),
            "origin": periodic.origin,
            "runs": [dataclasses.asdict(run) for run in periodic.runs],
            "overlaps": periodic.overlaps,
            "unjudged": periodic.unjudged,
        }
        if periodic is not None
        else None
    )
    return {
        **_identity(item),
        "outcome": report.outcome,
        "duration": report.duration,
        "durations": {"setup": setup, "call": report.duration},
        "timeline": stack.timeline.as_dict(),
        "tasks": tasks,
        "fates": verdict.counts(),
        "witness_gaps": evidence.witness_gaps(verdict.histories),
        "sends": {i: {"at": send.at, "ok": send.ok, "error": send.error} for i, send in verdict.sends.items()},
        "fate_of": fate_of,
        **({"periodic": runs} if runs is not None else {}),
        "ended": time.time(),
        "rabbitmq": broker_version(item),  # the broker's version (the key predates Redis; "broker" names it)
        "broker": broker_name(item),
        "celery": celery.__version__,  # the harness's Celery: the programs run this interpreter's
        **failure,
    }


# Markers that say how a test runs, not what it is about: left out of a record's markers.
MECHANICS = {"parametrize", "usefixtures", "filterwarnings", "skip", "skipif", "xfail", "xdist_group", "scenario"}


def _identity(item: pytest.Item) -> dict:
    """What names a scenario in its record: its node id and name, its module's and its own docstring, its markers
    (the run report groups scenarios by them: ``harness.docs.suite_of``)."""
    return {
        "nodeid": item.nodeid,
        "name": item.name,
        "module": inspect.getdoc(getattr(item, "module", None)) or "",
        "story": inspect.getdoc(getattr(item, "function", None)) or "",
        "markers": sorted({m.name for m in item.iter_markers()} - MECHANICS),
    }


def setup_failure_record(item: pytest.Item, report: pytest.TestReport, call: pytest.CallInfo) -> dict:
    """The record of a scenario whose setup failed (its stack or broker did not start): no tasks, no plot, and why,
    so the report lists it with the others rather than leaving it out."""
    now = time.time()
    return {
        **_identity(item),
        "outcome": "error",
        "duration": 0.0,
        "durations": {"setup": report.duration},
        "timeline": {"started": now - report.duration, "marks": [], "broker_down": []},
        "tasks": {},
        "fates": {},
        "fate_of": {},
        "ended": now,
        "no_stack": True,
        "failure": failure_text(call),
    }


def whole_time(record: dict) -> float:
    """A scenario's seconds as pytest-split counts a test's (setup + call + teardown); a record written before
    the report kept each phase has its body's (``duration``) only."""
    phases = record.get("durations") or {"call": record["duration"]}
    return sum(seconds for seconds in phases.values() if seconds is not None)


def broker_name(item: pytest.Item) -> str | None:
    """The broker the scenario ran on, as ``Redis 7.0.15`` or ``RabbitMQ 3.10.8`` (None if it could not say)."""
    broker = getattr(item, "funcargs", {}).get("broker")
    version = broker_version(item)
    return f"{broker.product} {version}" if broker is not None and version else None


def broker_version(item: pytest.Item) -> str | None:
    """The RabbitMQ version the scenario ran on (None if the broker could not say)."""
    broker = getattr(item, "funcargs", {}).get("broker")
    try:
        return broker.server_version() if broker is not None else None
    except Exception:  # a broker that stopped answering: the scenario's outcome matters more
        return None


def _markup(text: str) -> str:
    """Escape a docstring paragraph and render its reST inline code (``x``) and emphasis (*x*)."""
    escaped = html.escape(" ".join(text.split()))
    escaped = re.sub(r"``(.+?)``", r"<code>\1</code>", escaped)
    return re.sub(r"(?<![\w*])\*(\S[^*]*?)\*(?![\w*])", r"<em>\1</em>", escaped)


def _first_at(task: dict) -> float:
    return min((e["at"] for e in task["events"]), default=0.0)


def slug(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", nodeid).strip("-")[:150]


def _dot(fate: str) -> str:
    return f"<span class=dot style='background:{FATE_COLOURS.get(fate, '#9e9e9e')}'></span>"


def fate_tables(fates: dict[str, int]) -> str:
    """The fates that occurred; every fate (zeros too) on demand."""
    row = "<tr><td>{dot}{fate}</td><td>{n}</td></tr>"
    occurred = "".join(row.format(dot=_dot(f), fate=f, n=fates[f]) for f in FATES if fates.get(f))
    every = "".join(row.format(dot=_dot(f), fate=f, n=fates.get(f, 0)) for f in FATES)
    return (
        f"<table class=fates><tr><th>fate</th><th>tasks</th></tr>{occurred or '<tr><td>no task</td><td>0</td></tr>'}"
        f"</table><details class=allfates><summary>every fate</summary><table class=fates>{every}</table></details>"
    )


def task_table(record: dict, anchor: str) -> str:
    """One row per task (numbered as in the plot): its fate, and each step with the witnesses that saw it."""
    e = html.escape
    origin = record["timeline"]["started"]
    rows = []
    for n, task_id, task in numbered(record["tasks"]):
        steps = []
        for step in task["events"]:
            late = f" (Celery's event came {step['late']:.1f} s late)" if step.get("late") else ""
            error = f" {e(step['exception'])}" if step.get("exception") else ""
            seen = "+".join(step.get("witnesses", [])) or "?"
            steps.append(
                f"<li>{step['at'] - origin:+.2f} s <b>{e(step['type'])}</b> on {e(step['hostname'])}{error} "
                f"<span class=witness>[{e(seen)}]</span>{e(late)}</li>"
            )
        reason = f"<br><small>{e(task['reason'])}</small>" if task.get("reason") else ""
        rows.append(
            f"<tr id='{e(anchor)}-task-{n}'><td>#{n}</td><td><code>{e(task_id)}</code></td>"
            f"<td>{_dot(task['fate'] or '')}{e(task['fate'] or '-')}{reason}</td>"
            f"<td><ol>{''.join(steps)}</ol></td></tr>"
        )
    return (
        f"<details class=tasks><summary>every task's history ({len(rows)} tasks; click a task in the plot)</summary>"
        "<table class=tasks><tr><th>task</th><th>id</th><th>fate</th><th>steps, and the witnesses that saw each "
        f"(events: Celery's, through the broker; journal: the program's own)</th></tr>{''.join(rows)}</table></details>"
    )


def periodic_table(record: dict) -> str:
    """The due runs of a stack with a beat (``verdict.periodic``): each run's fate, when it was due, by which beat
    and why; empty without one."""
    periodic = record.get("periodic")
    if not periodic:
        return ""
    e = html.escape
    origin = record["timeline"]["started"]
    counts = ", ".join(f"{n} {fate}" for fate, n in periodic["counts"].items() if n) or "none due"
    rows = "".join(
        f"<tr><td>{_dot(run['fate'])}{e(run['fate'])}</td><td>{e(run['entry'])}</td>"
        f"<td>{run['due'] - origin:+.2f} s</td><td>{e(run['beat'] or '-')}</td>"
        f"<td><code>{e(run['task_id'] or '-')}</code></td><td>{e(run['reason'])}</td></tr>"
        for run in periodic["runs"]
    )
    notes = [f"{late} started while {early} still ran" for late, early in periodic["overlaps"].items()]
    notes += periodic["unjudged"]
    extra = "".join(f"<li>{e(note)}</li>" for note in notes)
    return (
        f"<details class=tasks open><summary>periodic runs: {e(counts)}</summary><table class=tasks><tr><th>fate</th>"
        f"<th>entry</th><th>due</th><th>beat</th><th>task</th><th>why</th></tr>{rows}</table>"
        f"{f'<ul>{extra}</ul>' if extra else ''}</details>"
    )


def _until(end: float | None, origin: float) -> str:
    return "the end" if end is None else f"{end - origin:.1f} s"


def failure_block(record: dict) -> str:
    """A failed scenario's first words: why it failed, then the programs not running and the queues no one
    consumes (what the plugin's failure report lists first too); empty for one that passed."""
    if record.get("outcome") not in FAILED:
        return ""
    e = html.escape
    parts = [
        f"<h3>Why it failed</h3><pre class=failure>{e(record.get('failure') or 'no exception was recorded')}</pre>"
    ]
    for key, title in (("not_running", "Programs not running"), ("unconsumed", "Queues no one consumes")):
        if record.get(key):
            parts.append(f"<h3>{title}</h3><ul>{''.join(f'<li>{e(line)}</li>' for line in record[key])}</ul>")
    return f"<div class=why>{''.join(parts)}</div>"


def gaps_line(record: dict) -> str:
    """What each witness missed, where one did: the event stream's losses under the scenario's faults."""
    gaps = record.get("witness_gaps") or {}
    if not gaps.get("events_missed") and not gaps.get("journal_missed"):
        return ""
    return (
        f"<p class='caption'>Of {gaps['steps']} steps (receives, starts, ends), Celery's events missed "
        f"{gaps['events_missed']} and the journal {gaps['journal_missed']}; the other witness saw them.</p>"
    )


# What the depth plot's counts are, per broker family (a record names its broker: "Redis 7.0.15", "RabbitMQ 3.10.8").
DEPTH_READINGS = {
    "RabbitMQ": (
        "ready messages (read over AMQP every 100 ms; a break in the line: no reading) and unacknowledged ones (from "
        "the management API, whose counters refresh every 0.5 s on the harness's brokers)"
    ),
    "Redis": (
        "ready messages (the lengths of the queue's lists, read every 100 ms; a break in the line: no reading) and "
        "unacknowledged ones (its messages in kombu's unacked hash), both exact"
    ),
}


def plot_caption(record: dict) -> str:
    """How to read the scenario's plot, with what its depth counts are on the broker it ran on."""
    family = (record.get("broker") or "RabbitMQ").split()[0]
    return (
        "Top: each task on a row of its own (hover for its id, click for its history below): its send (|, or a "
        "triangle where the app refused it) and each run on a worker, a line ending in o if it succeeded, x if it "
        f"failed, dotted if it never ended; coloured by the task's fate. Bottom: the queues' "
        f"{DEPTH_READINGS.get(family, DEPTH_READINGS['RabbitMQ'])}. Shaded: the broker was down. Numbered lines: the "
        "actions listed below (red: the broker, blue: a program, orange: the network)."
    )


def marks_list(record: dict) -> str:
    """The plot's numbered actions, in order, with when each happened."""
    e, origin = html.escape, record["timeline"]["started"]
    items = "".join(
        f"<li class='{e(m.get('kind', 'program'))}'>{e(m['label'])} at {m['at'] - origin:.1f} s</li>"
        for m in sorted(record["timeline"]["marks"], key=lambda m: m["at"])
    )
    return f'<ol class="marks">{items}</ol>'


def scenario_title(record: dict) -> str:
    """The scenario's name as a sentence (its parameters left out)."""
    return title_of(record["name"])


def section(record: dict, data_file: str) -> str:
    e = html.escape
    anchor = slug(record["nodeid"])
    where = f"{e(record['nodeid'])} &middot; test body {record['duration']:.1f} s"
    story = "".join(f"<p>{_markup(p)}</p>" for p in record["story"].split("\n\n") if p.strip())
    origin = record["timeline"]["started"]
    down = "".join(
        f"<li>{e(d['what'])} from {d['start'] - origin:.1f} s to {_until(d['end'], origin)}: no samples</li>"
        for d in record["timeline"].get("broker_down", [])
    )
    title = scenario_title(record)
    if record.get("no_stack"):
        return f"""
<section class="scenario {e(record["outcome"])}" id="{e(anchor)}">
  <h2>{e(title)} <span class="outcome">{e(record["outcome"])}</span></h2>
  <p class="nodeid">{e(record["nodeid"])} &middot; its setup failed: no stack ran &middot;
  <a href="{e(data_file)}">raw data (JSON)</a></p>
  {failure_block(record)}
  <div class="story">{story}</div>
</section>"""
    return f"""
<section class="scenario {e(record["outcome"])}" id="{e(anchor)}">
  <h2>{e(title)} <span class="outcome">{e(record["outcome"])}</span></h2>
  <p class="nodeid">{where} &middot; <a href="{e(data_file)}">raw data (JSON)</a></p>
  {failure_block(record)}
  <div class="story">{story}</div>
  <p class="caption">{plot_caption(record)}</p>
  <figure class="plot">{plot(record, anchor)}</figure>
  {marks_list(record)}
  {gaps_line(record)}
  {f"<ul class='down'>{down}</ul>" if down else ""}
  {fate_tables(record["fates"])}
  {periodic_table(record)}
  {task_table(record, anchor)}
</section>"""


def first_line_of_failure(record: dict) -> str:
    """The first line of why a scenario failed (empty for one that passed)."""
    first = (record.get("failure") or "").strip().splitlines()[:1]
    return first[0][:200] if record.get("outcome") in FAILED and first else ""


def _drawn_section(record: dict, data_path: Path) -> str:
    """The section its scenario's process drew, else drawn now (a record without one: its drawing failed)."""
    drawn = data_path.with_suffix(".html")
    return drawn.read_text() if drawn.is_file() else section(record, f"data/{data_path.name}")


PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Celery failure harness: run report</title>
<style>
body {{ font-family: sans-serif; font-size: 16px; line-height: 1.45; max-width: 1600px; margin: 1.5rem auto;
  padding: 0 1.5rem; color: #212121; }}
section {{ border-top: 1px solid #ccc; padding: 1rem 0; }}
.outcome {{ font-size: .8rem; padding: .1rem .5rem; border-radius: .3rem; background: #e0e0e0; }}
.passed .outcome {{ background: #c8e6c9; }} .failed .outcome {{ background: #ffcdd2; }}
.nodeid, .caption {{ color: #555; font-size: .9rem; }} .story p {{ margin: .4rem 0; max-width: 60rem; }}
figure.plot {{ margin: .8rem 0; width: 100%; }} figure.plot svg {{ display: block; width: 100%; height: auto; }}
figure.plot a:hover path {{ stroke-width: 4; }}
ol.marks li.broker {{ color: #b71c1c; }} ol.marks li.program {{ color: #0d47a1; }}
ol.marks li.network {{ color: #e65100; }}
table.fates td, table.fates th, table.tasks td, table.tasks th {{ padding: .15rem .8rem; text-align: left;
  vertical-align: top; }}
table.tasks ol {{ margin: 0; padding-left: 1.2rem; }} table.tasks tr:target {{ background: #fff8e1; }}
.witness {{ color: #616161; font-size: .85rem; }}
.dot {{ display: inline-block; width: .7rem; height: .7rem; border-radius: 50%; margin-right: .4rem; }}
details {{ margin: .5rem 0; }} summary {{ cursor: pointer; color: #0d47a1; }}
.why {{ border-left: 4px solid #c62828; padding: .2rem 1rem; background: #fff5f5; }}
.why h3 {{ font-size: 1rem; margin: .6rem 0 .2rem; }}
pre.failure {{ white-space: pre-wrap; font-size: .85rem; margin: 0; max-height: 30rem; overflow: auto; }}
.error .outcome {{ background: #ffcdd2; }} b.bad {{ color: #b71c1c; }}
.filter {{ position: sticky; top: 0; background: #fff; padding: .5rem 0; z-index: 1; }}
.filter input[type=search] {{ width: 28rem; max-width: 90%; font-size: 1rem; padding: .2rem .4rem; }}
#shown {{ color: #555; font-size: .9rem; margin-left: .6rem; }}
.group h2 {{ font-size: 1.15rem; margin: 1.2rem 0 .3rem; }} .group h2 small {{ color: #555; font-weight: normal; }}
table.index {{ border-collapse: collapse; width: 100%; table-layout: fixed; }}
col.outcome-col {{ width: 6.5rem; }} col.fates-col {{ width: 24rem; }} col.time-col {{ width: 5.5rem; }}
table.index .nodeid {{ overflow-wrap: anywhere; }} .params {{ color: #555; font-size: .9rem; }}
table.index td, table.index th {{ padding: .3rem .6rem; text-align: left; vertical-align: top;
  border-bottom: 1px solid #eee; }}
table.index tr.failed, table.index tr.error {{ background: #fff5f5; }}
table.index td.num {{ text-align: right; white-space: nowrap; }} table.index .nodeid {{ font-size: .8rem; }}
.count {{ white-space: nowrap; margin-right: .5rem; }} .quiet {{ color: #9e9e9e; }}
code.why-line {{ color: #b71c1c; font-size: .85rem; }}
</style>
<script>
// A click on a task in a plot jumps to its row: open the table it sits in first.
function openTarget() {{
  const row = location.hash && document.getElementById(location.hash.slice(1));
  if (!row) return;
  const box = row.closest("details");
  if (box) box.open = true;
  row.scrollIntoView({{block: "center"}});
}}
window.addEventListener("hashchange", openTarget);
window.addEventListener("load", openTarget);
// The index's filter: a row stays when it has every word typed (and failed, with "failures only").
function filterIndex() {{
  const words = document.getElementById("filter").value.toLowerCase().split(/\s+/).filter(Boolean);
  const failuresOnly = document.getElementById("failures").checked;
  let shown = 0, total = 0;
  for (const group of document.querySelectorAll(".group")) {{
    let left = 0;
    for (const row of group.querySelectorAll("tr[data-text]")) {{
      const keep = words.every(w => row.dataset.text.includes(w)) &&
        (!failuresOnly || row.classList.contains("failed") || row.classList.contains("error"));
      row.hidden = !keep; left += keep; total += 1;
    }}
    group.hidden = left === 0; shown += left;
  }}
  document.getElementById("shown").textContent = shown === total ? "" : `${{shown}} of ${{total}} shown`;
}}
window.addEventListener("load", () => {{
  document.getElementById("filter").addEventListener("input", filterIndex);
  document.getElementById("failures").addEventListener("change", filterIndex);
}});
</script></head><body>
<h1>Run report</h1>
<p>{summary}</p>
{index}
{extra}
{sections}
</body></html>
"""


def group_of(record: dict) -> str:
    """The index's group of a scenario: its suite (``harness.docs.suite_of``: seed lessons, the failure catalogue on
    each broker family), else its test file (a team's own scenarios, and records written before markers were)."""
    return suite_of(record.get("markers") or (), default=None) or record["nodeid"].split("::")[0]


def _group_order(name: str) -> tuple[int, str]:
    return (SUITE_ORDER.index(name), "") if name in SUITE_ORDER else (len(SUITE_ORDER), name)


def ordered(records: list[Record]) -> list[tuple[str, list[Record]]]:
    """The records by group, as the index lists them: groups with a failure first, then the suites in the docs'
    order, then files by name; in each group, failures first, then in the order they ran."""
    groups: dict[str, list[Record]] = {}
    for pair in sorted(records, key=lambda pair: pair[0]["timeline"]["started"]):
        groups.setdefault(group_of(pair[0]), []).append(pair)
    for members in groups.values():
        members.sort(key=lambda pair: pair[0]["outcome"] not in FAILED)  # stable: run order within each half
    return sorted(groups.items(), key=lambda g: (not any(r["outcome"] in FAILED for r, _ in g[1]), _group_order(g[0])))


def fate_counts(fates: dict[str, int]) -> str:
    """The fates that occurred, as coloured counts (in the verdict's order of fates)."""
    return (
        " ".join(f"<span class=count title='{n} {f}'>{_dot(f)}{n} {f}</span>" for f in FATES if (n := fates.get(f)))
        or "<span class=quiet>no task</span>"
    )


def _parameters(record: dict) -> str:
    """A parametrized scenario's parameters (``[acks-late]``), which its title leaves out."""
    name = record["name"]
    return f" <span class=params>[{html.escape(name.split('[', 1)[1])}</span>" if "[" in name else ""


def index_table(grouped: list[tuple[str, list[Record]]]) -> str:
    """The page's index: a table per group, a row per scenario (outcome, name, fates, time, why it failed), with a
    filter box (words of a name, a fate, a marker, an error) and a failures-only switch."""
    e = html.escape
    parts = [
        "<div class=filter><input id=filter type=search placeholder='filter: words of a name, a fate, a marker, "
        "an error' aria-label='filter the scenarios'> <label><input id=failures type=checkbox> failures only"
        "</label> <span id=shown></span></div>"
    ]
    for name, members in grouped:
        failed = sum(1 for r, _ in members if r["outcome"] in FAILED)
        counts = f"{len(members)} scenario{'s' * (len(members) != 1)}" + (f", {failed} failed" if failed else "")
        rows = []
        for record, _ in members:
            why = first_line_of_failure(record)
            text = " ".join(
                [record["nodeid"], scenario_title(record), record["outcome"], *record.get("markers", []),
                 *(f for f, n in record["fates"].items() if n), why]
            ).lower()  # fmt: skip
            rows.append(
                f"<tr class='{e(record['outcome'])}' data-text='{e(text)}'>"
                f"<td><span class=outcome>{e(record['outcome'])}</span></td>"
                f"<td><a href='#{e(slug(record['nodeid']))}'>{e(scenario_title(record))}</a>{_parameters(record)}"
                f"<br><small class=nodeid>{e(record['nodeid'])}</small>"
                + (f"<br><code class=why-line>{e(why)}</code>" if why else "")
                + f"</td><td>{fate_counts(record['fates'])}</td><td class=num>{whole_time(record):.1f} s</td></tr>"
            )
        parts.append(
            f"<div class=group><h2>{e(name)} <small>({counts})</small></h2><table class=index>"
            "<colgroup><col class=outcome-col><col><col class=fates-col><col class=time-col></colgroup>"
            f"<tr><th>outcome</th><th>scenario</th><th>fates</th><th>time</th></tr>{''.join(rows)}</table></div>"
        )
    return "".join(parts)


def write_page(folder: Path, started: str, extra: str = "") -> bool:
    """Write ``folder/index.html`` from the records in ``folder/data`` (each with the section its process drew):
    the index (``index_table``), then the sections in its order; False, writing nothing, if there are none. The
    plugin writes a run's page with it, and ``python -m harness.report merge`` the page of the shards' records
    gathered in one folder."""
    records = [(json.loads(path.read_text()), path) for path in (folder / "data").glob("*.json")]
    if not records:
        return False
    grouped = ordered(records)
    count = {outcome: sum(1 for r, _ in records if r["outcome"] == outcome) for outcome in ("passed", *FAILED)}
    # "1 failed, 2 errors": a setup failure is an error, as pytest says
    failures = [f"{count[o]} {o}{'s' * (o == 'error' and count[o] > 1)}" for o in FAILED if count[o]]
    brokers = sorted(
        {r.get("broker") or f"RabbitMQ {r['rabbitmq']}" for r, _ in records if r.get("broker") or r.get("rabbitmq")}
    )
    page = PAGE.format(
        summary=f"{len(records)} scenarios: {count['passed']} passed"
        + (f", <b class=bad>{', '.join(failures)}</b>" if failures else "")
        + f"; run started {started}"
        + "".join(f"; {html.escape(b)}" for b in brokers)
        + ".",
        index=index_table(grouped),
        extra=extra,
        sections="".join(_drawn_section(record, path) for _, members in grouped for record, path in members),
    )
    (folder / "index.html").write_text(page)
    return True


SETUP_SECONDS = pytest.StashKey[float]()  # the setup phase's time, until the call's record is written
WRITTEN = pytest.StashKey[tuple[Path, dict]]()  # a record written at the call, until its teardown's time is in


class ReportPlugin:
    """Writes a record per scenario that ran a stack, and the page at the end of the run.

    Records are written by whichever process runs the scenario: the only one, or each pytest-xdist worker,
    into ``data/<run id>/`` (the controller hands its run id to the workers). At the end of the run, the
    process that owns the terminal (the only one, or the controller) moves the run's records to ``data/``,
    replacing the previous run's, and writes the page from them all. A run without scenarios (the
    harness's own tests) leaves the last report alone.
    """

    def __init__(self, folder: Path, run_id: str, writes_page: bool = True) -> None:
        self.folder = folder
        self.run_id = run_id
        self.writes_page = writes_page
        self.extra_sections: list[str] = []  # HTML other plugins add before the scenarios (the audit's table)
        self.started = time.strftime("%Y-%m-%d %H:%M:%S")
        self.written = False

    @property
    def staging(self) -> Path:
        return self.folder / "data" / self.run_id

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node) -> None:
        """pytest-xdist: each worker writes this run's records where the controller will look."""
        node.workerinput["harness_report_run_id"] = self.run_id

    def _write(self, item: pytest.Item, record: dict) -> Path:
        """The scenario's record, in this run's staging folder; returns its path."""
        self.staging.mkdir(parents=True, exist_ok=True)
        path = self.staging / f"{slug(item.nodeid)}.json"
        path.write_text(json.dumps(record, indent=1))
        return path

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        report = yield
        stack = getattr(item, "funcargs", {}).get("stack")
        is_scenario = item.get_closest_marker("scenario") is not None  # the harness's own tests stay out
        if report.when == "setup":
            item.stash[SETUP_SECONDS] = report.duration
            if report.failed and is_scenario:  # its stack never ran: listed all the same, with why (the page draws
                self._write(item, setup_failure_record(item, report, call))  # its short section)
        elif report.when == "call" and is_scenario and isinstance(stack, AppStack):
            try:
                record = scenario_record(item, report, stack, call, setup=item.stash.get(SETUP_SECONDS, None))
            except Exception as exc:  # a broken stack must not hide the scenario's own outcome
                report.sections.append(("harness report", f"no report data: {exc!r}"))
            else:
                record["cpu"] = {"pytest_s": time.process_time() - item.stash.get(CPU_AT_SETUP, 0.0)}
                programs = stack.cpu_seconds()
                if programs is not None:
                    record["cpu"]["programs_s"] = programs
                path = self._write(item, record)
                item.stash[WRITTEN] = (path, record)
                # The section (its plot is ~0.2 s of matplotlib) is drawn here, by the process that ran the
                # scenario: with -n N the workers draw in parallel instead of the controller drawing every
                # plot after the last scenario (measured: 30 s at the end of a 65-scenario run).
                drawing = time.thread_time()  # this thread's: the scenario's own threads may still be running
                try:
                    path.with_suffix(".html").write_text(section(record, f"data/{path.name}"))
                except Exception as exc:  # the controller draws it again, and says what fails
                    report.sections.append(("harness report", f"section not drawn: {exc!r}"))
                record["cpu"]["drawing_s"] = time.thread_time() - drawing
        elif report.when == "teardown" and WRITTEN in item.stash:
            # Written again with the teardown's time (stopping the stack) and the drawing's: a record written at
            # the call survives a process that dies in the teardown, with setup and call.
            path, record = item.stash[WRITTEN]
            del item.stash[WRITTEN]
            record["durations"]["teardown"] = report.duration
            path.write_text(json.dumps(record, indent=1))
        return report

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        item.stash[CPU_AT_SETUP] = time.process_time()

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not self.writes_page or not self.staging.is_dir():
            return
        data = self.folder / "data"
        for old in [*data.glob("*.json"), *data.glob("*.html")]:
            old.unlink()
        for new in [*self.staging.glob("*.json"), *self.staging.glob("*.html")]:
            new.replace(data / new.name)
        shutil.rmtree(self.staging, ignore_errors=True)
        self.written = write_page(self.folder, self.started, "".join(self.extra_sections))

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.written:
            terminalreporter.write_line(f"harness report: {(self.folder / 'index.html').resolve().as_uri()}")
