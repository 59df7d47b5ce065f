"""harness.audit.beat: the app's beat_schedule as the audit's beat rows run it (time compressed), and what they say
when the audit cannot run it."""

from __future__ import annotations

import pytest

from harness.audit.beat import AUDIT_BEAT, MIN_EXPIRES_S, NEW_BEAT, NO_BEAT, beat_plan
from harness.audit.expect import parse
from harness.audit.failures import BY_KEY, select
from harness.audit.plan import make_plan
from harness.audit.results import fates_text
from harness.probe import PROBE_NAME
from harness.spec import BeatSpec, StackSpec, WorkerSpec

CELERY = "celery.beat:PersistentScheduler"
DATABASE = "django_celery_beat.schedulers:DatabaseScheduler"


def entry(task: str = "mail.digest", every: float | None = 60.0, **extra) -> dict:
    """One entry as harness.introspect describes it."""
    described = {"task": task, "every": every, "kind": "interval" if every else "crontab", "schedule": "<freq>",
                 "args": ["daily"], "kwargs": {}, "options": {}, "task_expires": None, "queue": "emails"}  # fmt: skip
    return {**described, **extra}


def info(entries: dict | None = None, scheduler: str = CELERY) -> dict:
    return {
        "default_queue": "celery",
        "tasks": {"mail.digest": {"options": {"queue": "emails"}}, "mail.tidy": {"options": {"queue": "celery"}}},
        "beat": {"scheduler": scheduler, "entries": entries or {}},
    }


def test_an_interval_entry_runs_every_second_with_its_expires_scaled_alike() -> None:
    plan = beat_plan(info({"digest": entry(options={"expires": 30})}))
    assert plan.schedule() == {
        "digest": {"task": PROBE_NAME, "schedule": 1.0, "args": [0.0], "kwargs": {},
                   "options": {"queue": "emails", "expires": 0.5}},
    }  # fmt: skip
    assert plan.notes() == [
        "digest: every 60s ran as every 1s; expires 30s (the entry's options) as 0.5s; the probe in place of "
        "mail.digest, sent to emails"
    ]
    assert plan.facts() == {"expires": {"digest": 30.0}, "every_entry_expires": True, "beat_scheduler": CELERY,
                            "beat_entries": 1}  # fmt: skip


def test_the_tasks_own_expires_counts_and_a_tiny_share_is_floored_and_said() -> None:
    plan = beat_plan(info({"digest": entry(every=86400.0, task_expires=60)}))
    (audited,) = plan.entries
    assert (audited.expires, audited.audit_expires) == (60.0, MIN_EXPIRES_S)
    assert "expires 60s (the task's expires) as 0.25s (its share, shorter, would expire in transit)" in plan.notes()[0]
    assert "every 24h ran as every 1s" in plan.notes()[0]


def test_an_entry_that_routes_itself_keeps_its_routing() -> None:
    plan = beat_plan(info({"digest": entry(options={"exchange": "mail", "routing_key": "digest"})}))
    assert plan.schedule()["digest"]["options"] == {"exchange": "mail", "routing_key": "digest"}


def test_the_real_task_of_audit_task_is_sent_with_the_entrys_own_arguments() -> None:
    entries = {"digest": entry(), "tidy": entry("mail.tidy", 300.0, queue="celery")}
    plan = beat_plan(info(entries), task="mail.tidy")
    assert plan.schedule()["tidy"]["task"] == "mail.tidy" and plan.schedule()["tidy"]["args"] == ["daily"]
    assert plan.schedule()["digest"]["task"] == PROBE_NAME
    assert plan.queues() == ("emails", "celery")
    assert "mail.tidy itself, sent to celery" in plan.notes()[1]


def test_no_beat_schedule_is_not_applicable_but_a_database_scheduler_is_not_judged() -> None:
    assert beat_plan(info()).why_not == NO_BEAT
    database = beat_plan(info(scheduler=DATABASE))
    assert database.why_not is None and "keeps its entries elsewhere (a database)" in database.cannot
    assert "was not read" in beat_plan({"default_queue": "celery"}).cannot


def test_crontab_entries_are_named_and_left_out_with_why() -> None:
    only = beat_plan(info({"nightly": entry(every=None, schedule="<crontab: 0 3 * * *>")}))
    assert only.cannot.startswith("cannot judge: no entry of the app's beat_schedule has an interval schedule")
    assert "nightly (crontab <crontab: 0 3 * * *>): its due times are not evenly spaced" in only.cannot
    mixed = beat_plan(info({"nightly": entry(every=None), "digest": entry()}))
    assert [e.name for e in mixed.entries] == ["digest"] and mixed.cannot is None
    assert mixed.notes()[-1].startswith("not audited: nightly (crontab")


