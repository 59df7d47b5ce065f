"""Free TCP ports on loopback (port-for picks them; the harness never assumes a fixed port)."""

from __future__ import annotations

import port_for

from harness.errors import HarnessError


def free_ports(count: int, exclude: list[int] | tuple[int, ...] = ()) -> list[int]:
    """``count`` distinct free ports, none of them in ``exclude`` (ports already promised elsewhere)."""
    chosen: list[int] = []
    while len(chosen) < count:
        chosen.append(port_for.select_random(exclude_ports=[*exclude, *chosen]))
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
