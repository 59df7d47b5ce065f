"""``python -m harness.matrix``: the catalogue on RabbitMQ 3 and 4, as a table of fates (executable docs).

Each version's run is recorded from its run report (``data/*.json``: every scenario's outcome, fates and the
RabbitMQ version the broker said it ran) into ``docs/matrix/rabbitmq-<major>.json``; the table (scenario x
version -> fates) is written from those records into ``docs/version-matrix.md`` and, for the scenarios whose
fates differ between versions, between the ``<!-- matrix:begin -->`` / ``<!-- matrix:end -->`` marks of
the brokers guide (``docs/guides/brokers.md``). ``--check`` fails when either is out of date (tests/test_matrix.py
runs it).

    python -m harness.matrix --run 3 4 [-- pytest args]   run the catalogue on each version, record, write
    python -m harness.matrix --record REPORT_DIR            record a run report made elsewhere (CI), write
    python -m harness.matrix [--check]                      write (check) the docs from the records
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from harness.docs import page_of
from harness.verdict import FATES

BEGIN, END = "<!-- matrix:begin -->", "<!-- matrix:end -->"
RECORDS = Path("docs/matrix")
TABLE = Path("docs/version-matrix.md")
GUIDE = Path("docs/guides/brokers.md")  # its section where the versions differ, between BEGIN and END
CATALOGUE_ARGS = ("scenarios/", "-m", "catalogue", "-p", "no:cacheprovider")


def record(report: Path) -> dict:
    """One run's record from its report folder: the broker's version and each scenario's outcome and fates."""
    scenarios, versions = {}, set()
    for path in sorted((report / "data").glob("*.json")):
        data = json.loads(path.read_text())
        if data.get("rabbitmq"):
            versions.add(data["rabbitmq"])
        fates = {fate: n for fate, n in data["fates"].items() if n}
        scenarios[data["nodeid"]] = {"outcome": data["outcome"], "fates": fates}
    # Scenarios that never reached their body (a setup error, a skip) leave no report data: the JUnit XML
    # of the run, when there is one, says what became of them.
    for nodeid, outcome in junit_outcomes(report / "junit.xml").items():
        scenarios.setdefault(nodeid, {"outcome": outcome, "fates": {}})
    if len(versions) != 1:
        raise SystemExit(f"matrix: {report} holds runs of RabbitMQ {sorted(versions) or 'unknown'}: one version a run")
    return {
        "rabbitmq": versions.pop(),
        "celery": _version("celery"),
        "kombu": _version("kombu"),
        "scenarios": scenarios,
    }


def junit_outcomes(path: Path) -> dict[str, str]:
    """nodeid -> error / failed / skipped, for the test cases of a JUnit XML file that did not pass."""
    if not path.exists():
        return {}
    import xml.etree.ElementTree as ElementTree

    outcomes = {}
    for case in ElementTree.parse(path).iter("testcase"):
        kinds = [child.tag for child in case if child.tag in ("error", "failure", "skipped")]
        if kinds:
            module = case.get("classname", "").replace(".", "/") + ".py"
            outcomes[f"{module}::{case.get('name')}"] = {"failure": "failed"}.get(kinds[0], kinds[0])
    return outcomes


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


def save(run: dict, root: Path) -> Path:
    path = root / RECORDS / f"rabbitmq-{run['rabbitmq'].split('.')[0]}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(run, indent=1, sort_keys=True) + "\n")
    return path


def load(root: Path) -> list[dict]:
    runs = [json.loads(p.read_text()) for p in sorted((root / RECORDS).glob("rabbitmq-*.json"))]
    return sorted(runs, key=lambda run: [int(p) for p in run["rabbitmq"].split(".") if p.isdigit()])


def cell(entry: dict | None) -> str:
    if entry is None:
        return "not run"
    fates = ", ".join(f"{entry['fates'][f]} {f}" for f in FATES if entry["fates"].get(f)) or "no task seen"
    return fates if entry["outcome"] == "passed" else f"**{entry['outcome']}**: {fates}"


