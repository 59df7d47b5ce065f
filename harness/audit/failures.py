"""The audit's failures, what decides each one's outcome, and what would change it. Pure data and logic.

Each failure of the audit is a ``Failure``: a title, the facts that decide its outcome (``decided_by``:
keys of the ``facts`` the audit gathers about the app as its worker ran it, its queue and its broker),
the catalogue scenarios whose arrangement and settings it repeats (``matches``: the audit's figures for
that failure equal theirs when the facts agree), and its levers: the setting that would change the
outcome under the current facts, with the catalogue scenario that shows the other outcome.

The catalogue scenarios are named by their node id in this project's ``scenarios/`` folder (a test
checks that each one exists); the audit itself never runs them. A pip-installed harness has no
``scenarios/`` folder, so the table shows each one as ``reference``: its name and its section of the
harness repository's ``docs/scenarios.md``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.audit.beat import OUTAGE_RUNS, OVERLAP_RUNS
from harness.brokers import TRANSPORTS
from harness.brokers.redis.settings import visibility

CATALOGUE = "scenarios"


def scenario(path: str, name: str) -> str:
    return f"{CATALOGUE}/{path}::{name}"


def reference(nodeid: str) -> str:
    """A catalogue scenario as a user without the harness's repository can find it: its name, and the anchor
    of its section in ``docs/scenarios.md`` (the heading ``harness.docs`` writes from the name)."""
    path, _, name = nodeid.rpartition("::")
    if path.count("/") > 1:  # a family's own story (scenarios/redis/...): not in docs/scenarios.md
        return f"{name} (story in the harness repository: {path})"
    anchor = name.removeprefix("test_").replace("_", "-")
    return f"{name} (catalogue scenario in the harness repository: docs/scenarios.md#{anchor})"


KILLED = "test_worker_killed.py"
SHUTDOWN = "test_worker_shutdown.py"
RESTART = "test_broker_restart.py"
KILLED_EARLY = scenario(KILLED, "test_worker_killed_with_early_ack_loses_the_running_task")
KILLED_LATE = scenario(KILLED, "test_worker_killed_with_acks_late_reruns_the_running_task")
POOL_EARLY = scenario(KILLED, "test_pool_process_killed_with_early_ack_fails_the_running_task")
POOL_REJECT = scenario(KILLED, "test_pool_process_killed_with_reject_on_worker_lost_reruns_the_task")
WARM = scenario(SHUTDOWN, "test_warm_shutdown_finishes_the_running_task_and_requeues_the_rest")
GROUP_STOP = scenario(SHUTDOWN, "test_supervisorctl_stop_with_stopasgroup_kills_the_running_task")
COLD = scenario(SHUTDOWN, "test_cold_shutdown_cancels_the_running_task_and_it_is_lost")
OUTAGE = scenario("test_worker_outage.py", "test_worker_outage_tasks_wait_in_the_queue_and_all_run_once_after_restart")
PERSISTENT = scenario(RESTART, "test_broker_restart_keeps_a_persistent_backlog_and_every_task_runs_once")
TRANSIENT = scenario(RESTART, "test_broker_restart_drops_transient_messages")
IN_FLIGHT_LATE = scenario(RESTART, "test_broker_restart_with_acks_late_runs_the_in_flight_task_twice")
PUBLISH_DOWN = scenario(
    "test_publish_while_broker_down.py", "test_clicks_while_the_broker_is_down_fail_fast_and_clearly_then_work_again"
)
CONSUMER_TIMEOUT = scenario(
    "test_consumer_timeout.py", "test_a_task_longer_than_the_consumer_timeout_crashes_the_worker_and_runs_again"
)
BAD_DROPPED = scenario("test_bad_messages.py", "test_bad_messages_are_dropped_and_the_worker_keeps_serving")
BAD_KEPT = scenario("test_bad_messages.py", "test_with_a_dead_letter_exchange_the_refused_message_is_kept")
REDIS_OUTAGE = scenario(
    "redis/test_worker_faults_on_redis.py", "test_worker_outage_on_redis_tasks_wait_in_the_list_and_all_run_once"
)
REDIS_KILLED_EARLY = scenario(
    "redis/test_worker_faults_on_redis.py",
    "test_worker_killed_on_redis_prefetched_tasks_wait_for_the_visibility_timeout",
)
REDIS_KILLED_LATE = scenario(
    "redis/test_worker_faults_on_redis.py",
    "test_worker_killed_on_redis_with_acks_late_reruns_the_task_after_the_visibility_timeout",
)
REDIS_CRASH = scenario(
    "redis/test_redis_restart.py", "test_redis_crash_with_a_backlog_keeps_what_its_persistence_wrote"
)
REDIS_DOWN = scenario(
    "redis/test_redis_unavailable.py", "test_clicks_while_redis_is_down_fail_fast_and_clearly_then_work_again"
)
BEAT_STALE = scenario(
    "test_beat.py", "test_a_worker_down_while_beat_fires_runs_the_pile_at_once_unless_the_runs_expire"
)
TWO_BEATS = scenario("test_beat.py", "test_two_beats_during_a_deploy_send_every_periodic_task_twice")


@dataclass(frozen=True)
class Setting:
    """One setting a lever asks for: the fact holding its current value, and how the user writes it."""

    fact: str
    value: Any
    text: str


@dataclass(frozen=True)
class Lever:
    """What would change the outcome, under the facts in ``when`` (all must hold; empty: always).

    ``needs``: the settings the change takes together; ``change_for`` names only those not already as
    asked, then ``change`` (an alternative, or the whole change when ``needs`` is empty)."""

    change: str
    effect: str
    shown_by: str | None = None  # the catalogue scenario showing the outcome after the change
    when: Mapping[str, Any] = field(default_factory=dict)
    needs: tuple[Setting, ...] = ()

    def applies(self, facts: Mapping[str, Any]) -> bool:
        return all(facts.get(key) == value for key, value in self.when.items())

    def change_for(self, facts: Mapping[str, Any]) -> str:
        if not self.needs:
            return self.change
        missing = [s.text for s in self.needs if facts.get(s.fact) != s.value] or [s.text for s in self.needs]
        needed = " and ".join(missing)
        return f"{needed} ({self.change})" if self.change else needed


@dataclass(frozen=True)
class Match:
    """A catalogue scenario with the same arrangement, whose figures the audit's equal when ``when`` holds."""

    scenario: str
    when: Mapping[str, Any] = field(default_factory=dict)

    def applies(self, facts: Mapping[str, Any]) -> bool:
        return all(facts.get(key) == value for key, value in self.when.items())


