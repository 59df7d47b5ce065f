"""``python -m harness.lessons``: the docs site's lesson pages, from the scenarios and their recorded runs.

A lesson is one scenario function: its page tells the story (its docstring), shows its code, and for each of its
runs recorded in ``docs/runs/`` (one per parametrization) draws the run's timeline and queue depths as the run
report does (``harness.plots``), with the fates, the broker and Celery it ran on, and what the version matrix
(``docs/matrix/``) recorded on each RabbitMQ version. The site is built from these files, so a docs build needs
no broker: ``mkdocs build`` runs ``docs/gen_lessons.py`` (mkdocs-gen-files), which calls ``write_pages``.

A recorded run keeps the fingerprint of its scenario's code: when the code has changed since, the run is stale;
its page says so and the build names it (``stale``), with the command that records it again::

    pytest scenarios/ --harness-broker local --harness-report=harness-report      # any run, or a selection
    python -m harness.lessons record harness-report [more reports...]             # keep its runs as the docs'
    python -m harness.lessons --check                                             # each lesson's run: missing? stale?
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import html
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness.docs import LESSONS, Scenario, ScenarioModule, page_of, read_all

ROOT = Path(__file__).resolve().parent.parent
RUNS = Path("docs/runs")  # the recorded runs, from the repository's root
# The pictures of recorded runs that the README and the landing page show (committed, so that the README on a
# forge shows one), each redrawn when its run is recorded.
PICTURES = {
    Path("docs/assets/worker-outage.svg"): (
        "scenarios/test_worker_outage.py::test_worker_outage_tasks_wait_in_the_queue_and_all_run_once_after_restart"
    ),
}
# What a lesson page needs of a run report's record (the rest, e.g. the failure text, is the report's).
KEPT = ("nodeid", "name", "story", "outcome", "duration", "durations", "timeline", "tasks", "fates", "sends", "fate_of",
        "witness_gaps", "broker", "rabbitmq", "celery", "markers", "ended")  # fmt: skip


def _code(text: str) -> str:
    """reST inline literals (``x``) as Markdown's (`x`)."""
    return re.sub(r"``(.+?)``", r"`\1`", text)


def source_of(path: Path, name: str) -> str:
    """The scenario function's source, its decorators included and its docstring left out (the page tells the
    story above it, and a run does not go stale when only the story's words change)."""
    lines = path.read_text().splitlines()
    for node in ast.parse("\n".join(lines)).body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            start = min([d.lineno for d in node.decorator_list] + [node.lineno])
            first = node.body[0]
            docstring = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and len(node.body) > 1
            cut = range(first.lineno, first.end_lineno + 1) if docstring else range(0)
            return "\n".join(line for n, line in enumerate(lines[start - 1 : node.end_lineno], start) if n not in cut)
    raise KeyError(f"{path} has no function {name}")


def fingerprint(source: str) -> str:
    """What a recorded run remembers of its scenario's code, to tell when it is stale."""
    return hashlib.sha256(source.encode()).hexdigest()[:16]


@dataclass
class Lesson:
    module: ScenarioModule
    scenario: Scenario  # its name, story, title and first paragraph (harness.docs)
    source: str
    runs: list[dict] = field(default_factory=list)  # its recorded runs, one per parametrization

    @property
    def name(self) -> str:
        return self.scenario.name

    @property
    def key(self) -> str:
        """The scenario function's node id (a recorded run's, without its parameters)."""
        return f"{self.module.relative}::{self.name}"

    @property
    def page(self) -> str:
        """The page's path in the site."""
        return page_of(self.key)

    @property
    def stale(self) -> list[str]:
        """The node ids of its runs recorded from other code than the scenario's today."""
        return [run["nodeid"] for run in self.runs if run.get("fingerprint") != fingerprint(self.source)]


def lessons(root: Path = ROOT) -> list[Lesson]:
    """Every scenario of ``scenarios/``, with its recorded runs, in the docs' order."""
    runs: dict[str, list[dict]] = {}
    for path in sorted((root / RUNS).glob("*.json")):
        run = json.loads(path.read_text())
        runs.setdefault(run["nodeid"].split("[")[0], []).append(run)
    found = []
    for module in read_all(root / "scenarios"):
        for scenario in module.scenarios:
            key = f"{module.relative}::{scenario.name}"
            source = source_of(module.path, scenario.name)
            found.append(Lesson(module, scenario, source, runs.get(key, [])))
    return found


