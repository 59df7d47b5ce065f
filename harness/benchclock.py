"""A pytest plugin of ``python -m harness.bench``: how long a run took once its broker was up.

Loaded with ``-p harness.benchclock`` in a pytest run started by the bench, with the environment
variable ``HARNESS_BENCH_CLOCK`` naming a file: at the end of the session it writes there the seconds
from the end of the ``broker`` fixture's set-up (the broker booted and answering) to the end of the run,
its reports written.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

CLOCK = "HARNESS_BENCH_CLOCK"
_broker_up: list[float] = []


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef, request: pytest.FixtureRequest):
    result = yield
    if fixturedef.argname == "broker" and not _broker_up:
        _broker_up.append(time.monotonic())
    return result


@pytest.hookimpl(trylast=True)  # after the run report and the audit's JSON are written
def pytest_sessionfinish(session: pytest.Session) -> None:
    target = os.environ.get(CLOCK)
    if target and _broker_up:
        Path(target).write_text(f"{time.monotonic() - _broker_up[0]:.3f}\n")