@dataclass(frozen=True)
class OnTransport:
    """What a failure is on one broker family other than RabbitMQ (the catalogue's): each field given replaces the
    RabbitMQ one. ``matches`` never carry over (a RabbitMQ scenario's figures say nothing of Redis); ``settings``
    are Celery settings the audit runs the failure with on that family (``broker_transport_options`` merged over
    the app's own); ``notes`` are said on the row (formatted with the facts); ``differs`` is what changes against
    RabbitMQ ("on RabbitMQ: ..."); ``persistence``: the server's persistence decides the outcome, and the audit
    sets it from ``--audit-redis-persistence``."""

    what: str | None = None
    decided_by: tuple[str, ...] | None = None
    levers: tuple[Lever, ...] | None = None
    matches: tuple[Match, ...] = ()
    settings: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    differs: str | None = None
    persistence: bool = False


@dataclass(frozen=True)
class Failure:
    key: str
    title: str
    what: str  # what the audit does, in one sentence
    decided_by: tuple[str, ...]
    levers: tuple[Lever, ...] = ()
    matches: tuple[Match, ...] = ()
    # The broker families it applies to; for each other one, why not (the table says it, never drops the row).
    transports: tuple[str, ...] = TRANSPORTS
    not_on: Mapping[str, str] = field(default_factory=dict)
    on: Mapping[str, OnTransport] = field(default_factory=dict)  # what it is on a family other than RabbitMQ
    transport: str = "rabbitmq"  # the family this definition describes (``on_transport`` sets it)
    settings: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    differs: str | None = None
    persistence: bool = False
    # A row of the app's periodic tasks (its beat_schedule): its fates are verdict.periodic's (ran, stale...), and
    # an app with no beat_schedule makes it not applicable (``harness.audit.beat``).
    periodic: bool = False

    def why_not(self, transport: str) -> str | None:
        """None if the failure applies on ``transport``; else why not, in the row's words."""
        if transport in self.transports:
            return None
        return self.not_on.get(transport) or f"{self.title} is not a {transport} failure"

    def on_transport(self, transport: str) -> Failure:
        """The failure as the audit runs and judges it on ``transport``."""
        if transport == self.transport:
            return self
        variant = self.on.get(transport, OnTransport())
        return dataclasses.replace(
            self, transport=transport, what=variant.what or self.what,
            decided_by=self.decided_by if variant.decided_by is None else variant.decided_by,
            levers=self.levers if variant.levers is None else variant.levers, matches=variant.matches,
            settings=variant.settings, notes=variant.notes, differs=variant.differs, persistence=variant.persistence,
        )  # fmt: skip

    def noted(self, facts: Mapping[str, Any]) -> list[str]:
        """The row's own notes on this family, with the facts filled in."""
        return [note.format_map(_Facts(facts)) for note in self.notes]

    def lever(self, facts: Mapping[str, Any]) -> Lever | None:
        return next((lever for lever in self.levers if lever.applies(facts)), None)

    def same_as(self, facts: Mapping[str, Any]) -> str | None:
        return next((match.scenario for match in self.matches if match.applies(facts)), None)

    def deciding(self, facts: Mapping[str, Any]) -> dict[str, Any]:
        return {key: facts.get(key) for key in self.decided_by}


