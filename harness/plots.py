"""The run report's plot of one scenario: tasks per worker above, queue depth below, on one time axis.

Drawn with matplotlib as SVG, inlined in the page, so that it scales to the page's width with text the
browser renders, and so that each task's marks carry its id (a tooltip on hover) and a link to its row
in the scenario's task table (its history, and which witness saw each step).

What the plot must never get wrong:

- a run that ended is drawn as ended (a solid line to o if it succeeded, x if it failed), even when its
  end was reported after the task was redelivered (an acknowledgement lost with the broker): ends are
  matched to starts per worker (``runs``); only a run with no end of its own is dotted, up to the task's
  next start (the run was cut off) or the end of the scenario;
- while the broker is down there are no samples: the span is shaded and labelled, not a silent gap;
- fault and operator marks are numbered (the list under the plot names them) and close numbers are put on
  rows of their own (``mark_rows``), so they never print over each other;
- twenty sends in half a second stay twenty: each task is a tick at its own height, and a burst is counted.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from html import escape

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
KIND_COLOURS = {"broker": "#b71c1c", "program": "#0d47a1", "network": "#e65100"}
DOWN_COLOUR = "#eceff1"
RUN_ENDS = ("task-succeeded", "task-failed", "task-rejected", "task-revoked", "task-retried", "task-cancelled")
FONT_SIZE = 11
WIDTH_IN = 13.0
MARK_GAP = 0.025  # of the time axis: marks closer than this put their numbers on different rows
BURST_GAP_S = 0.5  # sends closer than this are counted as one burst


@dataclass(frozen=True)
class Run:
    """One run of a task on a worker: from its start to the end that worker reported (None: never ended)."""

    host: str
    start: float
    end: float | None
    how: str | None  # the end step's type
    late_s: float | None = None  # the end was reported this late by Celery's events (seen at once by the journal)


def runs(events: list[dict]) -> list[Run]:
    """Each ``task-started`` and the end its worker reported for it: an end belongs to the latest start before it
    on the same worker that has no end yet, whatever was received or started elsewhere in between."""
    open_: dict[str, list[dict]] = {}
    ended: dict[int, dict] = {}
    for event in sorted(events, key=lambda e: e["at"]):
        if event["type"] == "task-started":
            open_.setdefault(event["hostname"], []).append(event)
        elif event["type"] in RUN_ENDS and open_.get(event["hostname"]):
            ended[id(open_[event["hostname"]].pop())] = event
    found = []
    for event in sorted(events, key=lambda e: e["at"]):
        if event["type"] != "task-started":
            continue
        end = ended.get(id(event))
        found.append(
            Run(
                event["hostname"], event["at"], end["at"] if end else None, end["type"] if end else None,
                end.get("late") if end else None,
            )
        )  # fmt: skip
    return found


def mark_rows(positions: list[float], span: float, gap: float = MARK_GAP) -> list[int]:
    """A row for each mark's number (positions in time order): the lowest row whose numbers are all at least
    ``gap`` of the axis away, so no two numbers overlap."""
    rows: list[list[float]] = []
    chosen = []
    for x in positions:
        row = next((r for r, taken in enumerate(rows) if all(abs(x - t) >= gap * span for t in taken)), len(rows))
        if row == len(rows):
            rows.append([])
        rows[row].append(x)
        chosen.append(row)
    return chosen


def bursts(times: list[float], gap: float = BURST_GAP_S) -> list[tuple[float, float, int]]:
    """Sends grouped in bursts (each send within ``gap`` of the previous one): (first, last, count)."""
    groups: list[list[float]] = []
    for t in sorted(times):
        if groups and t - groups[-1][-1] <= gap:
            groups[-1].append(t)
        else:
            groups.append([t])
    return [(g[0], g[-1], len(g)) for g in groups]


def numbered(tasks: dict[str, dict]) -> list[tuple[int, str, dict]]:
    """Tasks in the order of their first step, numbered from 1 (the plot's tooltips and the task table)."""
    first = sorted(tasks.items(), key=lambda item: min((e["at"] for e in item[1]["events"]), default=0.0))
    return [(n, task_id, task) for n, (task_id, task) in enumerate(first, start=1)]


def plot(record: dict, anchor: str) -> str:
    """The scenario's plot as inline SVG; ``anchor`` prefixes the ids of its task rows (``{anchor}-task-{n}``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    origin = record["timeline"]["started"]
    tasks = numbered(record["tasks"])
    workers = sorted({e["hostname"] for _, _, t in tasks for e in t["events"] if e["type"] == "task-started"})
    lanes = ["sent", *workers]
    last = max(
        [record.get("ended", origin) - origin]
        + [e["at"] - origin for _, _, t in tasks for e in t["events"]]
        + [s["at"] - origin for s in record["timeline"]["samples"]]
    )
    titles: dict[str, str] = {}
    style = {"font.size": FONT_SIZE, "svg.fonttype": "none", "svg.hashsalt": anchor, "legend.fontsize": FONT_SIZE}
    with plt.rc_context(style):
        figure, (top, bottom) = plt.subplots(
            2, 1, sharex=True, figsize=(WIDTH_IN, 2.6 + 0.55 * len(lanes) + 2.4),
            height_ratios=[0.8 + 0.55 * len(lanes), 2.4],
        )  # fmt: skip
        _down_spans((top, bottom), record, origin, last)
        _tasks(top, record, tasks, lanes, origin, last, anchor, titles)
        _depth(bottom, record, origin)
        _marks((top, bottom), record, origin, last)
        bottom.set_xlim(0, last * 1.02 + 0.1)
        # Fixed spacing, not tight_layout: savefig's bbox_inches="tight" below already takes in the lane labels,
        # the mark numbers and the legends outside the axes, and tight_layout drew the whole figure once more
        # to measure them (a third of the plot's CPU, measured with cProfile).
        figure.subplots_adjust(hspace=0.12)
        handles = [Patch(facecolor=DOWN_COLOUR, edgecolor="#90a4ae", label="broker down: no samples")]
        if record["timeline"].get("broker_down"):
            bottom.legend(
                handles=[*bottom.get_legend_handles_labels()[0], *handles],
                loc="upper left", bbox_to_anchor=(1.01, 1.0),
            )  # fmt: skip
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", bbox_inches="tight")
        plt.close(figure)
    return _inline(buffer.getvalue(), titles)


def _down_spans(axes, record: dict, origin: float, last: float) -> None:
    for span in record["timeline"].get("broker_down", []):
        start = span["start"] - origin
        end = (span["end"] if span["end"] is not None else origin + last) - origin
        for axis in axes:
            axis.axvspan(start, end, facecolor=DOWN_COLOUR, edgecolor="#90a4ae", hatch="//", linewidth=0, zorder=0)
        narrow = (end - start) < 0.18 * max(last, 1e-9)
        axes[1].text(
            (start + end) / 2, 0.5, f"{span['what']}:\nno samples", transform=axes[1].get_xaxis_transform(),
            ha="center", va="center", rotation=90 if narrow else 0, color="#455a64",
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 2},
        )  # fmt: skip


def _tasks(axis, record, tasks, lanes, origin, last, anchor, titles) -> None:
    count = max(1, len(tasks) - 1)
    sends = record["sends"]
    for n, task_id, task in tasks:
        offset = 0.05 + 0.7 * (n - 1) / count if len(tasks) > 1 else 0.4  # each task its own height in a lane
        colour = FATE_COLOURS.get(task["fate"] or "", "#9e9e9e")
        gid = f"{anchor}-task-{n}"
        title = f"task #{n} {task_id}: {task['fate'] or 'not judged'}"
        artists = []
        sent = sends.get(task_id)
        first_sent = next((e["at"] for e in task["events"] if e["type"] == "task-sent"), None)
        at = sent["at"] if sent else first_sent
        if at is not None:
            refused = sent is not None and not sent["ok"]
            artists += axis.plot(
                [at - origin], [offset], marker="v" if refused else "|", color=colour,
                markersize=8 if refused else 9, markeredgewidth=1.5, linestyle="none",
            )  # fmt: skip
        task_runs = runs(task["events"])
        starts = [r.start for r in task_runs]
        for run in task_runs:
            y = lanes.index(run.host) + offset
            later = [s for s in starts if s > run.start]
            stop = run.end if run.end is not None else (later[0] if later else origin + last)
            ended = run.end is not None
            artists += axis.plot(
                [run.start - origin, stop - origin], [y, y], color=colour, linewidth=2.2,
                linestyle="-" if ended else ":",
            )  # fmt: skip
            if ended:
                marker = "o" if run.how == "task-succeeded" else ("s" if run.how == "task-retried" else "x")
                artists += axis.plot(
                    [stop - origin], [y], marker=marker, color=colour, markersize=7,
                    markerfacecolor="white" if run.late_s else colour, markeredgewidth=1.8, linestyle="none",
                )  # fmt: skip
        for k, artist in enumerate(artists):
            artist.set_gid(f"{gid}-{k}")
            artist.set_url(f"#{gid}")
            titles[f"{gid}-{k}"] = title
    for _first, final, size in bursts([s["at"] - origin for s in sends.values()]):
        if size > 1:
            axis.annotate(
                f"{size} sends", (final, 0.4), xytext=(6, 0), textcoords="offset points", ha="left", va="center",
                color="#424242", fontsize=FONT_SIZE - 1,
            )  # fmt: skip
    axis.set_yticks([i + 0.4 for i in range(len(lanes))], lanes)
    axis.set_ylim(-0.2, len(lanes) + 0.05)
    axis.invert_yaxis()
    used = [f for f in FATE_COLOURS if record["fates"].get(f)]
    for fate in used:
        axis.plot([], [], color=FATE_COLOURS[fate], linewidth=3, label=f"{fate} ({record['fates'][fate]})")
    axis.plot([], [], color="#616161", marker="o", linestyle="-", label="run that succeeded")
    axis.plot([], [], color="#616161", marker="x", linestyle="-", label="run that failed")
    axis.plot([], [], color="#616161", linestyle=":", label="run that never ended")
    if any(r.late_s for _, _, t in tasks for r in runs(t["events"])):
        axis.plot(
            [], [], color="#616161", marker="o", markerfacecolor="white", linestyle="-",
            label="ended; Celery's event came late",
        )  # fmt: skip
    axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))


# The depth sampler reads every 0.1 s: a longer silence (a reading that hung while the broker stopped) is a gap,
# not the last value held across it.
SAMPLE_GAP_S = 0.5


def with_gaps(points: list[dict], gap: float = SAMPLE_GAP_S) -> list[dict]:
    """One queue's samples, with an unknown reading just after each sample followed by more than ``gap`` seconds of
    silence: a step plot then stops there instead of holding the value until the next reading."""
    out: list[dict] = []
    for point in points:
        if out and point["at"] - out[-1]["at"] > gap:
            out.append({**out[-1], "at": out[-1]["at"] + 0.1, "ready": None, "unacked": None})
        out.append(point)
    return out


def _depth(axis, record: dict, origin: float) -> None:
    from matplotlib.ticker import MaxNLocator

    samples = record["timeline"]["samples"]
    for queue in sorted({s["queue"] for s in samples}):
        points = with_gaps([s for s in samples if s["queue"] == queue])
        xs = [s["at"] - origin for s in points]
        # A failed reading (the broker down) is a gap, not the last value held.
        ready = [float("nan") if s["ready"] is None else s["ready"] for s in points]
        (line,) = axis.step(xs, ready, where="post", label=f"{queue} ready", linewidth=1.8)
        if any(s["unacked"] is not None for s in points):
            # Unknown counts (no management API while a consumer is connected) are gaps, not zeros.
            unacked = [float("nan") if s["unacked"] is None else s["unacked"] for s in points]
            axis.step(
                xs, unacked, where="post", linestyle="--", color=line.get_color(), label=f"{queue} unacked",
                linewidth=1.5,
            )  # fmt: skip
    highest = max([s["ready"] or 0 for s in samples] + [s["unacked"] or 0 for s in samples] + [1])
    axis.set_ylim(0, highest * 1.2)
    axis.yaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_ylabel("messages")
    axis.set_xlabel("seconds since the scenario started")
    if samples:
        axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))


def _marks(axes, record: dict, origin: float, last: float) -> None:
    """Each operator or fault action: a line through both plots, its number above the top one."""
    marks = sorted(record["timeline"]["marks"], key=lambda m: m["at"])
    positions = [m["at"] - origin for m in marks]
    rows = mark_rows(positions, max(last, 1e-9))
    top = axes[0]
    for number, (mark, x, row) in enumerate(zip(marks, positions, rows, strict=True), start=1):
        colour = KIND_COLOURS.get(mark.get("kind", "program"), "#424242")
        for axis in axes:
            axis.axvline(x, color=colour, linestyle="--", linewidth=1.2)
        top.text(
            x, 1.02 + 0.09 * row, str(number), transform=top.get_xaxis_transform(), ha="center", va="bottom",
            color="white", fontsize=FONT_SIZE - 1, fontweight="bold",
            bbox={"boxstyle": "round,pad=0.2", "facecolor": colour, "edgecolor": "none"},
        )  # fmt: skip


def _inline(svg: str, titles: dict[str, str]) -> str:
    """matplotlib's SVG, ready to sit in a page: no XML prolog, as wide as its container, a tooltip per task."""
    svg = svg[svg.index("<svg") :]
    svg = re.sub(r'(<svg[^>]*?) width="[^"]+" height="[^"]+"', r'\1 width="100%"', svg, count=1)
    svg = svg.replace(' target="_blank"', "")  # a task's link goes to its row on this page
    for gid, title in titles.items():
        svg = svg.replace(f'<g id="{gid}">', f'<g id="{gid}"><title>{escape(title)}</title>', 1)
    return svg
