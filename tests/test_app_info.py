"""harness.app_info.own_transport: the broker family an app is configured for, read in a process of its own
(``--harness-transport auto`` follows it; a run on another family says so)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.app_info import introspect, own_transport

APPS = {
    "own_redis": 'from celery import Celery\napp = Celery("p", broker="redis://cache.example:6379/0")\n',
    "own_amqp": 'from celery import Celery\napp = Celery("p")\napp.conf.broker_url = "amqp://guest@rabbit//"\n',
    "from_env": 'import os\nfrom celery import Celery\napp = Celery("p", broker=os.environ["CELERY_BROKER_URL"])\n',
    "none": 'from celery import Celery\napp = Celery("p")\n',
    "env_default": "import os\nfrom celery import Celery\n"
    'app = Celery("p", broker=os.environ.get("CELERY_BROKER_URL", "redis://localhost:6379/0"))\n',
    "failover": 'from celery import Celery\napp = Celery("p", broker=("redis://a:6379",))\n',
}


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        ("own_redis", "redis"), ("own_amqp", "rabbitmq"), ("from_env", None), ("none", None),
        ("env_default", "redis"), ("failover", "redis"),
    ],
)  # fmt: skip
def test_the_apps_own_broker_decides_its_family(tmp_path: Path, monkeypatch, module: str, expected: str | None):
    """An app that takes its broker from CELERY_BROKER_URL has no family of its own (the harness's placeholder there
    is not the app's choice), unless it falls back on one; a list of failover URLs names its family too."""
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    (tmp_path / f"{module}.py").write_text(APPS[module])
    assert own_transport(introspect(f"{module}:app", str(tmp_path), workdir=tmp_path)) == expected


def test_the_users_environment_names_the_family_of_an_app_that_reads_it(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://cache.example:6379/0")
    (tmp_path / "from_env.py").write_text(APPS["from_env"])
    assert own_transport(introspect("from_env:app", str(tmp_path), workdir=tmp_path)) == "redis"


BEAT_APP = """from datetime import timedelta
from celery import Celery
from celery.schedules import crontab
app = Celery("p", broker="amqp://guest@rabbit//")
app.conf.task_routes = {"p.digest": {"queue": "emails"}}
app.conf.beat_schedule = {
    "digest": {"task": "p.digest", "schedule": timedelta(minutes=1), "args": (1,), "options": {"expires": 30}},
    "nightly": {"task": "p.tidy", "schedule": crontab(minute=0, hour=3)},
}

@app.task(name="p.digest")
def digest(n):
    return n

@app.task(name="p.tidy", expires=600)
def tidy():
    return None
"""


def test_the_apps_beat_schedule_is_read_as_data(tmp_path: Path):
    """The audit's beat rows learn the app's periodic tasks here: each entry's period (or kind), options, routed
    queue and the task's own expires."""
    (tmp_path / "beat_app.py").write_text(BEAT_APP)
    beat = introspect("beat_app:app", str(tmp_path), workdir=tmp_path)["beat"]
    assert beat["scheduler"] == "celery.beat:PersistentScheduler"
    digest, nightly = beat["entries"]["digest"], beat["entries"]["nightly"]
    assert (digest["every"], digest["kind"], digest["args"], digest["options"], digest["queue"]) == (
        60.0, "interval", [1], {"expires": 30}, "emails",
    )  # fmt: skip
    assert (nightly["every"], nightly["kind"], nightly["task_expires"], nightly["queue"]) == (
        None,
        "crontab",
        600,
        "celery",
    )
