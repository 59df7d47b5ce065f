"""``python -m harness down``: end the stack that is up here, and leave nothing behind.

A live ``harness up`` is asked to stop (SIGTERM, which it handles as Ctrl-C) and tears down everything it
started; ``down`` waits until it has exited. A scenario kept by ``--keep-on-failure`` is interrupted the
same way (SIGINT to its pytest, as Ctrl-C there). If the owner died without cleaning up (SIGKILL, a
crash), ``down`` does it from the state file: the programs' process groups, supervisord, a local broker
node's process group or the dead run's broker container, the temporary directories, the state file.
With nothing up (no state file) it says so and exits 0, so that an "always tear down" step of a CI job
passes; a stack it fails to tear down exits 2.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import psutil

from harness.errors import HarnessError
from harness.processes import live_processes_of
from harness.state import STATE_HELP, StackState, path_for, pid_alive
from harness.supervisor import Supervisor
from harness.waiting import WaitTimeout, eventually

OWNER_EXIT_TIMEOUT_S = 60.0  # a teardown kills programs and a broker node: seconds, not minutes


def _kill_group(pgid: int | None) -> None:
    if pgid and pid_alive(pgid):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def clean_after(state: StackState) -> list[str]:
    """Remove what an owner that died left: returns what was done."""
    done = []
    supervisor = Supervisor.attach(Path(state.supervisor_conf), Path(state.supervisor_socket))
    try:
        supervisor.kill_programs()
        supervisor.rpc.shutdown()
        done.append("programs killed, supervisord shut down")
    except Exception:  # supervisord is gone too; its own group goes below
        pass
    _kill_group(state.supervisord_pid)
    # Programs live in process groups of their own; a supervisord that died (it gets SIGTERM with its owner)
    # may have left some mid-stop: every process that names the stack's directory goes.
    for process in live_processes_of(state.workdir):
        with contextlib.suppress(psutil.Error):
            process.kill()
    if state.broker_kind == "local" and state.broker_pid:
        _kill_group(state.broker_pid)
        done.append("broker node killed")
    elif state.broker_kind == "docker":
        from harness.brokers.containers import docker_client, remove_leftovers

        try:
            client = docker_client()
            removed = remove_leftovers(client)  # containers of runs whose pid is dead: this one's
            client.close()
            done.append(f"broker containers removed: {', '.join(removed) or 'none left'}")
        except HarnessError as error:
            done.append(f"could not reach Docker to remove the broker container: {error}")
    for folder in (state.work_root, str(Path(state.supervisor_socket).parent)):
        if folder and Path(folder).name.startswith(("harness-", "hsv-")):
            shutil.rmtree(folder, ignore_errors=True)
    return done


def remove_network_rules(pid: int | None = None) -> str:
    """The iptables rules of harness processes that are dead (or of ``pid``): what a killed run left."""
    from harness.netfaults import remove_stale_rules

    removed = remove_stale_rules({pid} if pid else None)
    return f"; {len(removed)} network fault rule(s) removed" if removed else ""


def down(state_path: Path) -> str:
    if not state_path.exists():  # a CI "always tear down" step: nothing to do is not a failure
        # ...but a killed run may have left network fault rules: clear those anyway
        return f"harness: nothing is up here (no {state_path}){remove_network_rules()}"
    state = StackState.read(state_path)
    if state.alive:
        how = signal.SIGTERM if state.owner == "up" else signal.SIGINT
        os.kill(state.pid, how)
        try:
            eventually(
                lambda: not pid_alive(state.pid) and not state_path.exists(), timeout=OWNER_EXIT_TIMEOUT_S,
                what=f"the stack's process (pid {state.pid}) to tear it down and exit",
            )  # fmt: skip
            return f"harness: the stack of pid {state.pid} is down{remove_network_rules(state.pid)}"
        except WaitTimeout:
            if pid_alive(state.pid):
                raise HarnessError(
                    f"the stack's process (pid {state.pid}) did not exit within {OWNER_EXIT_TIMEOUT_S:.0f}s; "
                    f"kill -9 {state.pid}, then python -m harness down again to clean up"
                ) from None
    done = clean_after(state)
    state_path.unlink(missing_ok=True)
    return (
        f"harness: the stack of pid {state.pid} had died; cleaned up after it ({'; '.join(done) or 'nothing left'})"
        f"{remove_network_rules(state.pid)}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness down", description=__doc__.split("\n\n")[0])
    parser.add_argument("--state", type=Path, help=STATE_HELP)
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        said = down(path_for(args.state))
    except HarnessError as error:
        print(f"harness: {error}", file=sys.stderr)
        return 2
    print(f"{said} ({time.monotonic() - started:.1f} s)")
    return 0