# The catalogue's mid-task scenarios keep one worker process busy with three tasks prefetched behind it.
HELD_4 = {"worker_prefetch_multiplier": 4, "concurrency": 1}
EARLY = {"acks_late": False}
LATE = {"acks_late": True}
LATE_REJECT = {"acks_late": True, "reject_on_worker_lost": True}
IDEMPOTENT = "make the task safe to run twice (idempotent)"
# On Redis a message a dead worker held comes back only after visibility_timeout (an hour by default): the rows
# that wait for it run with this one instead, and say what the app's own value means.
AUDIT_VISIBILITY_S = 4
SHORT_VISIBILITY = {"broker_transport_options": visibility(AUDIT_VISIBILITY_S)}
VISIBILITY_NOTE = (
    "the messages the killed worker held unacknowledged (the prefetched ones, and the running one with acks_late) "
    "came back only once visibility_timeout passed, shortened to {visibility_timeout_audit}s for the audit: with the "
    "app's own value ({visibility_from}) they come back after {visibility_timeout}s"
)
PERSISTENCE_NOTE = (
    "Redis ran with persistence {persistence} (--audit-redis-persistence: off, rdb, aof-everysec, aof-always); off "
    "keeps nothing across a crash, as a redis-server whose last snapshot predates the backlog; appendonly yes "
    "(aof-everysec) keeps the backlog"
)
NO_CONSUMER_TIMEOUT = "RabbitMQ's consumer_timeout; Redis has visibility_timeout instead"

