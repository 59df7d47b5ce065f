"""The deploy check in pytest: the ``deploy_check`` fixture (registered by the plugin).

``deploy_check(base=..., ...)`` runs the check from the pytest rootdir and returns its report
(``harness.deploy.output.Report``): ``report.assert_safe()`` fails the test with the table when a change
breaks a direction (or the proof contradicts a verdict), ``report.markdown()`` is the pull-request
comment. Defaults come from the plugin's options: the app from ``--celery-app``, the base from
``--harness-deploy-base``, the call convention from ``--harness-deploy-calls``, and ``--harness-deploy-prove``
proves the verdicts on the session's broker (``--harness-broker ...``). ``harness.deploy_check_test`` is a
ready-made test module that does exactly that.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from harness import options
from harness.fixtures import attempt

if TYPE_CHECKING:
    from harness.deploy.output import Report

# The check's machinery (about 0.15 s of imports) is loaded when the fixture is used, not by every pytest run.


@pytest.fixture
def deploy_check(pytestconfig: pytest.Config, request: pytest.FixtureRequest) -> Callable[..., Report]:
    """``deploy_check(base="origin/main", celery_app=None, base_app=None, calls=None, examples=(),
    prove=None, via="apply_async", env=(), fail_on=all directions, cwd=None, base_setup=None)``: the report of the
    deploy check (``cwd``: the folder the app imports from, in its git repository; default the rootdir;
    ``base_setup``: a shell command run in the base's checkout before it is read, default the
    ``harness_deploy_base_setup`` ini key)."""

    def run(
        base: str | None = None,
        celery_app: str | None = None,
        base_app: str | None = None,
        calls: str | Iterable[str] | None = None,
        examples: Iterable[str] = (),
        prove: bool | None = None,
        via: str = "apply_async",
        env: Iterable[str] = (),
        fail_on: Iterable[str] | None = None,
        cwd: str | Path | None = None,
        base_setup: str | None = None,
    ) -> Report:
        from harness.deploy.check import CheckOptions, check
        from harness.deploy.compare import DIRECTIONS

        if calls is None:
            calls = options.get(pytestconfig, "harness_deploy_calls")
        chosen = CheckOptions(
            celery_app=celery_app or options.get(pytestconfig, "celery_app"),
            base=base or options.get(pytestconfig, "harness_deploy_base"),
            base_app=base_app,
            cwd=str(cwd or pytestconfig.rootpath),
            calls=(calls,) if isinstance(calls, str) else tuple(calls),
            examples=tuple(examples),
            via=via,
            env=tuple(env),
            fail_on=tuple(DIRECTIONS if fail_on is None else fail_on),
            base_setup=base_setup or options.get(pytestconfig, "harness_deploy_base_setup"),
            named_by="--celery-app" if celery_app is None else "deploy_check(celery_app=...)",
        )
        proving = options.get(pytestconfig, "harness_deploy_prove") if prove is None else prove
        broker = request.getfixturevalue("broker") if proving else None
        return attempt(lambda: check(chosen, broker))

    return run
