"""scripts/scenarios and scripts/tests: the README's two commands, and the pytest arguments they pass on."""

import os
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


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["bogus"], "'bogus' is neither an option nor a command (scenarios, tests); see scripts/clean-room --help"),
        (["tests", "-x", "--then"], "--then must be followed by a command (scenarios, tests)"),
        (["tests", "--then", "lint"], "'lint' after --then is not a command (scenarios, tests)"),
        (["--out"], "--out needs a folder"),
    ],
)
def test_clean_room_bad_input_is_one_sentence_before_anything_is_built(args: list[str], said: str) -> None:
    done = subprocess.run(
        [str(ROOT / "scripts" / "clean-room"), *args], capture_output=True, text=True, timeout=30, cwd=ROOT
    )
    assert (done.returncode, done.stdout, done.stderr) == (2, "", f"clean-room: {said}\n")


def test_clean_room_says_it_needs_root_in_one_sentence() -> None:
    # The script comes on standard input: nobody may not read the checkout (a clean room's is under /root).
    as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"] if os.geteuid() == 0 else []
    done = subprocess.run(
        [*as_nobody, "bash", "-s", "tests"], stdin=(ROOT / "scripts" / "clean-room").open(), capture_output=True,
        text=True, timeout=30, cwd="/",
    )  # fmt: skip
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("clean-room: needs root (debootstrap, chroot and bind mounts): run it as root"), done
