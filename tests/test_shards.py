"""harness.shards (``python -m harness.report durations|merge``): the durations pytest-split reads, and the shards'
reports merged into one, from records written as the plugin writes them; then the whole suite split three ways by
pytest-split, and a real three-shard run merged.

The real run is what a CI matrix does: each shard a pytest of its own with a private local broker and a report
folder of its own, one after another here (about 40 s on a 2-core machine: three broker boots).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.errors import HarnessError
from harness.report import scenario_record, section, slug, write_page
from harness.shards import durations, main, merge, read_records, write_durations
from harness.timeline import Timeline
from harness.verdict import judge

ROOT = Path(__file__).resolve().parent.parent
# As the CI templates split: then the durations file, then --group N.
SPLIT = ("--splits", "3", "--splitting-algorithm", "least_duration", "--durations-path")


class NoTasks:
    """What ``scenario_record`` reads of a stack whose scenario sent nothing."""

    def __init__(self, started: float) -> None:
        self.timeline = Timeline(started=started)

    def verdict(self):
        return judge({}, {})


def write_shard(folder: Path, scenarios: dict[str, tuple[float, float, float]], started: float = 1.8e9) -> None:
    """A shard's run report as the plugin leaves it: a record (``{nodeid: (setup, call, teardown)}`` seconds) and
    its drawn section per scenario in ``data/``, and the page."""
    (folder / "data").mkdir(parents=True)
    for n, (nodeid, (setup, call, teardown)) in enumerate(scenarios.items()):
        item = SimpleNamespace(nodeid=nodeid, name=nodeid.split("::")[-1], funcargs={}, iter_markers=list)
        report = SimpleNamespace(outcome="passed", failed=False, duration=call)
        record = scenario_record(item, report, NoTasks(started + n), setup=setup)
        record["durations"]["teardown"] = teardown  # as the plugin adds it after the teardown
        name = slug(nodeid)
        (folder / "data" / f"{name}.json").write_text(json.dumps(record, indent=1))
        (folder / "data" / f"{name}.html").write_text(section(record, f"data/{name}.json"))
    assert write_page(folder, "2027-01-15 10:00:00")


A, B, C = (f"scenarios/test_{x}.py::test_{x}" for x in "abc")


def test_the_durations_file_has_each_scenarios_setup_call_and_teardown_as_pytest_split_reads_it(
    tmp_path: Path,
) -> None:
    write_shard(tmp_path / "shard-1", {A: (8.0, 2.0, 0.5), B: (0.75, 4.0, 0.25)})
    write_shard(tmp_path / "shard-2", {C: (9.0, 1.0, 0.125)})
    out = tmp_path / ".test_durations"
    assert write_durations([tmp_path / "shard-1", tmp_path / "shard-2"], out) == 3
    assert json.loads(out.read_text()) == {A: 10.5, B: 5.0, C: 10.125}


def test_a_record_from_before_the_phases_were_kept_counts_its_body(tmp_path: Path) -> None:
    write_shard(tmp_path / "old", {A: (8.0, 2.0, 0.5)})
    [path] = (tmp_path / "old" / "data").glob("*.json")
    record = json.loads(path.read_text())
    del record["durations"]
    path.write_text(json.dumps(record))
    assert durations([tmp_path / "old"]) == {A: 2.0}


def test_the_shards_reports_merge_into_one_page_listing_each_scenario_once(tmp_path: Path) -> None:
    write_shard(tmp_path / "shard-1", {A: (1.0, 1.0, 0.0), B: (1.0, 1.0, 0.0)}, started=1.8e9)
    write_shard(tmp_path / "shard-2", {C: (1.0, 1.0, 0.0)}, started=1.8e9 - 10)
    out = tmp_path / "merged"
    (out / "data").mkdir(parents=True)
    (out / "data" / "stale.json").write_text("{}")  # an earlier merge's: replaced, as a run replaces the last run's
    (out / "index.html").write_text("<html></html>")
    assert merge([tmp_path / "shard-1", tmp_path / "shard-2"], out) == 3
    page = (out / "index.html").read_text()
    anchors = re.findall(r"<section class=\"scenario passed\" id=\"([^\"]+)\"", page)
    assert sorted(anchors) == sorted(slug(n) for n in (A, B, C)), "each scenario once"
    assert "3 scenarios: 3 passed" in page and "Merged from 2 shard reports" in page
    assert sorted(p.name for p in (out / "data").iterdir()) == sorted(
        f"{slug(nodeid)}.{ext}" for nodeid in (A, B, C) for ext in ("json", "html")
    )
    assert set(read_records([out])) == {A, B, C}, "the merged folder is a run report itself"


def test_a_scenario_in_two_shards_is_an_error_naming_it_and_both_folders(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_shard(tmp_path / "shard-1", {A: (1.0, 1.0, 0.0), B: (1.0, 1.0, 0.0)})
    write_shard(tmp_path / "shard-2", {B: (1.0, 1.0, 0.0)})
    shards = [str(tmp_path / "shard-1"), str(tmp_path / "shard-2")]
    assert main(["merge", *shards, "--out", str(tmp_path / "merged")]) == 2
    said = capsys.readouterr().err
    assert said.startswith("python -m harness.report: error: ") and said.count("\n") == 1, said
    assert B in said and shards[0] in said and shards[1] in said and A not in said
    assert not (tmp_path / "merged").exists(), "nothing merged"
    assert main(["durations", *shards, "--out", str(tmp_path / "d.json")]) == 2, "nor a durations file written"


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (lambda folder: None, "does not exist"),
        (lambda folder: folder.write_text(""), "is not a folder"),
        (lambda folder: folder.mkdir(), "is not a run report"),
        (lambda folder: (folder / "data").mkdir(parents=True) or (folder / "index.html").touch(), "not a run report"),
        (lambda folder: write_shard(folder, {A: (1.0, 1.0, 0.0)}) or next(folder.glob("data/*.json")).write_text("{"),
         "is not a scenario record"),
    ],
    ids=["missing", "a-file", "empty", "no-records", "broken-record"],
)  # fmt: skip
def test_a_folder_that_is_not_a_run_report_is_an_error_in_one_sentence(
    tmp_path: Path, make: Callable[[Path], object], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    write_shard(tmp_path / "good", {B: (1.0, 1.0, 0.0)})
    make(tmp_path / "bad")
    with pytest.raises(HarnessError, match=said):
        read_records([tmp_path / "good", tmp_path / "bad"])
    assert main(["merge", str(tmp_path / "good"), str(tmp_path / "bad"), "--out", str(tmp_path / "m")]) == 2
    error = capsys.readouterr().err
    assert f"error: {tmp_path / 'bad'}" in error and said in error and error.count("\n") == 1, error


def test_the_command_line_is_python_m_harness_report(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "harness.report", "merge", str(tmp_path / "nowhere"), "--out", str(tmp_path / "m")],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (2, ""), done
    assert done.stderr == f"python -m harness.report: error: {tmp_path / 'nowhere'} does not exist: give the " \
        "report folders the runs wrote (--harness-report)\n"  # fmt: skip


def test_merge_never_writes_over_a_file_or_a_folder_of_something_else(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A project's data/ fixtures beside an index.html of its own must not be replaced by a merge into its folder."""
    write_shard(tmp_path / "shard-1", {A: (1.0, 1.0, 0.0)})
    (tmp_path / "a-file").write_text("keep")
    theirs = tmp_path / "project"
    (theirs / "data").mkdir(parents=True)
    (theirs / "data" / "fixtures.json").write_text("{}")
    for out, said in ((tmp_path / "a-file", "is a file"), (theirs, "holds something else than a run report")):
        assert main(["merge", str(tmp_path / "shard-1"), "--out", str(out)]) == 2
        error = capsys.readouterr().err
        assert said in error and error.count("\n") == 1, error
    assert (tmp_path / "a-file").read_text() == "keep" and (theirs / "data" / "fixtures.json").exists()
    assert main(["merge", str(tmp_path / "shard-1"), "--out", str(tmp_path / "merged")]) == 0
    assert main(["merge", str(tmp_path / "shard-1"), "--out", str(tmp_path / "merged")]) == 0, (
        "an earlier merge: replaced"
    )