def record(reports: list[Path], root: Path = ROOT) -> list[str]:
    """Keep the runs of these run reports (their ``data/*.json``) as the lessons' recorded runs, replacing the
    runs of the same node ids; returns the node ids kept. Only passed runs are kept: a lesson shows what the
    scenario asserts, not a failure."""
    from harness.plots import plot
    from harness.report import slug

    by_function = {lesson.key: lesson for lesson in lessons(root)}
    kept = []
    (root / RUNS).mkdir(parents=True, exist_ok=True)
    for report in reports:
        paths = sorted((report / "data").glob("*.json"))
        if not paths:
            raise SystemExit(f"lessons: {report} has no data/*.json: give a run report folder (--harness-report)")
        for path in paths:
            run = json.loads(path.read_text())
            lesson = by_function.get(run["nodeid"].split("[")[0])
            if lesson is None or run.get("outcome") != "passed":
                continue
            kept_run = {key: run[key] for key in KEPT if key in run}
            kept_run["fingerprint"] = fingerprint(lesson.source)
            (root / RUNS / f"{slug(run['nodeid'])}.json").write_text(json.dumps(kept_run, separators=(",", ":")))
            kept.append(run["nodeid"])
            for picture, nodeid in PICTURES.items():
                if nodeid == run["nodeid"]:
                    (root / picture).parent.mkdir(parents=True, exist_ok=True)
                    (root / picture).write_text(plot(kept_run, "picture"))
    return kept


def matrix_cells(root: Path = ROOT) -> dict[str, list[tuple[str, str]]]:
    """Each node id's fates on each recorded RabbitMQ version (``docs/matrix/``), as (version, cell)."""
    from harness.matrix import cell, load

    cells: dict[str, list[tuple[str, str]]] = {}
    for run in load(root):
        for nodeid, entry in run["scenarios"].items():
            cells.setdefault(nodeid, []).append((f"RabbitMQ {run['rabbitmq']}", cell(entry)))
    return cells


def _fates_line(fates: dict[str, int]) -> str:
    return ", ".join(f"{n} {fate}" for fate, n in fates.items() if n) or "no task"


def run_section(lesson: Lesson, run: dict, cells: dict[str, list[tuple[str, str]]]) -> str:
    """One recorded run: the plot, the fates, where it ran, and what each RabbitMQ version recorded."""
    from harness.plots import plot
    from harness.report import fate_tables, marks_list, plot_caption, slug, task_table

    anchor = slug(run["nodeid"])
    params = run["name"].split("[", 1)[1].rstrip("]") if "[" in run["name"] else ""
    ran_on = ", ".join(filter(None, [run.get("broker") or run.get("rabbitmq"), run.get("celery") and
                                     f"Celery {run['celery']}"])) or "a broker it did not name"  # fmt: skip
    lines = [f"### The recorded run{f' ({params})' if params else ''}", ""]
    if run["nodeid"] in lesson.stale:
        lines += [
            '!!! warning "Recorded from an earlier version of this scenario"',
            "    The scenario's code has changed since this run was recorded: re-record it "
            "(`python -m harness.lessons record REPORT`).",
            "",
        ]
    lines += [
        f"Ran on {ran_on}: **{_fates_line(run['fates'])}** (test body {run['duration']:.1f} s).",
        "",
        f'<p class="caption">{plot_caption(run)}</p>',
        "",
        f'<figure class="plot">{plot(run, anchor)}</figure>',
        "",
        marks_list(run),
        "",
        f'<div class="fates">{fate_tables(run["fates"])}</div>',
        "",
        f'<div class="tasks">{task_table(run, anchor)}</div>',
        "",
    ]
    versions = cells.get(run["nodeid"])
    if versions:
        lines += ["| broker | fates |", "|---|---|", *(f"| {v} | {html.escape(c)} |" for v, c in versions), ""]
    return "\n".join(lines)


