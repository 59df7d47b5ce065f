"""scripts/scenarios and scripts/tests: the README's two commands, and the pytest arguments they pass on."""

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def collected(script: str, *args: str) -> list[str]:
    """The test ids the script's pytest collects with these arguments."""
    done = subprocess.run(
        [str(ROOT / "scripts" / script), "--collect-only", "-q", "-p", "no:randomly", *args],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return [line for line in done.stdout.splitlines() if "::" in line]


@pytest.mark.parametrize(
    ("script", "one_file"), [("scenarios", "scenarios/test_worker_outage.py"), ("tests", "tests/test_verdict.py")]
)
def test_a_file_given_runs_alone_and_no_file_runs_the_whole_folder(script: str, one_file: str) -> None:
    whole, alone = collected(script), collected(script, one_file)
    assert alone and set(alone) < set(whole) and all(i.startswith(one_file) for i in alone)
    function = alone[0].split("[")[0]
    assert collected(script, function) == [i for i in alone if i.split("[")[0] == function]
