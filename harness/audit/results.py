"""The audit's answer: one row per failure, shown as a table at the end of the run, written as JSON for CI
to diff between two configurations, and added to the run report as a section.

``AuditRecorder`` is a pytest plugin (registered by ``harness.plugin``; idle unless audit scenarios ran):
scenarios add rows through the ``audit`` fixture; a failure whose scenario was skipped (a broker fault on
a ``url`` broker) or broke before recording gets a row saying so. The rendering is pure functions.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import pytest

from harness.audit.failures import BY_KEY, FAILURES, Lever, reference
from harness.periodic import PERIODIC_FATES
from harness.verdict import FATES

MARKER = "audit"  # @pytest.mark.audit("failure_key", ...): the failures a scenario fills in
FOLDER = "audit"  # the audit's report, in the report folder: the scenarios' run report stays as it was
PACKAGE = Path(__file__).resolve().parent


def is_audit_run(config: pytest.Config) -> bool:
    """Whether this run is the audit (``--pyargs harness.audit...``, or paths in its package), whose report
    must not overwrite the scenarios' run report in the same folder."""
    for arg in config.args:
        name = str(arg).split("::")[0]
        if config.option.pyargs and (name == "harness.audit" or name.startswith("harness.audit.")):
            return True
        path = Path(name).resolve()
        if path == PACKAGE or PACKAGE in path.parents:
            return True
    return False


@dataclass
class Row:
    failure: str
    title: str
    outcome: str = "recorded"  # recorded, skipped, error, not applicable (on this broker family; notes say why)
    tasks: int = 0
    fates: dict[str, int] = field(default_factory=dict)
    decided_by: dict[str, Any] = field(default_factory=dict)
    lever: dict[str, Any] | None = None
    same_as: str | None = None  # the catalogue scenario with the same arrangement and settings
    notes: list[str] = field(default_factory=list)
    exceeded: list[str] = field(default_factory=list)  # the accepted limits its fates go past
    nodeid: str = ""
    run: str = ""  # which run of the audit recorded it (its selection: -k, -m, node ids), in the merged JSON
    differs: str | None = None  # what changes against RabbitMQ on another broker family ("on RabbitMQ: ...")

    @classmethod
    def of(cls, failure: str, **fields: Any) -> Row:
        return cls(failure, BY_KEY[failure].title, **fields)