FAILURES: tuple[Failure, ...] = (
    Failure(
        "worker_outage",
        "worker outage and drain",
        "the worker is stopped while tasks are sent, then started again",
        ("queue", "queue_durable", "message_ttl", "max_length"),
        (
            Lever(
                "x-message-ttl or x-max-length on the queue",
                "tasks waiting out a long outage expire or overflow instead of running late",
                OUTAGE,
                {"message_ttl": None, "max_length": None},
            ),
            Lever(
                "remove the queue's x-message-ttl / x-max-length", "waiting tasks run once the worker is back", OUTAGE
            ),
        ),
        (Match(OUTAGE, {"message_ttl": None, "max_length": None}),),
        on={
            "redis": OnTransport(
                decided_by=("queue",),
                levers=(
                    Lever(
                        "appendonly yes on the Redis server",
                        "the tasks waiting out the outage in a Redis list also survive a Redis crash meanwhile",
                        REDIS_CRASH,
                    ),
                ),
                matches=(Match(REDIS_OUTAGE),),
            )
        },
    ),
    Failure(
        "worker_killed",
        "worker killed mid-task",
        "SIGKILL to every process of the worker while a task runs (the machine died), then a restart",
        ("acks_late", "worker_prefetch_multiplier"),
        (
            Lever(
                "task_acks_late = True",
                "the running task's message is redelivered: it runs again instead of never",
                KILLED_LATE,
                EARLY,
            ),
            Lever(
                f"{IDEMPOTENT}, or task_acks_late = False",
                "with early acknowledgement the running task would be lost instead of run twice",
                KILLED_EARLY,
                LATE,
            ),
        ),
        # A killed worker's connection dies with it: reject_on_worker_lost plays no part.
        (Match(KILLED_EARLY, {**EARLY, **HELD_4}), Match(KILLED_LATE, {**LATE, **HELD_4})),
        on={
            "redis": OnTransport(
                decided_by=("acks_late", "worker_prefetch_multiplier", "visibility_timeout"),
                levers=(
                    Lever(
                        "task_acks_late = True",
                        "the running task's message stays in Redis's unacked hash and runs again once "
                        "visibility_timeout passes, instead of never",
                        REDIS_KILLED_LATE,
                        EARLY,
                    ),
                    Lever(
                        f"{IDEMPOTENT}, and a visibility_timeout you can wait for (broker_transport_options)",
                        "the running task runs again, but only after visibility_timeout; with task_acks_late = False "
                        "it would be lost instead",
                        REDIS_KILLED_EARLY,
                        LATE,
                    ),
                ),
                settings=SHORT_VISIBILITY,
                notes=(VISIBILITY_NOTE,),
                differs="on RabbitMQ: the held messages are redelivered as soon as the worker's connection drops, "
                "not after visibility_timeout",
            )
        },
    ),
    Failure(
        "pool_process_killed",
        "pool process OOM-killed",
        "SIGKILL to the pool process running a task (the kernel's OOM killer); the worker survives",
        ("acks_late", "reject_on_worker_lost", "retry_on_worker_lost"),
        (
            Lever(
                f"{IDEMPOTENT}, or task_reject_on_worker_lost = False",
                "without reject_on_worker_lost the task fails with WorkerLostError instead of running twice",
                POOL_EARLY,
                LATE_REJECT,
            ),
            Lever(
                "or task_retry_on_worker_lost = True",
                "the lost task is requeued and runs again instead of failing with WorkerLostError",
                POOL_REJECT,
                needs=(
                    Setting("acks_late", True, "task_acks_late = True"),
                    Setting("reject_on_worker_lost", True, "task_reject_on_worker_lost = True"),
                ),
            ),
        ),
        (
            Match(POOL_EARLY, {**EARLY, "retry_on_worker_lost": False, **HELD_4}),
            Match(POOL_REJECT, {**LATE_REJECT, "retry_on_worker_lost": False, **HELD_4}),
        ),
    ),
    Failure(
        "warm_shutdown",
        "warm shutdown",
        "SIGTERM to the worker's main process while a task runs (Celery's warm shutdown), then a restart",
        ("acks_late", "worker_prefetch_multiplier"),
        (
            Lever(
                "a process manager stop timeout shorter than the longest task",
                "the running task is killed mid-way (supervisord stopwaitsecs, Kubernetes "
                "terminationGracePeriodSeconds): keep the timeout above it",
                GROUP_STOP,
            ),
        ),
        (Match(WARM, {**EARLY, **HELD_4}),),
    ),
    Failure(
        "supervisorctl_stop",
        "supervisorctl stop (group stop)",
        "supervisorctl stop with stopasgroup=true while a task runs: SIGTERM to the pool processes too",
        ("stopasgroup", "acks_late", "reject_on_worker_lost"),
        (
            Lever(
                f"{IDEMPOTENT}, or signal the main process only",
                "with stopasgroup=false (killasgroup=true) the worker shuts down warmly and the task finishes once",
                WARM,
                LATE_REJECT,
            ),
            Lever(
                "stopasgroup=false, killasgroup=true (TERM to the main process only)",
                "a warm shutdown: the running task finishes before the worker exits",
                WARM,
            ),
        ),
        (Match(GROUP_STOP, {**EARLY, **HELD_4}),),
    ),
    Failure(
        "cold_shutdown",
        "cold shutdown",
        "SIGQUIT to the worker's main process while a task runs (Celery's cold shutdown), then a restart",
        ("acks_late", "worker_soft_shutdown_timeout"),
        (
            Lever(
                "task_acks_late = True, or worker_soft_shutdown_timeout > 0 (Celery 5.5+)",
                "the running task's message is requeued (or the task gets time to finish) instead of lost",
                None,
                EARLY,
            ),
            Lever(
                f"{IDEMPOTENT}, or task_acks_late = False",
                "with early acknowledgement the cancelled task is lost instead of run again",
                COLD,
            ),
        ),
        (Match(COLD, {**EARLY, "worker_soft_shutdown_timeout": 0.0, **HELD_4}),),
    ),
    Failure(
        "broker_restart_backlog",
        "broker restart with a backlog",
        "RabbitMQ stops and starts again (same data) while tasks wait in the queue",
        ("delivery_mode", "queue_durable", "queue_type"),
        (
            Lever(
                'task_default_delivery_mode = "persistent" (Celery\'s default), on a durable queue',
                "the waiting tasks survive the restart instead of vanishing",
                PERSISTENT,
                {"delivery_mode": "transient"},
            ),
            Lever(
                'task_default_delivery_mode = "transient", or a queue that is not durable',
                "every waiting task vanishes with the restart",
                TRANSIENT,
            ),
        ),
        (
            Match(PERSISTENT, {"delivery_mode": "persistent", "queue_durable": True}),
            Match(TRANSIENT, {"delivery_mode": "transient"}),
        ),
        on={
            "redis": OnTransport(
                what="Redis crashes (SIGKILL) and starts again, with the persistence the audit was given, while "
                "tasks wait in the queue",
                decided_by=("persistence",),
                levers=(
                    Lever(
                        "appendonly yes on the Redis server (the audit: --audit-redis-persistence aof-everysec)",
                        "the waiting tasks survive a crash instead of vanishing",
                        REDIS_CRASH,
                        {"persistence": "off"},
                    ),
                    Lever(
                        "appendonly yes instead of snapshots only",
                        "a crash loses every task sent after the last snapshot; with an append-only file none",
                        REDIS_CRASH,
                        {"persistence": "rdb"},
                    ),
                    Lever(
                        "keep appendonly yes on the Redis server",
                        "without it (or with snapshots only) a crash loses the waiting tasks",
                        REDIS_CRASH,
                    ),
                ),
                notes=(PERSISTENCE_NOTE,),
                differs="on RabbitMQ: persistent messages on a durable queue (Celery's defaults) survive a restart; "
                "on Redis only the server's persistence keeps them, whatever Celery's settings",
                persistence=True,
            )
        },
    ),
    Failure(
        "broker_restart_in_flight",
        "broker restart with a task running",
        "the same restart while the worker runs a task; the worker reconnects by itself",
        ("acks_late", "delivery_mode"),
        (
            Lever(
                f"{IDEMPOTENT}, or task_acks_late = False",
                "the acknowledgement is lost with the connection and the task runs again after the restart",
                IN_FLIGHT_LATE,
                LATE,
            ),
            Lever(
                "task_acks_late = True",
                "the running task runs twice: its acknowledgement has nowhere to go while the broker is away",
                IN_FLIGHT_LATE,
            ),
        ),
        (Match(IN_FLIGHT_LATE, {**LATE, "delivery_mode": "persistent"}),),
        on={
            "redis": OnTransport(
                decided_by=("acks_late", "persistence"),
                levers=(
                    Lever(
                        f"{IDEMPOTENT}, or task_acks_late = False",
                        "with persistence, the running task's message kept in Redis's unacked hash across the crash "
                        "runs again after visibility_timeout",
                        None,
                        LATE,
                    ),
                    Lever(
                        "task_acks_late = True and appendonly yes",
                        "the running task's message would be kept across a crash and run again after "
                        "visibility_timeout, instead of lost if the task did not finish",
                        None,
                    ),
                ),
                differs="on RabbitMQ: with task_acks_late the running task runs again right after the restart",
                persistence=True,
            )
        },
    ),
    Failure(
        "publish_while_broker_down",
        "publishing while the broker is down",
        "tasks are sent through the app while RabbitMQ is down, then again once it is back",
        ("task_publish_retry", "task_publish_retry_policy", "broker_connection_timeout"),
        (
            Lever(
                "task_publish_retry_policy (max_retries, intervals) and broker_connection_timeout",
                "bound how long a send waits before the app hears the error; catch it and tell the user",
                PUBLISH_DOWN,
            ),
        ),
        (Match(PUBLISH_DOWN),),
        on={
            "redis": OnTransport(
                what="tasks are sent through the app while Redis is down, then again once it is back",
                matches=(Match(REDIS_DOWN),),
                persistence=True,
            )
        },
    ),
    Failure(
        "consumer_timeout",
        "a task past the broker's consumer timeout",
        "one task runs longer than the broker's consumer_timeout (shortened for the audit)",
        ("acks_late", "consumer_timeout"),
        (
            Lever(
                "consumer_timeout above the longest task (rabbitmq.conf), or task_acks_late = False",
                "the broker closes the worker's channel: the worker exits and the task runs again, in a loop",
                CONSUMER_TIMEOUT,
                LATE,
            ),
            Lever(
                "task_acks_late = True",
                "the task's own delivery stays unacknowledged past the timeout: it runs again and the worker "
                "exits each time",
                CONSUMER_TIMEOUT,
            ),
        ),
        (Match(CONSUMER_TIMEOUT, LATE),),
        transports=("rabbitmq",),
        not_on={"redis": NO_CONSUMER_TIMEOUT},
    ),
    Failure(
        "consumer_timeout_behind",
        "a task sent behind it",
        "a second task is sent right behind the long one (prefetched by the worker if its prefetch allows)",
        ("acks_late", "worker_prefetch_multiplier", "concurrency", "consumer_timeout", "prefetched_behind"),
        (
            Lever(
                "consumer_timeout above the longest task plus its wait, or long tasks on a worker of their own",
                "a prefetched delivery also counts: the worker's channel is closed even with early "
                "acknowledgement, and the worker exits",
                None,
                {"prefetched_behind": True},
            ),
            Lever(
                "long tasks on a worker of their own, or consumer_timeout above the longest task",
                "nothing was prefetched, so the timeout did not count its delivery; but it waits in the queue "
                "for as long as the long task holds the worker",
                None,
            ),
        ),
        transports=("rabbitmq",),
        not_on={"redis": NO_CONSUMER_TIMEOUT},
    ),
    Failure(
        "bad_message",
        "a bad message on the app's queue",
        "an undecodable message and one in a content type the worker refuses, before good ones",
        ("accept_content", "dead_letter_exchange"),
        (
            Lever(
                'accept_content = ["json"] (and task_serializer = "json")',
                "the pickled message from a foreign producer ran on the worker: whoever can publish to the broker "
                "can run code there; with JSON only it is refused",
                None,
                {"accepts_pickle": True},
            ),
            Lever(
                "a dead-letter exchange on the queue (x-dead-letter-exchange, or a policy)",
                "the refused message is kept for inspection instead of dropped (the undecodable one is "
                "acknowledged and gone either way)",
                BAD_KEPT,
                {"dead_letter_exchange": None},
            ),
        ),
        (Match(BAD_DROPPED, {"dead_letter_exchange": None, "accepts_pickle": False}),),
        on={
            "redis": OnTransport(
                decided_by=("accept_content",),
                levers=(
                    Lever(
                        'accept_content = ["json"] (and task_serializer = "json")',
                        "the pickled message from a foreign producer ran on the worker: whoever can write to Redis "
                        "can run code there; with JSON only it is refused",
                        None,
                        {"accepts_pickle": True},
                    ),
                    Lever(
                        "keep refused messages yourself (a task_rejected signal handler): Redis has no dead-lettering",
                        "the refused message is dropped; nothing keeps it for inspection",
                        None,
                    ),
                ),
                differs="on RabbitMQ: a dead-letter exchange on the queue keeps the refused message",
            )
        },
    ),
    Failure(
        "beat_worker_outage",
        "periodic tasks behind a stopped worker",
        f"the app's interval entries run every second (time compressed); the worker is stopped while beat sends "
        f"{OUTAGE_RUNS} runs of each, then started again",
        ("expires",),
        (
            Lever(
                "expires in each entry's options (shorter than the interval; or the task's own expires)",
                "a run that comes too late is dropped instead of run stale (on RabbitMQ the broker drops it at its "
                "TTL): no burst of overdue runs when the worker is back",
                BEAT_STALE,
                {"every_entry_expires": False},
            ),
            Lever(
                "expires above the longest worker outage you expect, or none, and a task that covers the time since "
                "its last successful run",
                "the runs sent while the worker was down would run, late, in a burst when it is back; with expires "
                "they are dropped, and nothing runs for those intervals",
                BEAT_STALE,
            ),
        ),
        periodic=True,
    ),
    Failure(
        "beat_two_beats",
        "two beats at once (a deploy)",
        f"a second beat starts while the first runs (a rolling deploy) and sends {OVERLAP_RUNS} runs of each entry "
        "before the first stops",
        ("beat_scheduler",),
        (
            Lever(
                "run exactly one beat: stop the old one before the new starts (Kubernetes strategy Recreate, "
                "replicas: 1), or a scheduler with a lock (celery-redbeat); or make the task safe to run twice",
                "while two beats run, every due run is sent twice, under two task ids, and runs twice",
                TWO_BEATS,
            ),
        ),
        periodic=True,
    ),
)
BY_KEY = {failure.key: failure for failure in FAILURES}