def rows(runs: list[dict]) -> list[tuple[str, list[str]]]:
    names = sorted({nodeid for run in runs for nodeid in run["scenarios"]})
    return [(name, [cell(run["scenarios"].get(name)) for run in runs]) for name in names]


def _scenario(nodeid: str, up: str) -> str:
    """A link to the scenario's lesson in the docs site, from a page ``up`` (``../``) below the site's root."""
    return f"[`{nodeid.partition('::')[2]}`]({up}{page_of(nodeid)})"


def table(runs: list[dict], only_different: bool = False, up: str = "") -> str:
    header = "| scenario | " + " | ".join(f"RabbitMQ {run['rabbitmq']}" for run in runs) + " |"
    lines = [header, "|---|" + "---|" * len(runs)]
    for name, cells in rows(runs):
        if only_different and len(set(cells)) == 1:
            continue
        lines.append(f"| {_scenario(name, up)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def page(runs: list[dict]) -> str:
    made = ", ".join(f"RabbitMQ {r['rabbitmq']} (Celery {r['celery']}, kombu {r['kombu']})" for r in runs)
    return (
        "# The failure catalogue on each RabbitMQ version\n\n"
        "Generated by `python -m harness.matrix` from the recorded runs in `docs/matrix/` (each the whole\n"
        f"catalogue, `-m catalogue`, on a broker the harness started: {made}). A cell is the scenario's fates\n"
        "(its outcome when it did not pass); each scenario's lesson explains every difference.\n\n"
        f"{table(runs)}\n"
    )


def guide_section(runs: list[dict]) -> str:
    return (
        "Where the fates differ between RabbitMQ versions (the whole table: "
        "[versions compared](../version-matrix.md)):\n\n" + table(runs, only_different=True, up="../")
    )


def with_section(guide: str, section: str) -> str:
    if BEGIN not in guide or END not in guide:
        raise SystemExit(f"matrix: {GUIDE} has no {BEGIN} / {END} marks")
    head, rest = guide.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{section}\n{END}{tail}"


def write(root: Path, check: bool = False) -> list[str]:
    """Write the table and the brokers guide's section from the records; with ``check``, return what is stale."""
    runs = load(root)
    if not runs:
        raise SystemExit(f"matrix: no recorded runs in {root / RECORDS}; run python -m harness.matrix --run 3 4")
    guide = root / GUIDE
    wanted = {root / TABLE: page(runs), guide: with_section(guide.read_text(), guide_section(runs))}
    stale = [str(p.relative_to(root)) for p, text in wanted.items() if not p.exists() or p.read_text() != text]
    if not check:
        for path, text in wanted.items():
            path.write_text(text)
    return stale


def run_catalogue(version: str, pytest_args: list[str], root: Path) -> Path:
    """The catalogue on one version, through pytest; returns the report folder (kept for the record)."""
    report = Path(tempfile.mkdtemp(prefix=f"harness-matrix-{version}-"))
    command = [sys.executable, "-m", "pytest", *CATALOGUE_ARGS, "--harness-rabbitmq-version", version,
               f"--harness-report={report}", f"--junitxml={report / 'junit.xml'}", *pytest_args]  # fmt: skip
    print("matrix:", " ".join(command), flush=True)
    subprocess.run(command, cwd=root, check=False)  # failed scenarios are recorded as such
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.matrix", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", nargs="+", choices=("3", "4"), help="run the catalogue on these versions first")
    parser.add_argument("--record", nargs="+", type=Path, default=[], help="record these run reports first")
    parser.add_argument("--check", action="store_true", help="fail if the docs are not what the records give")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="the project's folder (default: here)")
    parser.add_argument("pytest_args", nargs="*", help="pytest's arguments for --run (after --)")
    args = parser.parse_args(argv)
    reports = list(args.record)
    for version in args.run or ():
        reports.append(run_catalogue(version, args.pytest_args or ["--harness-broker", "local"], args.root))
    for report in reports:
        print(f"matrix: recorded {save(record(report), args.root).relative_to(args.root)}")
    stale = write(args.root, check=args.check)
    if args.check and stale:
        print(f"matrix: out of date: {', '.join(stale)}; run python -m harness.matrix", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
