"""The deploy check as a CI test: ``pytest --pyargs harness.deploy_check_test --celery-app proj.celery:app
--harness-deploy-base origin/main`` (add ``--harness-deploy-calls keyword`` if producers call with keywords,
``--harness-deploy-prove --harness-broker local`` to prove the verdicts on a mixed fleet). It fails, with
the table, when the release breaks a task in any deploy direction.
"""

from __future__ import annotations

import pytest


def test_the_release_breaks_no_task_in_flight(deploy_check):
    """Old producers and new workers, new producers and old workers, and the messages already queued:
    every task keeps running whichever side is deployed first."""
    problem = deploy_check().problem()
    if problem:
        pytest.fail(problem, pytrace=False)  # the table says it all: no traceback
