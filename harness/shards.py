"""A suite sharded across CI runners: the durations pytest-split balances by, and the shards' reports as one.

Each runner runs one shard (``pytest scenarios/ --splits 3 --group N --durations-path .test_durations``, with
pytest-split) on a broker of its own and writes its own run report. Then, from the checkout (``python -m
harness.report`` runs this module's ``main``)::

    python -m harness.report merge shard-1/ shard-2/ shard-3/ --out harness-report   # one page, every scenario
    python -m harness.report durations harness-report --out .test_durations           # the next split's weights

``durations`` writes pytest-split's durations file (JSON ``{nodeid: seconds}``, what ``--store-durations``
writes) from one or more run reports: each scenario's setup + call + teardown, as pytest-split counts a test.
``merge`` copies the shards' records and drawn sections into one report folder and writes its page with
``harness.report.write_page``, the plugin's own. A scenario in two reports is an error: a shard plan that ran
a scenario twice is a mistake to see, never something to dedupe.
"""

from __future__ import annotations

import argparse
import html
import json
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from harness.errors import HarnessError
from harness.report import Record, whole_time, write_page


def records_of(folder: Path) -> list[Record]:
    """The scenario records of one run report (``index.html`` and ``data/*.json``, as the plugin writes them)."""
    if not folder.exists():
        raise HarnessError(f"{folder} does not exist: give the report folders the runs wrote (--harness-report)")
    if not folder.is_dir():
        raise HarnessError(f"{folder} is not a folder: give the report folders the runs wrote (--harness-report)")
    paths = sorted((folder / "data").glob("*.json"))
    if not (folder / "index.html").is_file() or not paths:
        raise HarnessError(
            f"{folder} is not a run report: one has an index.html and data/*.json records (the folder pytest "
            "--harness-report writes)"
        )
    found = []
    for path in paths:
        try:
            record = json.loads(path.read_text())
            _nodeid, _started = record["nodeid"], record["timeline"]["started"]  # what merge and durations read
        except (ValueError, KeyError, TypeError) as exc:
            raise HarnessError(f"{path} is not a scenario record of the run report ({exc!r})") from None
        found.append((record, path))
    return found


def read_records(folders: Sequence[Path]) -> dict[str, Record]:
    """Every scenario record of the run reports ``folders``, by nodeid; a nodeid in two of them is an error."""
    by_nodeid: dict[str, Record] = {}
    where: dict[str, Path] = {}
    for n, folder in enumerate(folders):
        if any(folder.resolve() == earlier.resolve() for earlier in folders[:n]):
            raise HarnessError(f"{folder} is given twice: give each shard's report once")
        for record, path in records_of(folder):
            nodeid = record["nodeid"]
            if nodeid in by_nodeid:
                raise HarnessError(
                    f"{nodeid} ran in two shards, its records are in {where[nodeid]} and in {folder}: a shard "
                    "plan must run each scenario once (check each shard's --splits, --group and selection)"
                )
            by_nodeid[nodeid], where[nodeid] = (record, path), folder
    return by_nodeid


def durations(folders: Sequence[Path]) -> dict[str, float]:
    """pytest-split's durations, ``{nodeid: seconds}``, of the scenarios in the run reports ``folders``."""
    return {nodeid: round(whole_time(record), 3) for nodeid, (record, _) in sorted(read_records(folders).items())}


def write_durations(folders: Sequence[Path], out: Path) -> int:
    """Write ``out`` as pytest-split writes it (sorted keys, indent 4), so a refresh diffs line by line; how many
    scenarios it has."""
    found = durations(folders)
    if out.is_dir():
        raise HarnessError(f"--out {out} is a folder: name the durations file (e.g. {out / '.test_durations'})")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(found, sort_keys=True, indent=4) + "\n")
    return len(found)


def merge(folders: Sequence[Path], out: Path) -> int:
    """The shards' run reports ``folders`` as one report in ``out``: their records and drawn sections copied to
    ``out/data`` (replacing an earlier merge's, as a run replaces the last run's), and one page; how many
    scenarios it has."""
    if any(folder.resolve() == out.resolve() for folder in folders):
        raise HarnessError(f"--out {out} is one of the shards' reports: merge them into a folder of its own")
    if out.exists() and not out.is_dir():
        raise HarnessError(f"--out {out} is a file: name a folder for the merged report")
    if out.is_dir() and any(out.iterdir()) and not (out / "index.html").is_file():
        # Its data/*.json would be replaced: never files of someone else's (a project's data/ fixtures).
        raise HarnessError(f"--out {out} is a folder that holds something else than a run report: name a new folder")
    records = read_records(folders)
    by_name: dict[str, str] = {}
    for nodeid, (_, path) in records.items():
        # A file is named by its nodeid cut to 150 characters: two scenarios could share one, and overwrite.
        if (other := by_name.setdefault(path.name, nodeid)) != nodeid:
            raise HarnessError(f"{nodeid} and {other} have the same record file name {path.name}: rename one")
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    for old in [*data.glob("*.json"), *data.glob("*.html")]:
        old.unlink()
    for _, path in records.values():
        shutil.copy2(path, data / path.name)
        if (drawn := path.with_suffix(".html")).is_file():  # else write_page draws it (its drawing had failed)
            shutil.copy2(drawn, data / drawn.name)
    first = min(record["timeline"]["started"] for record, _ in records.values())
    shards = ", ".join(f"<code>{html.escape(str(folder))}</code>" for folder in folders)
    write_page(
        out,
        time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(first)),
        extra=f"<p>Merged from {len(folders)} shard reports: {shards}.</p>",
    )
    return len(records)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.report", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    times = commands.add_parser("durations", help="write pytest-split's durations file from run reports")
    times.add_argument("reports", nargs="+", type=Path, help="run report folders (--harness-report)")
    times.add_argument("--out", type=Path, default=Path(".test_durations"), help="default: .test_durations")
    merged = commands.add_parser("merge", help="merge the shards' run reports into one report folder")
    merged.add_argument("reports", nargs="+", type=Path, help="the shards' run report folders")
    merged.add_argument("--out", type=Path, required=True, help="the merged report's folder")
    args = parser.parse_args(argv)
    try:
        if args.command == "durations":
            count = write_durations(args.reports, args.out)
            print(f"{args.out}: the durations of {count} scenarios, for pytest-split's --durations-path")
        else:
            count = merge(args.reports, args.out)
            page = (args.out / "index.html").resolve().as_uri()
            shards = f"{len(args.reports)} shard{'s' if len(args.reports) != 1 else ''}"
            print(f"merged report of {count} scenarios from {shards}: {page}")
    except HarnessError as error:  # as argparse says a bad argument, without the usage: a folder is the problem
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
