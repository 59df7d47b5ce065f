"""``python -m harness.deploy_check``: will this release break the tasks already in flight?

Compares the Celery app's registered tasks at a base (the running release: a git ref, or another app
path of the same tree) with the working tree, task by task, and gives each change a verdict per deploy
direction (old producer → new worker, new producer → old worker, messages already queued) with the
tolerant form that would be safe both ways. ``--prove`` runs the breaking ones on a mixed fleet of
real workers and producers on a real RabbitMQ and reports any verdict the run contradicts.

    python -m harness.deploy_check --app proj.celery:app --base origin/main
    python -m harness.deploy_check --base-app proj.tasks_v1:app --app proj.tasks:app --calls keyword
    python -m harness.deploy_check --app proj.celery:app --base HEAD~1 --prove --harness-broker local

Exit status: 0 nothing breaks, 1 a breaking change (``--warn-only``: 0), 2 bad input (one sentence on
stderr), 3 the proof contradicted a verdict about binding, registration or routing (a bug in the
checker), 4 an internal error (one sentence on stderr, and the file that holds the details), 130
interrupted. Never a traceback. ``--app``, ``--base-setup`` and the broker options read the same ini keys
and environment variables as the pytest plugin (``celery_app``, ``harness_deploy_base_setup``,
``harness_broker``...); the command line wins.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness import options as plugin_options
from harness.brokers.base import Broker
from harness.brokers.select import make_broker
from harness.deploy.check import CheckOptions, check, directions
from harness.deploy.compare import DIRECTIONS
from harness.deploy.send import VIAS
from harness.errors import HarnessError

BAD_INPUT = 2
INTERNAL_ERROR = 4
INTERRUPTED = 130


def setting(args: argparse.Namespace, name: str) -> Any:
    """The command line, then the ini file of the working folder, then the environment, then the default."""
    option = plugin_options.BY_NAME[name]
    value = getattr(args, name, None)
    if value is None:
        value = plugin_options.ini_value(name)
    if value is None and option.env:
        value = os.environ.get(option.env) or None
    return option.default if value is None else option.convert(value)


def parser() -> argparse.ArgumentParser:
    # Run as `python -m harness deploy-check`, the dispatcher names the command in sys.argv[0].
    prog = sys.argv[0] if sys.argv[0].startswith("python -m") else "python -m harness.deploy_check"
    parser = argparse.ArgumentParser(
        prog=prog,
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = parser.add_argument_group("what to compare")
    what.add_argument("--app", "--celery-app", dest="celery_app", help="the Celery app, module:attribute")
    what.add_argument("--base", help="the running release: a git ref (branch, tag, sha, HEAD~1)")
    what.add_argument("--base-app", help="the base's app path, if it differs (alone: compare two apps of this tree)")
    what.add_argument(
        "--base-setup", dest="harness_deploy_base_setup", metavar="CMD",
        help="a shell command run in the base's checkout before it is read, for files git does not track "
        "(ini harness_deploy_base_setup, env HARNESS_DEPLOY_BASE_SETUP)",
    )  # fmt: skip
    how = parser.add_argument_group("how producers call the tasks")
    how.add_argument(
        "--calls", action="append", default=[], metavar="positional|keyword|both|TASK=...",
        help="the call convention producers use (default both: a change that breaks either is breaking); "
        "TASK=convention for one task; repeatable",
    )  # fmt: skip
    how.add_argument(
        "--example", action="append", default=[], metavar="TASK=JSON",
        help='values for --prove\'s messages: proj.tasks.add={"x": 1, "y": 2} or proj.tasks.add=[1, 2]; repeatable',
    )  # fmt: skip
    how.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE",
        help="environment of --prove's workers and producers (what the app reads at import); repeatable",
    )  # fmt: skip
    how.add_argument(
        "--via", choices=VIAS, default="apply_async",
        help="how --prove's producers send: through the task object (apply_async, as delay() does) or by name",
    )  # fmt: skip
    out = parser.add_argument_group("output")
    out.add_argument("--format", choices=("table", "markdown", "json"), default="table", help="what to print")
    out.add_argument("--markdown", type=Path, metavar="FILE", help="also write Markdown (a pull-request comment)")
    out.add_argument("--json", type=Path, metavar="FILE", help="also write JSON")
    out.add_argument(
        "--fail-on", default=",".join(d.replace("_", "-") for d in DIRECTIONS),
        help="directions whose breaking changes fail the check (default all: old-to-new,new-to-old,queued)",
    )  # fmt: skip
    out.add_argument("--warn-only", action="store_true", help="report breaking changes but exit 0")
    proof = parser.add_argument_group("proof on a mixed fleet (the pytest plugin's broker options)")
    proof.add_argument("--prove", action="store_true", help="run each breaking change with real processes")
    for name in plugin_options.BROKER_OPTIONS:  # the plugin's: same names, ini keys, variables and defaults
        option = plugin_options.BY_NAME[name]
        env = f" (ini {name}, env {option.env})" if option.env else f" (ini {name})"
        if option.flag:
            proof.add_argument(option.cli, dest=name, action="store_true", default=None, help=option.help + env)
        else:
            proof.add_argument(option.cli, dest=name, default=None, choices=option.choices, help=option.help + env)
    return parser


def proof_broker_words(broker: Broker) -> str:
    """What the proof does about its broker: a url broker is only used (the harness starts nothing)."""
    if broker.kind == "url":
        return f"using the url broker at {broker.endpoint.redacted()} for the proof"
    return f"starting the {broker.kind} broker for the proof"


@contextmanager
def broker_from(args: argparse.Namespace, work_root: str) -> Iterator[Broker]:
    chosen = plugin_options.broker_options_with(lambda name: setting(args, name), work_root)
    broker = make_broker(chosen)
    try:
        print(f"deploy-check: {proof_broker_words(broker)}", file=sys.stderr, flush=True)
        broker.start()
        yield broker
    finally:
        broker.close()


def run(args: argparse.Namespace) -> int:
    options = CheckOptions(
        celery_app=args.celery_app or setting(args, "celery_app"),
        base=args.base,
        base_app=args.base_app,
        cwd=os.getcwd(),
        calls=tuple(args.calls),
        examples=tuple(args.example),
        via=args.via,
        fail_on=directions(args.fail_on),
        warn_only=args.warn_only,
        env=tuple(args.env),
        base_setup=setting(args, "harness_deploy_base_setup"),
        named_by="--app" if args.celery_app else "the celery_app setting (ini or HARNESS_CELERY_APP)",
    )
    with tempfile.TemporaryDirectory(prefix="harness-deploy-broker-") as work_root:
        report = check(options, (lambda: broker_from(args, work_root)) if args.prove else None)
    rendered = {"table": report.table, "markdown": report.markdown}
    if args.markdown:
        args.markdown.write_text(report.markdown())
    if args.json:
        args.json.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    text = json.dumps(report.to_json(), indent=2) if args.format == "json" else rendered[args.format]()
    try:
        print(text, flush=True)
    except BrokenPipeError:  # `| head` closed the pipe: the reader has what it wanted; the status still holds
        quiet_stdout()
    return report.exit_status


def quiet_stdout() -> None:
    """Standard output to /dev/null: Python flushes it at exit, which would raise again into a closed pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def internal_error(error: BaseException) -> int:
    """One sentence, and the traceback in a file for a bug report: a crash never exits 1, the code of a
    breaking change, and never prints a traceback a CI log would bury the verdict under."""
    with tempfile.NamedTemporaryFile("w", prefix="harness-deploy-check-error-", suffix=".txt", delete=False) as f:
        traceback.print_exception(type(error), error, error.__traceback__, file=f)
    why = f"{type(error).__name__}: {error}".splitlines()[0]
    print(f"deploy-check: internal error ({why}); the details are in {f.name}", file=sys.stderr)
    return INTERNAL_ERROR


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return run(args)
    except HarnessError as error:
        print(f"deploy-check: {error}", file=sys.stderr)
        return BAD_INPUT
    except KeyboardInterrupt:  # the context managers have stopped whatever the proof started
        print("deploy-check: interrupted; everything it started is stopped and removed", file=sys.stderr)
        return INTERRUPTED
    except Exception as error:
        return internal_error(error)


if __name__ == "__main__":
    raise SystemExit(main())
