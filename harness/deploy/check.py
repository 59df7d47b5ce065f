"""One deploy check, start to end: read both versions, compare them, prove the verdicts if asked.

Used by the command (``python -m harness.deploy_check``) and by the pytest fixture (``deploy_check``);
both turn their options into ``CheckOptions``. Bad input is found first, in this order, each with one
sentence and before anything slow: the call conventions and examples, then what to compare, then the
git ref, then each version's app (it must import, register tasks, and come from its own tree). The base's
checkout lasts as long as the check (the proof runs its programs there) and is removed after it.
"""

from __future__ import annotations

import difflib
import shutil
import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass
from pathlib import Path

from harness.brokers.base import Broker
from harness.deploy import versions
from harness.deploy.compare import DIRECTIONS, CallPolicy, compare
from harness.deploy.output import Report
from harness.deploy.prove import Examples, prove
from harness.deploy.send import VIAS
from harness.errors import HarnessError

DIRECTION_WORDS = {d.replace("_", "-"): d for d in DIRECTIONS}


@dataclass(frozen=True)
class CheckOptions:
    celery_app: str | None
    base: str | None = None  # a git ref
    base_app: str | None = None  # the base's app path (default: celery_app)
    cwd: str = "."
    calls: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()
    via: str = "apply_async"
    fail_on: tuple[str, ...] = DIRECTIONS
    warn_only: bool = False
    env: tuple[str, ...] = ()  # KEY=VALUE for the proof's programs (what the app reads from its environment)
    base_setup: str | None = None  # a shell command run in the base's checkout before it is read
    named_by: str = "--app"  # where the user named the app, as the errors say it


def directions(text: str) -> tuple[str, ...]:
    """``old-to-new,queued`` → the directions whose breaking changes fail the check."""
    chosen = [word.strip() for word in text.split(",") if word.strip()]
    unknown = [word for word in chosen if word not in DIRECTION_WORDS]
    if unknown or not chosen:
        raise HarnessError(f"--fail-on {text!r}: a comma-separated list of {', '.join(DIRECTION_WORDS)}")
    return tuple(DIRECTION_WORDS[word] for word in chosen)


def environment(pairs: tuple[str, ...]) -> dict[str, str]:
    found = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise HarnessError(f"--env {pair!r}: write KEY=VALUE")
        found[key.strip()] = value
    return found


def unknown_tasks(policy: CallPolicy, examples: Examples, known: set[str]) -> None:
    """A task named by ``--calls TASK=...`` or ``--example TASK=...`` that neither version registers is a
    typo: without this, its convention or values would silently apply to nothing."""
    for flag, names in (("--calls", [task for task, _ in policy.per_task]), ("--example", list(examples.given))):
        for name in names:
            if name in known:
                continue
            close = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.6)
            hint = f"did you mean {' or '.join(close)}?" if close else f"its tasks: {', '.join(sorted(known))}"
            raise HarnessError(f"{flag} names {name}, which is not a task of the app at base or head; {hint}")


BrokerSource = Broker | Callable[[], AbstractContextManager[Broker]]


def check(options: CheckOptions, prove_on: BrokerSource | None = None) -> Report:
    """The report; with ``prove_on`` (a running broker, or a function opening one), proven on a fleet."""
    policy = CallPolicy.parse(options.calls)
    examples = Examples.parse(options.examples)
    env = environment(options.env)
    if options.via not in VIAS:
        raise HarnessError(f"--via {options.via!r} is not one of {', '.join(VIAS)}")
    if not options.celery_app:
        raise HarnessError("the deploy check needs the app: --app proj.celery:app (or the celery_app ini key)")
    base_app = options.base_app or options.celery_app
    if not options.base and base_app == options.celery_app:
        raise HarnessError(
            "nothing to compare: give --base REF (the running release's git ref) or --base-app (another app path)"
        )
    if options.base_setup and not options.base:
        raise HarnessError("--base-setup runs in the base's checkout: give --base REF too")
    if options.base:
        versions.resolve(options.base, options.cwd)  # a ref that names no commit is said before anything slow
    workdir = Path(tempfile.mkdtemp(prefix="harness-deploy-"))
    try:
        with ExitStack() as stack:
            new = versions.working_tree(options.celery_app, options.cwd, options.named_by)
            base_named = "--base-app" if options.base_app else options.named_by
            if options.base:
                base = stack.enter_context(
                    versions.at_ref(base_app, options.base, options.cwd, workdir, new, options.base_setup, base_named)
                )
            else:
                base = versions.same_tree(base_app, options.cwd, base_named)
            unknown_tasks(policy, examples, set(base.tasks) | set(new.tasks))
            comparison = compare(base.info, new.info, policy, options.via)
            report = Report(comparison, base, new, options.fail_on, options.warn_only)
            if prove_on is not None and comparison.messages:
                opened = prove_on() if callable(prove_on) else nullcontext(prove_on)
                with opened as broker:
                    report.proof = prove(comparison, base, new, broker, workdir, examples, options.via, env)
            elif prove_on is not None:
                report.proof_note = "nothing to prove: no task's name, parameters or route changed (no broker started)"
            return report
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
