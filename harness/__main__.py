"""``python -m harness <command>`` (or the console script ``celery-harness``): the harness's tools outside pytest.

Each command is a module of its own with ``main(argv) -> int``; ``COMMANDS`` maps a command's name to its
module and a one-line summary. Adding a command is one line there (the module is imported only when its
command runs).
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("harness.up", "bring the broker and the stack up, and show how to drive them by hand"),
    "ctl": ("harness.ctl", "stop, start, kill or redeploy a program of the stack that is up; its status"),
    "down": ("harness.down", "tear down the stack that is up here, leaving nothing behind"),
    "bench": ("harness.bench", "measure how long the harness's parts take"),
    "docs": ("harness.docs", "rewrite docs/scenarios.md, every scenario's story, from the scenarios"),
    "api-docs": ("harness.apidocs", "rewrite docs/api.md, the scenario API's reference, from the docstrings"),
    "lessons": ("harness.lessons", "keep a run's report as the docs site's recorded runs (record); --check them"),
    "deploy-check": ("harness.deploy_check", "will this release break the tasks already in flight? (--prove)"),
    "broker": ("harness.brokers.rabbitmq.warm", "start, stop or show the warm broker that outlives test runs"),
    "audit": (
        "harness.audit.__main__",
        "run the failure catalogue against your app's configuration; fates per failure",
    ),
    "soak": ("harness.soak", "run the suite N times back to back; failures and leftovers per run"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()]
    head = "usage: python -m harness <command> [options]   (<command> --help for its options)"
    return "\n".join([head, "", "commands:", *lines])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    name, *rest = argv
    if name not in COMMANDS:
        print(f"harness: no command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    sys.argv[0] = f"python -m harness {name}"
    return module.main(rest)


if __name__ == "__main__":
    raise SystemExit(main())
