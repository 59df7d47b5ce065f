"""harness.forced_settings: what the harness forces takes at every layer the app reads, or is refused.

The Django cases run in a process of their own (Django's settings are set up once per process), on a
project written to a temporary folder as ``django-admin startproject`` lays it out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import MappingProxyType

import pytest
from celery import Celery

from harness.forced_settings import FORCED, NotForced, check, force, hide_cli_overrides

URL = "amqp://guest:guest@127.0.0.1:5999/harness-x"


# configure sets the environment variables Celery reads (CELERY_BROKER_URL...) in the process that calls it.
pytestmark = pytest.mark.usefixtures("environment_kept")


SETTINGS = """\
SECRET_KEY = "x"
INSTALLED_APPS = []
CELERY_BROKER_URL = "amqp://guest@broker.invalid:5672//"
CELERY_TASK_ALWAYS_EAGER = True
CELERY_RESULT_BACKEND = "redis://redis.invalid:6379/0"
"""
CELERY = """\
import os
from celery import Celery
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")
app = Celery("proj")
app.config_from_object("django.conf:settings", namespace="CELERY")
"""
AFTER = """\
import json, os
from proj.celery import app
from django.conf import settings
from harness.launcher import configure
configure(app, {url!r}, {{}})
print(json.dumps({{
    "celery": [app.conf.task_always_eager, app.conf.result_backend, type(app.backend).__name__],
    "django": [settings.CELERY_TASK_ALWAYS_EAGER, settings.CELERY_RESULT_BACKEND],
    "env": os.environ.get("CELERY_RESULT_BACKEND"),
}}))
"""


@pytest.fixture
def django_project(tmp_path: Path) -> Path:
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "__init__.py").write_text("")
    (tmp_path / "proj" / "settings.py").write_text(SETTINGS)
    (tmp_path / "proj" / "celery.py").write_text(CELERY)
    return tmp_path


def run_in(folder: Path, code: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(folder), **env}
    environment.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=folder, env=environment, capture_output=True, text=True
    )


def test_a_django_projects_eager_mode_and_result_backend_are_overridden_where_the_project_reads_them(
    django_project: Path,
) -> None:
    # Before the fix, settings.CELERY_TASK_ALWAYS_EAGER stayed True: a view reading it (pretalx does) ran
    # the task in the request.
    done = run_in(django_project, AFTER.format(url=URL))
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["celery"] == [False, None, "DisabledBackend"]
    assert seen["django"] == [False, None]


def test_a_result_backend_in_the_environment_is_overridden(django_project: Path) -> None:
    # Celery reads CELERY_RESULT_BACKEND from the environment before any setting (a .env loaded at import).
    done = run_in(django_project, AFTER.format(url=URL), CELERY_RESULT_BACKEND="redis://env.invalid:6379/1")
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["celery"] == [False, None, "DisabledBackend"] and seen["env"] is None


def test_a_setting_the_harness_cannot_override_is_refused_in_one_sentence() -> None:
    app = Celery("frozen", set_as_current=False)
    app.config_from_object(MappingProxyType({"task_always_eager": True}))
    with pytest.raises(NotForced, match=r"^the Celery app 'frozen' sets task_always_eager in its config_from_obj"):
        force(app, {**FORCED, "broker_url": URL})


def test_a_setting_changed_after_forcing_is_caught_by_the_read_back() -> None:
    app = Celery("later", set_as_current=False)
    force(app, {**FORCED, "broker_url": URL, "task_acks_late": True})
    app.conf.task_acks_late = False  # what a worker_init hook of the app could do
    with pytest.raises(NotForced, match=r"still has task_acks_late=False after the harness set it to True"):
        check(app, {"task_acks_late": True})


def test_the_command_lines_environment_variables_are_hidden_and_given_back(monkeypatch: pytest.MonkeyPatch) -> None:
    # Celery's command line (run by app.worker_main) reads APP, BROKER_URL, RESULT_BACKEND and their
    # CELERY_-prefixed twins: each would replace what the harness set.
    for name, value in {
        "APP": "other.app",
        "RESULT_BACKEND": "redis://x//",
        "CELERY_RESULT_BACKEND": "redis://y//",
    }.items():
        monkeypatch.setenv(name, value)
    given_back = hide_cli_overrides()
    assert not {"APP", "RESULT_BACKEND", "CELERY_RESULT_BACKEND"} & set(os.environ)
    # The app's own code gets APP and RESULT_BACKEND back; CELERY_RESULT_BACKEND stays hidden, Celery's
    # settings reading it at every access.
    assert given_back == {"APP": "other.app", "RESULT_BACKEND": "redis://x//"}