def lesson_page(lesson: Lesson, cells: dict[str, list[tuple[str, str]]]) -> str:
    markers = ", ".join(f"`{m}`" for m in lesson.module.markers) or "none"
    lines = [
        f"# {lesson.scenario.title}",
        "",
        f"*{lesson.module.suite}* · `{lesson.key}` · markers: {markers}",
        "",
        _code(lesson.scenario.story),
        "",
        "## The scenario",
        "",
        "```python",
        lesson.source,
        "```",
        "",
        "## What a real run recorded",
        "",
    ]
    if not lesson.runs:
        lines += ["No run of this scenario is recorded yet: `python -m harness.lessons record REPORT` keeps one.", ""]
    for run in sorted(lesson.runs, key=lambda r: r["nodeid"]):
        lines.append(run_section(lesson, run, cells))
    return "\n".join(lines)


def index_page(found: list[Lesson]) -> str:
    """The lessons by suite and file, each with its first paragraph."""
    lines = ["# Lessons", "", "Every scenario, with the story it tells and a recorded run of it.", ""]
    suite = module = None
    for lesson in found:
        if lesson.module.suite != suite:
            suite = lesson.module.suite
            lines += [f"## {suite}", ""]
        if lesson.module.relative != module:
            module = lesson.module.relative
            lines += [f"### `{module}`", "", _code(lesson.module.summary), ""]
        link = lesson.page.removeprefix(LESSONS + "/")
        lines += [f"- [{lesson.scenario.title}]({link}): {_code(lesson.scenario.lesson)}"]
    return "\n".join(lines) + "\n"


def summary(found: list[Lesson]) -> str:
    """The lessons' part of the site's navigation (mkdocs-literate-nav's ``SUMMARY.md``): by suite, then file."""
    lines = ["- [All lessons](index.md)"]
    suite = module = None
    for lesson in found:
        if lesson.module.suite != suite:
            suite, module = lesson.module.suite, None
            lines.append(f"- {suite}")
        if lesson.module.relative != module:
            module = lesson.module.relative
            lines.append(f"    - {lesson.module.path.stem.removeprefix('test_').replace('_', ' ').capitalize()}")
        lines.append(f"        - [{lesson.scenario.title}]({lesson.page.removeprefix(LESSONS + '/')})")
    return "\n".join(lines) + "\n"


def write_pages(write: Callable[[str, str], None], root: Path = ROOT) -> list[Lesson]:
    """Write every lesson's page, the lessons' index and their navigation through ``write(path in the site, text)``."""
    found = lessons(root)
    cells = matrix_cells(root)
    write(f"{LESSONS}/index.md", index_page(found))
    write(f"{LESSONS}/SUMMARY.md", summary(found))
    for lesson in found:
        write(lesson.page, lesson_page(lesson, cells))
    return found


def check(root: Path = ROOT) -> list[str]:
    """What the lessons lack: a scenario without a recorded run, a run recorded from other code."""
    found = lessons(root)
    functions = {lesson.key for lesson in found}
    problems = [f"{picture}: missing (record {nodeid})" for picture, nodeid in PICTURES.items()
                if nodeid.split("[")[0] in functions and not (root / picture).is_file()]  # fmt: skip
    for lesson in found:
        if not lesson.runs:
            problems.append(f"{lesson.key}: no recorded run")
        problems += [f"{nodeid}: recorded from an earlier version of the scenario" for nodeid in lesson.stale]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.lessons", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    keep = sub.add_parser(
        "record", help="keep the passed runs of run reports as the lessons' recorded runs (and redraw the pictures "
        f"the README and the landing page show: {', '.join(str(p) for p in PICTURES)})",
    )  # fmt: skip
    keep.add_argument("reports", nargs="+", type=Path, help="run report folders (--harness-report)")
    parser.add_argument("--check", action="store_true", help="list lessons without a recorded run or with a stale one")
    args = parser.parse_args(argv)
    if args.command == "record":
        kept = record(args.reports)
        print(f"lessons: kept {len(kept)} recorded run{'s' * (len(kept) != 1)} in {RUNS}/")
        return 0
    problems = check()
    for problem in problems:
        print(f"lessons: {problem}", file=sys.stderr)
    if args.check:
        if not problems:
            print(f"lessons: each of the {len(lessons())} lessons has a recorded run of its scenario's current code")
        return 1 if problems else 0
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