def test_an_expires_that_is_a_moment_cannot_be_scaled() -> None:
    plan = beat_plan(info({"digest": entry(options={"expires": "datetime.datetime(2030, 1, 1, 0, 0)"})}))
    assert "is not a number of seconds" in plan.cannot


def test_two_beats_are_judged_on_celerys_own_schedulers_only() -> None:
    entries = {"digest": entry()}
    assert beat_plan(info(entries)).cannot_judge("beat_two_beats") is None
    other = beat_plan(info(entries, scheduler="redbeat.RedBeatScheduler"))
    assert "depends on the app's beat_scheduler redbeat.RedBeatScheduler" in other.cannot_judge("beat_two_beats")
    assert other.cannot_judge("beat_worker_outage") is None  # its entries run on Celery's own, and the row says so
    assert other.beats()[0].scheduler == CELERY and "only its beat_schedule is audited" in other.notes()[-1]
    assert beat_plan(info(entries, scheduler="celery.beat.PersistentScheduler")).own_scheduler


def test_audit_config_may_give_the_schedule_to_audit_a_change_first() -> None:
    given = {"beat_schedule": {"digest": {"task": "mail.digest", "schedule": 60, "options": {"expires": 30}}}}
    plan = beat_plan(info(), overrides=given)
    assert plan.schedule()["digest"]["options"] == {"expires": 0.5, "queue": "emails"}
    assert beat_plan(info({"digest": entry()}), overrides={"beat_schedule": {}}).why_not == NO_BEAT
    crontab = beat_plan(info(), overrides={"beat_schedule": {"n": {"task": "mail.digest", "schedule": "0 3 * * *"}}})
    assert "its due times are not evenly spaced" in crontab.cannot


def test_the_stack_gets_the_audits_beats_and_a_worker_on_the_entries_queues() -> None:
    plan = beat_plan(info({"digest": entry(), "tidy": entry("mail.tidy", queue="celery")}))
    spec = plan.stack(StackSpec(celery_app="proj:app", workers=(WorkerSpec("worker", queues=("emails",)),)))
    assert [(b.name, b.autostart) for b in spec.beats] == [(AUDIT_BEAT, True), (NEW_BEAT, False)]
    assert spec.beats[0].schedule == plan.schedule() and spec.workers[0].queues == ("emails", "celery")


def test_the_plan_drops_the_stacks_own_beats_and_says_which_rows_do_not_apply() -> None:
    base = StackSpec(celery_app="proj:app", workers=(WorkerSpec("worker"),), beats=(BeatSpec(),))
    assert make_plan(base, info()).spec.beats == ()
    assert make_plan(base, info()).not_for_app() == {"beat_worker_outage": NO_BEAT, "beat_two_beats": NO_BEAT}
    with_beat = make_plan(base, info({"digest": entry()}))
    assert with_beat.not_for_app() == {} and with_beat.cannot_judge("beat_two_beats") is None
    assert with_beat.cannot_judge("worker_killed") is None
    runs, why = select(["beat_worker_outage"], "rabbitmq", make_plan(base, info()).not_for_app())
    assert (runs, why) == ([], {"beat_worker_outage": NO_BEAT})


@pytest.mark.parametrize(
    ("facts", "change"),
    [({"every_entry_expires": False}, "expires in each entry's options"), ({"every_entry_expires": True}, "above")],
)
def test_the_outage_rows_lever_follows_expires(facts: dict, change: str) -> None:
    lever = BY_KEY["beat_worker_outage"].lever(facts)
    assert change in lever.change and lever.shown_by.startswith("scenarios/test_beat.py::")


def test_periodic_fates_in_the_table_and_in_what_a_team_accepts() -> None:
    assert fates_text({"duplicated": 3, "ran": 3}) == "ran 3, duplicated 3"
    assert fates_text({"succeeded": 3, "duplicated": 1}) == "succeeded 3, duplicated 1"
    assert parse("beat_two_beats:duplicated=0, stale=0", ["beat_two_beats"]).exceeded(
        "beat_two_beats", {"ran": 3, "duplicated": 3}
    ) == ["duplicated=3 > 0"]
