"""celery beat with django-celery-beat's DatabaseScheduler: the periodic tasks live in the project's database."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.spec import BeatSpec

BEAT = "beat"
EVERY = 1.0
# Written into the database by the scheduler at its start, as django-celery-beat does with a beat_schedule.
RESTOCK = {"restock": {"task": "orders.fulfil", "schedule": EVERY, "args": ["restock"]}}


@pytest.fixture
def stack_spec(stack_spec, tmp_path: Path):
    """The project with a beat on its own scheduler (the database's), on a database of the test's own, migrated."""
    database = tmp_path / "orders.sqlite3"
    env = {**os.environ, "ORDERS_DB": str(database), "DJANGO_SETTINGS_MODULE": "proj.settings"}
    manage = Path(__file__).parent.parent / "manage.py"
    subprocess.run([sys.executable, str(manage), "migrate", "--verbosity", "0"], env=env, check=True)
    return stack_spec.with_env(ORDERS_DB=str(database)).replace(beats=(BeatSpec(BEAT, schedule=RESTOCK),))


def test_the_database_scheduler_misses_the_runs_due_while_beat_is_down_and_sends_one_overdue_run(stack, ledger):
    """beat is down for a few intervals; the database keeps each task's last run, as a kept schedule file would.

    What a user sees: the runs due meanwhile never happen; when beat is back, it sends the overdue one at once
    and goes on from there."""
    ledger.wait_beat_sends(2, timeout=15)
    stack.stop(BEAT)
    ledger.assert_beat_silent(3 * EVERY, "beat is stopped")
    back = ledger.wait_beat_sends(1, since=stack.start(BEAT))[0]

    ready = ledger.beat_steps("beat-ready", BEAT)[-1].t
    assert back.at - ready < EVERY / 2, "the database knew the run was overdue"
    runs = stack.periodic_verdict(back)
    assert runs.count("missed") >= 2, runs
    runs.assert_counts(ran=len(runs.runs) - runs.count("missed"), missed=runs.count("missed"))
