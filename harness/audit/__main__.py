"""``python -m harness.audit [proj.celery:app] [pytest options]``: the resilience audit, one command.

It runs exactly ``pytest --pyargs harness.audit --celery-app proj.celery:app [pytest options]`` (the
app may also come from the ``celery_app`` ini key or ``--harness-stack``), so every pytest and harness
option works: ``--audit-like proj.tasks.send_email``, ``--audit-expect lost=0``, ``--junitxml``, ``-k``...
Its exit status is pytest's.
"""

from __future__ import annotations

import re
import sys


def command(argv: list[str]) -> list[str]:
    """pytest's arguments for the audit: a leading ``module:attribute`` is the Celery app."""
    args = list(argv)
    app = ["--celery-app", args.pop(0)] if args and not args[0].startswith("-") else []
    # The harness is imported before pytest loads it as a plugin: its assertions need no rewriting.
    return ["--pyargs", "harness.audit", *app, "-W", "ignore::pytest.PytestAssertRewriteWarning", *args]


PARALLEL = re.compile(r"^(-n\S*|--numprocesses(=.*)?|--dist(=.*)?)$")
ONE_PROCESS = "harness audit: the audit runs in one process (its table gathers every row); leave out -n"


def main(argv: list[str] | None = None) -> int:
    import pytest

    args = sys.argv[1:] if argv is None else argv
    if any(PARALLEL.match(arg) for arg in args):
        print(ONE_PROCESS, file=sys.stderr)
        return int(pytest.ExitCode.USAGE_ERROR)
    return int(pytest.main(command(args)))


if __name__ == "__main__":
    raise SystemExit(main())