def test_durations_are_written_where_asked_making_the_folder(tmp_path: Path) -> None:
    write_shard(tmp_path / "run", {A: (1.0, 2.0, 0.5)})
    out = tmp_path / "not" / "yet" / ".test_durations"
    assert main(["durations", str(tmp_path / "run"), "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == {A: 3.5}


def run_pytest(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """An inner pytest from the checkout, as a CI runner starts it."""
    command = [sys.executable, "-m", "pytest", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def collected(*args: str) -> list[str]:
    done = run_pytest("--collect-only", "-q", *args)
    assert done.returncode == 0, done.stdout + done.stderr
    return [line for line in done.stdout.splitlines() if "::" in line]


def test_three_shards_of_the_whole_suite_collect_each_scenario_exactly_once(tmp_path: Path) -> None:
    """The split is computed on each runner from its own collection: the nodeids must be the same on each (no
    port, path or time in a parametrize id), or a scenario runs twice or never."""
    whole = collected("scenarios")
    shards = [collected("scenarios", *SPLIT, str(tmp_path / "none"), "--group", str(n)) for n in (1, 2, 3)]
    assert len(whole) > 60 and all(shards), [len(s) for s in shards]
    everything = [nodeid for shard in shards for nodeid in shard]
    assert sorted(everything) == sorted(whole), "the union is the suite, and each scenario is in one shard only"


def test_a_real_three_shard_run_merges_into_one_report_of_the_selection(tmp_path: Path) -> None:
    """Three shards of a three-scenario file, each on its own local broker with its own report, merged; then the
    durations file written from them, read back by pytest-split (its estimates add up to the file's)."""
    selection = "scenarios/test_signature_mismatch.py"
    nodeids = collected(selection)
    assert len(nodeids) == 3
    shards = [tmp_path / f"shard-{n}" for n in (1, 2, 3)]
    for n, folder in enumerate(shards, start=1):
        done = run_pytest(
            selection, *SPLIT, str(tmp_path / "none"), "--group", str(n), "--harness-broker", "local",
            f"--harness-report={folder}",
        )  # fmt: skip
        assert done.returncode == 0 and "1 passed, 2 deselected" in done.stdout, done.stdout[-3000:] + done.stderr

    merged = tmp_path / "merged"
    done = subprocess.run(
        [sys.executable, "-m", "harness.report", "merge", *map(str, shards), "--out", str(merged)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0 and "merged report of 3 scenarios from 3 shards" in done.stdout, done
    page = (merged / "index.html").read_text()
    contents = page[: page.index("<section")]
    for nodeid in nodeids:
        assert page.count(f'id="{slug(nodeid)}"') == 1 and contents.count(f"href='#{slug(nodeid)}'") == 1
    records = read_records([merged])
    assert sorted(records) == sorted(nodeids) and {r["outcome"] for r, _ in records.values()} == {"passed"}
    for record, _ in records.values():
        phases = record["durations"]
        assert phases["call"] == record["duration"] and phases["setup"] > 0 and phases["teardown"] > 0, phases

    weights = tmp_path / ".test_durations"
    done = subprocess.run(
        [sys.executable, "-m", "harness.report", "durations", *map(str, shards), "--out", str(weights)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done
    written = json.loads(weights.read_text())
    assert sorted(written) == sorted(nodeids)
    estimated = 0.0
    for n in (1, 2, 3):
        done = run_pytest("--collect-only", "-q", selection, *SPLIT, str(weights), "--group", str(n))
        estimated += float(re.search(r"estimated duration: ([\d.]+)s", done.stdout)[1])
    assert estimated == pytest.approx(sum(written.values()), abs=0.03), "pytest-split weighs by the file"
