"""``python -m harness.audit [proj.celery:app] [pytest options]``: the resilience audit, one command.

It runs ``pytest --pyargs harness.audit --celery-app proj.celery:app [pytest options]`` (the app may also
come from the ``celery_app`` ini key or ``--harness-stack``), so every pytest and harness option works:
``--audit-like proj.tasks.send_email``, ``--audit-expect lost=0``, ``--junitxml``, ``-k``... Its exit status
is pytest's.

Unlike that bare ``pytest`` line, it runs apart from the project's own test set-up, which is not the
configuration being audited: none of the project's ``conftest.py`` files (a trial's project made its app
eager in one, and the audit's sends never reached a worker), none of its pytest plugins (pytest-django
would switch the process to the project's *test* settings), none of its ini options but the harness's own
keys (``celery_app``, ``harness_broker``, ``audit_like``...), which are carried over. The rootdir stays the
one pytest would choose (the folder of the project's pytest configuration file): the app is imported from
there, and the report lands there, as before.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path

from harness import options


def command(argv: list[str]) -> list[str]:
    """pytest's arguments for the audit: a leading ``module:attribute`` is the Celery app."""
    args = list(argv)
    app = ["--celery-app", args.pop(0)] if args and not args[0].startswith("-") else []
    # The harness is imported before pytest loads it as a plugin: its assertions need no rewriting.
    return ["--pyargs", "harness.audit", *app, "-W", "ignore::pytest.PytestAssertRewriteWarning", *args]


def isolation(ini: Path, folder: Path) -> list[str]:
    """The arguments that keep the project's test set-up out: an ini of the audit's own (``ini``, empty) with
    the project's harness keys carried over, the harness's plugin and the audit's fixtures only (the others
    are not loaded: ``PYTEST_DISABLE_PLUGIN_AUTOLOAD``), the rootdir pytest would choose (the folder of the
    project's pytest configuration file, where the app is imported from), else ``folder``."""
    found = options.ini_table(folder)
    rootdir, keys = (found[0].parent, found[1]) if found is not None else (folder, {})  # as pytest chooses it
    carried = [f"{name}={keys[name]}" for name in options.BY_NAME if name in keys]
    overrides = [arg for pair in carried for arg in ("-o", pair)]
    # No conftest.py at all (pytest reads those of the invocation folder's test* folders whatever the
    # confcutdir), the audit's own loaded as a plugin instead.
    plugins = ["--noconftest", "-p", "harness.plugin", "-p", "harness.audit.conftest"]
    return ["-c", str(ini), "--rootdir", str(rootdir), *plugins, *overrides]


PARALLEL = re.compile(r"^(-n\S*|--numprocesses(=.*)?|--dist(=.*)?)$")
ONE_PROCESS = "harness audit: the audit runs in one process (its table gathers every row); leave out -n"


def main(argv: list[str] | None = None) -> int:
    import pytest

    args = sys.argv[1:] if argv is None else argv
    if any(PARALLEL.match(arg) for arg in args):
        print(ONE_PROCESS, file=sys.stderr)
        return int(pytest.ExitCode.USAGE_ERROR)
    with tempfile.TemporaryDirectory(prefix="harness-audit-") as folder:
        ini = Path(folder) / "pytest.ini"
        ini.write_text("[pytest]\n")
        before = os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD")
        os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
        try:
            return int(pytest.main([*isolation(ini, Path.cwd()), *command(args)]))
        finally:
            if before is None:
                os.environ.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)
            else:
                os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = before


if __name__ == "__main__":
    raise SystemExit(main())