def lever_dict(lever: Lever | None, facts: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """The lever as the row shows it: only the settings not already as it asks (under ``facts``), and its
    catalogue scenario as a user without the harness's repository finds it."""
    if lever is None:
        return None
    shown_by = reference(lever.shown_by) if lever.shown_by else None
    transport = (facts or {}).get("transport") or "rabbitmq"
    if shown_by and transport != "rabbitmq" and f"/{transport}/" not in lever.shown_by:
        shown_by += f"; shown on RabbitMQ, not measured on {transport}"
    return {"change": lever.change_for(facts or {}), "effect": lever.effect, "shown_by": shown_by}


def fates_text(fates: Mapping[str, int]) -> str:
    """``succeeded 3, lost 1``; a beat row's periodic fates in their own order (``ran 3, duplicated 3``)."""
    periodic = any(fate in fates for fate in PERIODIC_FATES if fate not in FATES)
    order = dict.fromkeys([*PERIODIC_FATES, *FATES] if periodic else [*FATES, *PERIODIC_FATES])
    return ", ".join(f"{fate} {fates[fate]}" for fate in order if fates.get(fate)) or "-"


def value_text(value: Any, limit: int = 48) -> str:
    text = json.dumps(value, sort_keys=True, default=str) if isinstance(value, dict | list) else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def decided_text(decided_by: Mapping[str, Any]) -> str:
    return ", ".join(f"{key}={value_text(value)}" for key, value in decided_by.items())


def ordered(rows: list[Row]) -> list[Row]:
    order = {failure.key: n for n, failure in enumerate(FAILURES)}
    return sorted(rows, key=lambda row: order.get(row.failure, len(order)))


def broker_text(meta: Mapping[str, Any]) -> str:
    """Which broker the audit ran on: ``Redis 7.0.15 (transport redis, local broker; persistence off)``."""
    broker = dict(meta.get("broker") or {})
    transport = meta.get("transport") or broker.get("transport") or "rabbitmq"
    product = broker.get("product") or {"rabbitmq": "RabbitMQ", "redis": "Redis"}.get(transport, transport)
    version = broker.get("version") or broker.get("rabbitmq_version") or "(version unknown)"
    extra = f"; persistence {meta['redis_persistence']}" if meta.get("redis_persistence") else ""
    return f"{product} {version} (transport {transport}, {broker.get('kind', '?')} broker{extra})"


def table(rows: list[Row], meta: Mapping[str, Any]) -> list[str]:
    """The terminal table: a line per failure, then what would change it, the catalogue scenario that shows
    that, and what the audit noticed."""
    rows = ordered(rows)
    width = max([len("failure")] + [len(row.title) for row in rows])
    fates_width = max([len("fates")] + [len(fates_text(row.fates)) for row in rows])
    lines = [
        f"harness audit of {meta.get('celery_app', '?')}: {meta.get('describe', '')}",
        f"worker {meta.get('worker', '?')}; settings over the app's: {value_text(meta.get('audit_config') or {}, 200)}",
        f"broker {broker_text(meta)}",
        "",
        f"{'failure':<{width}}  {'tasks':>5}  {'fates':<{fates_width}}  decided by",
    ]
    for row in rows:
        if row.outcome != "recorded":
            lines.append(f"{row.title:<{width}}  {'':>5}  {row.outcome}: {row.notes[0] if row.notes else ''}")
            continue
        flag = "  <-- more than accepted: " + "; ".join(row.exceeded) if row.exceeded else ""
        lines.append(
            f"{row.title:<{width}}  {row.tasks:>5}  {fates_text(row.fates):<{fates_width}}  "
            f"{decided_text(row.decided_by)}{flag}"
        )
        if row.lever:
            lines.append(f"    would change it: {row.lever['change']} -> {row.lever['effect']}")
            lines.append(f"    shown by: {row.lever['shown_by'] or 'no catalogue scenario yet'}")
        for note in row.notes:
            lines.append(f"    noticed: {note}")
        if row.differs:
            lines.append(f"    {row.differs}")
    return lines


def as_json(rows: list[Row], meta: Mapping[str, Any]) -> str:
    """Stable JSON (sorted keys, no times), so two runs' files diff to what changed."""
    body = {**meta, "failures": [{k: v for k, v in asdict(row).items() if k != "nodeid"} for row in ordered(rows)]}
    return json.dumps(body, indent=1, sort_keys=True, default=str) + "\n"


# What makes two audits' rows comparable: the same app, task, worker, settings as the worker ran them and
# accepted limits. Rows of an audit that differs in any of these are another audit's: never merged.
SAME_AUDIT = ("celery_app", "task", "like", "args", "queue", "work_s", "worker", "audit_config", "expect", "settings",
              "task_options", "transport", "redis_persistence")  # fmt: skip


def merge(rows: list[Row], meta: Mapping[str, Any], previous: str | None) -> tuple[list[Row], list[Row]]:
    """This run's rows, and those of the previous file (its JSON text) kept beside them: the rows of failures
    this run did not run (a ``-k`` run), when that file is of the same audit (``SAME_AUDIT``). Returns every
    row, and the kept ones."""
    try:
        old = json.loads(previous) if previous else {}
    except ValueError:  # not a file this recorder wrote: it is replaced
        old = {}
    if not isinstance(old, dict) or any(old.get(key) != _plain(meta.get(key)) for key in SAME_AUDIT):
        return list(rows), []
    run_now = {row.failure for row in rows}
    known = {f.name for f in fields(Row)}
    kept = [
        Row(**{k: v for k, v in failure.items() if k in known})
        for failure in old.get("failures", [])
        if isinstance(failure, dict) and failure.get("failure") in BY_KEY and failure["failure"] not in run_now
    ]
    return [*rows, *kept], kept


def _plain(value: Any) -> Any:
    """``value`` as the JSON file holds it (tuples as lists...), to compare with what a file holds."""
    return json.loads(json.dumps(value, default=str))


def run_label(config: pytest.Config) -> str:
    """Which run this is, as the JSON's rows say it: the selection it was given (stable, unlike a time)."""
    parts = [f"-k {config.option.keyword}"] if getattr(config.option, "keyword", "") else []
    parts += [f"-m {config.option.markexpr}"] if getattr(config.option, "markexpr", "") else []
    parts += [str(arg) for arg in config.args if "::" in str(arg)]
    return " ".join(parts) or "the whole audit"


def html_section(rows: list[Row], meta: Mapping[str, Any]) -> str:
    e = html.escape
    body = []
    for row in ordered(rows):
        lever = row.lever or {}
        change = f"{e(lever['change'])}: {e(lever['effect'])}" if lever else ""
        if lever.get("shown_by"):
            change += f" <span class=nodeid>({e(lever['shown_by'])})</span>"
        notes = "".join(f"<br><em>{e(note)}</em>" for note in [*row.notes, *([row.differs] if row.differs else [])])
        fates = e(fates_text(row.fates)) if row.outcome == "recorded" else e(row.outcome)
        if row.exceeded:
            fates += f"<br><strong>more than accepted: {e('; '.join(row.exceeded))}</strong>"
        body.append(
            f"<tr><td>{e(row.title)}{notes}</td><td>{row.tasks or ''}</td><td>{fates}</td>"
            f"<td>{e(decided_text(row.decided_by))}</td><td>{change}</td></tr>"
        )
    return f"""
<section class="audit" id="audit">
  <h2>Resilience audit of {e(str(meta.get("celery_app", "?")))}</h2>
  <p>{e(str(meta.get("describe", "")))}; worker {e(str(meta.get("worker", "?")))};
  broker {e(broker_text(meta))}. Each failure's tasks and what became of them, the settings that decided it
  as the worker ran it, and what would change it.</p>
  <table class="fates"><tr><th>failure</th><th>tasks</th><th>fates</th><th>decided by</th><th>to change it</th></tr>
  {"".join(body)}</table>
</section>"""


class AuditRecorder:
    """Collects the audit's rows during the run; shows and writes them at its end."""

    def __init__(self, json_path: Path) -> None:
        self.json_path = json_path
        self.rows: list[Row] = []
        self.meta: dict[str, Any] = {}
        self.kept: list[Row] = []  # rows of earlier runs the JSON keeps (failures this run did not run)

    def add(self, row: Row) -> None:
        self.rows = [r for r in self.rows if r.failure != row.failure] + [row]

    def not_applicable(self, failure: str, why: str, nodeid: str = "") -> None:
        """A failure that does not apply on this run's broker family: a row saying why, never a fate."""
        self.add(Row.of(failure, outcome="not applicable", notes=[why], nodeid=nodeid))

    def has(self, failure: str) -> bool:
        return any(row.failure == failure for row in self.rows)

    @property
    def recorded(self) -> bool:
        """Whether any failure was run to its end (a run whose every scenario errored says why by itself)."""
        return any(row.outcome == "recorded" for row in self.rows)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        """A failure whose scenario was skipped, or broke before recording, still gets its row."""
        report = yield
        marker = item.get_closest_marker(MARKER)
        if marker is None or not (report.skipped or report.failed):
            return report
        if report.skipped:
            longrepr = report.longrepr
            why = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
            outcome = "skipped"
        elif call.excinfo is not None:  # what broke, in its own words (a wait says what it waited for)
            why, outcome = call.excinfo.exconly().strip().splitlines()[0][:300], "error"
        else:
            why, outcome = str(report.longrepr).strip().splitlines()[-1][:300], "error"
        for failure in marker.args:
            if not self.has(failure):
                self.add(Row.of(failure, outcome=outcome, notes=[why.removeprefix("Skipped: ")], nodeid=item.nodeid))
        return report

    @pytest.hookimpl(tryfirst=True)  # before the run report writes its page
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not self.recorded:
            return
        run = run_label(session.config)
        for row in self.rows:
            row.run = run
        previous = self.json_path.read_text() if self.json_path.is_file() else None
        every, self.kept = merge(self.rows, self.meta, previous)
        self.json_path.parent.mkdir(parents=True, exist_ok=True)
        self.json_path.write_text(as_json(every, self.meta))
        report = session.config.pluginmanager.get_plugin("harness-report")
        if report is not None and hasattr(report, "extra_sections"):
            report.extra_sections.append(html_section(self.rows, self.meta))

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.recorded:
            return
        terminalreporter.section("harness audit")
        for line in table(self.rows, self.meta):
            terminalreporter.write_line(line)
        kept = ", ".join(f"{row.failure} ({row.run or 'an earlier run'})" for row in ordered(self.kept))
        terminalreporter.write_line(
            f"audit JSON: {self.json_path}" + (f"; kept from earlier runs: {kept}" if kept else "")
        )
