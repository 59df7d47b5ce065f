"""What a team accepts from the audit: ``--audit-expect lost=0,duplicated=0`` (ini ``audit_expect``, one per
line), and per failure ``worker_killed:duplicated=1`` (the beat rows count periodic fates: ``beat_two_beats:
duplicated=0``). A failure whose fates exceed what is accepted fails its test, so the run's exit status and
JUnit report say so. Pure logic.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from harness.errors import HarnessError
from harness.periodic import PERIODIC_FATES
from harness.verdict import FATES

KNOWN = tuple(dict.fromkeys([*FATES, *PERIODIC_FATES]))  # a task's fates, and a periodic run's (the beat rows)

_ENTRY = re.compile(r"^(?:(?P<failure>[\w-]+)\s*:\s*)?(?P<fate>\w+)\s*=\s*(?P<limit>\d+)$")


@dataclass(frozen=True)
class Expectations:
    """The most tasks of each fate a failure may have: ``everywhere``, overridden by ``per_failure``."""

    everywhere: Mapping[str, int] = field(default_factory=dict)
    per_failure: Mapping[str, Mapping[str, int]] = field(default_factory=dict)

    def limits(self, failure: str) -> dict[str, int]:
        return {**self.everywhere, **self.per_failure.get(failure, {})}

    def exceeded(self, failure: str, fates: Mapping[str, int]) -> list[str]:
        """``["lost=1 > 0"]``: each accepted limit the failure's fates go past."""
        return [
            f"{fate}={fates.get(fate, 0)} > {limit}"
            for fate, limit in self.limits(failure).items()
            if fates.get(fate, 0) > limit
        ]

    def describe(self) -> str:
        parts = [f"{fate}={n}" for fate, n in self.everywhere.items()]
        parts += [f"{failure}:{fate}={n}" for failure, limits in self.per_failure.items() for fate, n in limits.items()]
        return ", ".join(parts)


def parse(text: str | None, failures: Iterable[str]) -> Expectations:
    """``"lost=0, worker_killed:duplicated=1"`` (commas or new lines between entries)."""
    known = set(failures)
    everywhere: dict[str, int] = {}
    per_failure: dict[str, dict[str, int]] = {}
    for raw in re.split(r"[,\n]", text or ""):
        entry = raw.strip()
        if not entry or entry.startswith("#"):
            continue
        match = _ENTRY.match(entry)
        if match is None:
            raise HarnessError(
                f"--audit-expect {entry!r} is not fate=N or failure:fate=N (e.g. lost=0, worker_killed:duplicated=1)"
            )
        failure, fate, limit = match["failure"], match["fate"], int(match["limit"])
        if fate not in KNOWN:
            raise HarnessError(f"--audit-expect {entry!r}: {fate!r} is not a fate; fates: {', '.join(KNOWN)}")
        if failure is None:
            everywhere[fate] = limit
        elif failure not in known:
            raise HarnessError(
                f"--audit-expect {entry!r}: no failure {failure!r}; failures: {', '.join(sorted(known))}"
            )
        else:
            per_failure.setdefault(failure, {})[fate] = limit
    return Expectations(everywhere, per_failure)
