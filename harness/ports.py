"""Free TCP ports on loopback (port-for picks them; the harness never assumes a fixed port)."""

from __future__ import annotations

import os

import port_for

from harness.errors import HarnessError

# Under pytest-xdist, workers pick ports at the same moment: two could find the same port free and both
# take it. Each worker picks from a slice of its own of port-for's good ports (gw0 the first slice...).
SLICES = 16


def _own_slice() -> set[int] | None:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw") or not worker[2:].isdigit():
        return None
    good = sorted(port_for.available_good_ports())
    return set(good[int(worker[2:]) % SLICES :: SLICES])


def free_ports(count: int, exclude: list[int] | tuple[int, ...] = ()) -> list[int]:
    """``count`` distinct free ports, none of them in ``exclude`` (ports already promised elsewhere)."""
    chosen: list[int] = []
    own = _own_slice()
    while len(chosen) < count:
        excluded = [*exclude, *chosen]
        if own is None:
            chosen.append(port_for.select_random(exclude_ports=excluded))
        else:
            chosen.append(port_for.select_random(set(own), exclude_ports=excluded))
    return chosen


def require_free(port: int, what: str, option: str) -> int:
    """Fail at once, with the fix, when a port the user asked for is already in use."""
    # port_for.is_available also refuses ports it deems unsuitable (IANA-assigned, ephemeral):
    # here only "is something listening there" matters.
    if port_for.port_is_used(port):
        raise HarnessError(
            f"port {port} for {what} is already in use on this machine; free it, choose another with "
            f"{option}, or leave {option} out so the harness picks a free port"
        )
    return port
