"""The deploy check's report: a table for the terminal, Markdown for a pull-request comment, JSON.

Each change is a row with its verdict per direction; under the table, each change that is not safe
everywhere gets its reasons and its fix (the tolerant form, an alias, a deploy order). With ``--prove``,
a second table gives, per task and direction, what the checker predicted, what the run saw, and
whether they agree; a contradiction is called what it is, a bug in the checker.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from harness.deploy.compare import BREAKS, CHANGES, DELIVERY, DIRECTIONS, SAFE, TITLES, WAITS, Change, Comparison
from harness.deploy.prove import BODY_FAILED, CONFIRMED, CONTRADICTED, INCONCLUSIVE, Proof, Proven
from harness.deploy.versions import Version

BADGES = {SAFE: "✅ safe", BREAKS: "❌ breaks", WAITS: "⏳ waits", CHANGES: "⚠️ changes"}
STATUS_BADGES = {
    CONFIRMED: "✅ confirmed",
    CONTRADICTED: "❌ contradicted (checker bug)",
    INCONCLUSIVE: "❔ inconclusive",
    BODY_FAILED: "❌ binding safe, body failed",
}
OK, BREAKING, CHECKER_BUG = 0, 1, 3


@dataclass
class Report:
    comparison: Comparison
    base: Version
    new: Version
    fail_on: tuple[str, ...] = DIRECTIONS
    warn_only: bool = False
    proof: Proof | None = None
    proof_note: str | None = None  # why --prove ran nothing

    @property
    def breaking(self) -> list[Change]:
        return self.comparison.breaking(self.fail_on)

    @property
    def body_failures(self) -> list[Proven]:
        """What the proof saw fail in the body, in the directions that fail the check."""
        return self.proof.body_failures(self.fail_on) if self.proof is not None else []

    @property
    def exit_status(self) -> int:
        if self.proof is not None and self.proof.contradictions():
            return CHECKER_BUG
        return BREAKING if (self.breaking or self.body_failures) and not self.warn_only else OK

    def problem(self) -> str | None:
        """What fails the check (a breaking change, unless warn-only, or a contradicted verdict), with the
        table; None if nothing does."""
        return None if self.exit_status == OK else f"deploy check: {self.summary()}\n\n{self.table()}"

    def assert_safe(self) -> None:
        problem = self.problem()
        if problem:
            raise AssertionError(problem)

    def title(self) -> str:
        return f"{self.base.celery_app} ({self.base.label}) → {self.new.celery_app} ({self.new.label})"

    def summary(self) -> str:
        changes = self.comparison.changes
        breaking = self.breaking
        tasks = {c.task for c in breaking}
        parts = [
            f"{len(breaking)} breaking change(s) in {len(tasks)} task(s)" if breaking else "no breaking change",
            f"{sum(1 for c in changes if not c.breaks(self.fail_on))} other change(s)",
            f"{len(self.comparison.unchanged)} task(s) unchanged",
        ]
        if self.proof is not None:
            bugs = len({(r.message.task, r.message.direction) for r in self.proof.contradictions()})
            parts.append(f"proof: {bugs} contradiction(s) (checker bug)" if bugs else "proof: no contradiction")
            failed = len({(r.message.task, r.message.direction) for r in self.body_failures})
            if failed:
                parts.append(f"{failed} body failure(s) where binding is safe")
        status = self.exit_status
        why = " (warn only)" if self.warn_only and (breaking or self.body_failures) else ""
        return "; ".join(parts) + f"; exit status {status}{why}"

    # -- the terminal -------------------------------------------------------------------------
    def table(self) -> str:
        lines = [f"deploy check: {self.title()}; {self.comparison.policy.describe()}", ""]
        header = ["task", "change", *(TITLES[d] for d in DIRECTIONS)]
        rows = [[c.label, _kind(c), *(c.verdicts[d].upper() if c.verdicts[d] == BREAKS else c.verdicts[d]
                 for d in DIRECTIONS)] for c in self.comparison.changes]  # fmt: skip
        lines += _columns(header, rows) if rows else ["no task changed"]
        for change in self.comparison.changes:
            if all(change.verdicts[d] == SAFE for d in DIRECTIONS) and not change.fix:
                continue
            lines += ["", f"{change.label}: {change.kind}: {change.detail}"]
            for direction in DIRECTIONS:
                reason = change.reasons.get(direction)
                if reason:
                    lines.append(f"  {TITLES[direction]}: {change.verdicts[direction]}: {reason}")
            if change.fix:
                lines.append(f"  fix: {change.fix}")
        if self.proof is not None:
            lines += ["", f"proof on a mixed fleet ({self.proof.broker} broker, {self.proof.seconds:.0f}s):"]
            rows = [[r["task"], TITLES[r["direction"]], r["predicted"], r["observed"],
                     r["status"] + (": CHECKER BUG" if r["status"] == CONTRADICTED else "")]
                    for r in self.proof.rows()]  # fmt: skip
            lines += _columns(["task", "direction", "predicted", "observed", "status"], rows)
            lines += [f"  {r['task']}, {TITLES[r['direction']]}: {r['why']}" for r in self.proof.rows() if r["why"]]
            lines += [f"  control that did not run: {line}" for line in self.proof.failed_controls()]
        if self.proof_note:
            lines += ["", f"proof: {self.proof_note}"]
        return "\n".join([*lines, "", self.summary()])

    # -- a pull-request comment ---------------------------------------------------------------------
    def markdown(self) -> str:
        base, new = self.base, self.new
        lines = [f"### Deploy check: `{base.celery_app}` ({base.label}) → `{new.celery_app}` ({new.label})", ""]
        lines.append(f"Producers assumed to make {self.comparison.policy.describe()}.")
        lines.append("")
        if self.comparison.changes:
            lines.append("| task | change | " + " | ".join(TITLES[d] for d in DIRECTIONS) + " |")
            lines.append("|---|---|" + "---|" * len(DIRECTIONS))
            for change in self.comparison.changes:
                cells = [f"`{change.label}`", f"{change.kind}: {_md(change.detail)}"]
                cells += [BADGES[change.verdicts[d]] for d in DIRECTIONS]
                lines.append("| " + " | ".join(cells) + " |")
        else:
            lines.append("No task changed.")
        details = [c for c in self.comparison.changes if c.fix or any(c.verdicts[d] != SAFE for d in DIRECTIONS)]
        if details:
            lines += ["", "<details><summary>Why, and how to make each change safe</summary>", ""]
            for change in details:
                lines.append(f"- **`{change.label}`** {change.kind}: {_md(change.detail)}")
                for direction in DIRECTIONS:
                    if change.reasons.get(direction) and change.verdicts[direction] != SAFE:
                        lines.append(f"  - {TITLES[direction]}: {_md(change.reasons[direction])}")
                if change.fix:
                    lines.append(f"  - fix: {_md(change.fix)}")
            lines += ["", "</details>"]
        if self.proof is not None:
            lines += ["", f"**Proof on a mixed fleet** ({self.proof.broker} broker, real workers):", ""]
            lines.append("| task | direction | predicted | observed | |")
            lines.append("|---|---|---|---|---|")
            for row in self.proof.rows():
                cells = [f"`{row['task']}`", TITLES[row["direction"]], _md(row["predicted"]), _md(row["observed"])]
                lines.append("| " + " | ".join([*cells, STATUS_BADGES[row["status"]]]) + " |")
        if self.proof_note:
            lines += ["", f"Proof: {self.proof_note}."]
        lines += ["", self.summary()]
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict[str, Any]:
        return {
            "base": self.base.describe(),
            "new": self.new.describe(),
            **self.comparison.to_json(),
            "fail_on": list(self.fail_on),
            "breaking": len(self.breaking),
            "proof": self.proof.to_json() if self.proof is not None else None,
            "proof_note": self.proof_note,
            "exit_status": self.exit_status,
        }


def _kind(change: Change) -> str:
    return f"{change.kind} ({change.detail.split()[0]})" if change.kind == DELIVERY else change.kind


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def _columns(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    rows = [header, *rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