class _Facts(dict):
    """Facts for a note's ``{placeholders}``: an unknown one reads "unknown", never a KeyError."""

    def __missing__(self, key: str) -> str:
        return "unknown"


def select(
    keys: Iterable[str], transport: str, for_app: Mapping[str, str] | None = None
) -> tuple[list[Failure], dict[str, str]]:
    """Of the failures ``keys`` (a scenario's ``@pytest.mark.audit``), those that apply on ``transport`` as the
    audit runs them there, and why each other one does not (its family, else ``for_app``: failure key -> why it
    does not apply to this app, e.g. a beat row for an app without a beat_schedule)."""
    runs, not_applicable = [], {}
    for key in keys:
        failure = BY_KEY[key]
        why = failure.why_not(transport) or (for_app or {}).get(key)
        if why is None:
            runs.append(failure.on_transport(transport))
        else:
            not_applicable[key] = why
    return runs, not_applicable


def row_settings(failures: Iterable[Failure], own_transport_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The Celery settings a scenario runs with for its ``failures`` (each one's ``settings`` on its family), with
    ``broker_transport_options`` merged over the app's own (its key prefix, its other options stay)."""
    merged: dict[str, Any] = {}
    for failure in failures:
        for key, value in failure.settings.items():
            if key == "broker_transport_options":
                base = merged.get(key, dict(own_transport_options or {}))
                merged[key] = {**base, **value}
            else:
                merged[key] = value
    return merged


KOMBU_VISIBILITY_S = 3600  # kombu's Redis visibility_timeout when broker_transport_options sets none


def visibility_of(transport_options: Mapping[str, Any] | None) -> tuple[float | int, str]:
    """The app's Redis ``visibility_timeout`` and where it comes from."""
    value = (transport_options or {}).get("visibility_timeout")
    if value is None:
        return KOMBU_VISIBILITY_S, "kombu's default; broker_transport_options sets none"
    seconds = float(value)
    return (int(seconds) if seconds.is_integer() else seconds), "the app's broker_transport_options"


def prefetches_behind(facts: Mapping[str, Any]) -> bool:
    """Whether the worker's settings let it take a second task while one long task runs and not start it:
    one pool process (a second would run it), and a prefetch window (concurrency x multiplier, 0 for none)
    with room beside the long task's delivery, which holds a slot until its late acknowledgement."""
    concurrency = int(facts.get("concurrency") or 1)
    multiplier = int(facts.get("worker_prefetch_multiplier") or 0)
    if concurrency > 1:
        return False
    held_by_long = 1 if facts.get("acks_late") else 0
    return multiplier == 0 or multiplier * concurrency - held_by_long >= 1


def behind_note(facts: Mapping[str, Any], prefetched: bool) -> str:
    """What the row of the task behind says about its delivery: what was observed, and whether the worker's
    settings imply it."""
    window = (
        f"worker_prefetch_multiplier={facts.get('worker_prefetch_multiplier')} x concurrency "
        f"{facts.get('concurrency')}, acks_late={facts.get('acks_late')}"
    )
    expected = prefetches_behind(facts)
    if prefetched:
        said = "the worker prefetched it behind the long task: its unacknowledged delivery counts toward the timeout"
    elif int(facts.get("concurrency") or 1) > 1:
        said = "nothing was prefetched behind the long task: a second pool process took the task at once"
    else:
        said = (
            "nothing was prefetched behind the long task: the worker held only the long task's own delivery, "
            "and the second task waited in the queue"
        )
    agrees = "as" if prefetched == expected else "unlike what"
    return f"{said} ({agrees} {window} implies)"


# -- facts ------------------------------------------------------------------------------------------

DELIVERY_MODES = {1: "transient", 2: "persistent", "1": "transient", "2": "persistent"}


def delivery_mode(task_mode: Any, default_mode: Any) -> str:
    """``persistent`` or ``transient``: the task's own delivery mode, else the app's default (persistent)."""
    mode = task_mode if task_mode is not None else default_mode
    if mode is None:
        return "persistent"
    return DELIVERY_MODES.get(mode, str(mode))


def queue_facts(info: Mapping[str, Any] | None) -> dict[str, Any]:
    """What decides a queue's behaviour, from the management API's view of it (arguments and policy)."""
    if not info:
        return {"queue_durable": None, "queue_type": None, "dead_letter_exchange": None}
    arguments = dict(info.get("arguments") or {})
    policy = dict(info.get("effective_policy_definition") or {})

    def setting(argument: str, key: str) -> Any:
        return arguments.get(argument, policy.get(key))

    return {
        "queue_durable": info.get("durable"),
        "queue_type": info.get("type") or arguments.get("x-queue-type") or "classic",
        "dead_letter_exchange": setting("x-dead-letter-exchange", "dead-letter-exchange"),
        "message_ttl": setting("x-message-ttl", "message-ttl"),
        "max_length": setting("x-max-length", "max-length"),
    }


def accepts_pickle(accept_content: Any) -> bool:
    """Whether the worker takes pickled messages (``accept_content`` as a list, or a set read back as text)."""
    text = str(accept_content or "")
    return "pickle" in text or "application/x-python-serialize" in text


def facts(
    config: Mapping[str, Any] | None,
    task: str,
    worker: Mapping[str, Any],
    queue: str,
    queue_info: Mapping[str, Any] | None = None,
    broker: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything the levers and matches read: the task's options and the app's settings as the worker saw
    them (the launcher's ``config`` line), the worker's options, the queue's and the broker's."""
    config = config or {}
    settings = dict(config.get("settings") or {})
    options = dict((config.get("tasks") or {}).get(task) or {})
    prefetch = settings.get("worker_prefetch_multiplier")
    return {
        "acks_late": bool(options.get("acks_late")),
        "reject_on_worker_lost": bool(options.get("reject_on_worker_lost")),
        "retry_on_worker_lost": bool(options.get("retry_on_worker_lost")),
        "acks_on_failure_or_timeout": options.get("acks_on_failure_or_timeout"),
        "time_limit": options.get("time_limit"),
        "soft_time_limit": options.get("soft_time_limit"),
        "rate_limit": options.get("rate_limit"),
        "max_retries": options.get("max_retries"),
        "worker_prefetch_multiplier": prefetch,
        "concurrency": worker.get("concurrency"),
        "pool": worker.get("pool"),
        "stopasgroup": True,  # how the harness's supervisord stops a program, as many deployments do
        "delivery_mode": delivery_mode(options.get("delivery_mode"), settings.get("task_default_delivery_mode")),
        "queue": queue,
        **queue_facts(queue_info),
        "consumer_timeout": (broker or {}).get("consumer_timeout_ms"),
        "transport": (broker or {}).get("transport", "rabbitmq"),
        # Redis: the app's own visibility_timeout (not the audit's shortened one) and the server's persistence.
        "visibility_timeout": (broker or {}).get("visibility_timeout"),
        "visibility_from": (broker or {}).get("visibility_from"),
        "visibility_timeout_audit": AUDIT_VISIBILITY_S,
        "persistence": (broker or {}).get("persistence"),
        "task_publish_retry": settings.get("task_publish_retry"),
        "task_publish_retry_policy": settings.get("task_publish_retry_policy"),
        "broker_connection_timeout": settings.get("broker_connection_timeout"),
        "accept_content": settings.get("accept_content"),
        "accepts_pickle": accepts_pickle(settings.get("accept_content")),
        "worker_soft_shutdown_timeout": float(settings.get("worker_soft_shutdown_timeout") or 0.0),
    }
