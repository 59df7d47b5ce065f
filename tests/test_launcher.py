"""harness.launcher: what it sets on the user's app, how it finds apps, what a web answer carries."""

from __future__ import annotations

import subprocess
import sys

import pytest
from celery import Celery

from harness.journal import request_publishes
from harness.launcher import (
    TASK_IDS_HEADER,
    AsgiTaskIds,
    LaunchError,
    WsgiTaskIds,
    configure,
    is_asgi,
    load_celery_app,
    load_object,
    not_a_web_app,
    worker_argv,
)

URL = "amqp://guest:guest@127.0.0.1:5999/harness-x"


# configure sets the environment variables Celery reads (CELERY_BROKER_URL...) in the process that calls it.
pytestmark = pytest.mark.usefixtures("environment_kept")


def test_configure_points_any_app_at_the_scenario_broker_and_turns_events_on() -> None:
    # An app that read its broker URL from its own setting, with a write URL and eager mode of its own.
    app = Celery("proj", broker="amqp://elsewhere//", set_as_current=False)
    app.conf.update(broker_write_url="amqp://writer//", task_always_eager=True)
    configure(app, URL, {"task_acks_late": True})
    assert app.connection_for_write().as_uri(include_password=True) == URL
    assert (app.conf.worker_send_task_events, app.conf.task_send_sent_event) == (True, True)
    assert (app.conf.task_always_eager, app.conf.result_backend, app.conf.task_acks_late) == (False, None, True)


def test_configure_with_a_namespaced_config_from_an_object() -> None:
    class Settings:
        CELERY_BROKER_URL = "amqp://elsewhere//"
        CELERY_TASK_ACKS_LATE = False

    app = Celery("django_like", set_as_current=False)
    app.config_from_object(Settings, namespace="CELERY")
    configure(app, URL, {"task_acks_late": True})
    assert app.connection_for_write().as_uri(include_password=True) == URL
    assert app.conf.task_acks_late is True


@pytest.fixture
def broker_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo insists on CELERY_BROKER_URL at import, as the launcher sets it."""
    monkeypatch.setenv("CELERY_BROKER_URL", URL)


@pytest.mark.usefixtures("broker_env")
def test_a_celery_app_is_found_as_celery_does_and_anything_else_is_refused() -> None:
    assert load_celery_app("app_under_test.tasks:app").main == "app_under_test"
    with pytest.raises(LaunchError, match="does not import: ModuleNotFoundError: No module named 'nope'"):
        load_celery_app("nope.celery:app")
    with pytest.raises(LaunchError, match="is a str, not a Celery app"):
        load_celery_app("app_under_test.settings:HELLO_QUEUE")
    with pytest.raises(LaunchError, match=r"app_under_test\.tasks:say_hello is a task, not a Celery app"):
        load_celery_app("app_under_test.tasks:say_hello")


@pytest.mark.usefixtures("broker_env")
def test_web_apps_and_factories() -> None:
    assert load_object("app_under_test.web:app", "--web-app").name == "app_under_test.web"
    assert load_object("collections:OrderedDict()", "--web-app") == {}
    with pytest.raises(LaunchError, match="has no attribute 'nope'"):
        load_object("app_under_test.web:nope", "--web-app")


def test_asgi_is_told_from_wsgi() -> None:
    async def asgi(scope, receive, send): ...

    def wsgi(environ, start_response): ...

    assert is_asgi(asgi) and is_asgi(AsgiTaskIds(asgi)) and not is_asgi(wsgi)


def test_a_wsgi_answer_carries_the_ids_its_request_published() -> None:
    def app(environ, start_response):
        request_publishes.get().extend([["id-1", True], ["id-2", False]])  # what the publish signals do
        start_response("202 Accepted", [("Content-Type", "text/plain")])
        return [b"ok"]

    headers = {}
    WsgiTaskIds(app)({}, lambda status, given, exc_info=None: headers.update(given))
    assert headers[TASK_IDS_HEADER] == "id-1,id-2" and headers["X-Harness-Task-Published"] == "id-1"
    assert request_publishes.get() is None, "the request's collector is gone after it"


def test_worker_options_become_celery_worker_arguments() -> None:
    config = {"hostname": "w@h", "concurrency": 2, "pool": "threads", "queues": ["a", "b"], "fair": True}
    argv = worker_argv({**config, "max_tasks_per_child": 1})
    assert argv[:3] == ["worker", "-n", "w@h"] and "-E" in argv
    assert argv[8:] == ["-c", "2", "-P", "threads", "-Q", "a,b", "-O", "fair", "--max-tasks-per-child", "1"]


def test_a_worker_without_a_concurrency_runs_the_apps_own() -> None:
    """No ``-c``: Celery takes the app's worker_concurrency (else its default); the launcher used to say -c 1."""
    argv = worker_argv({"hostname": "w@h", "concurrency": None, "pool": "prefork"})
    assert "-c" not in argv and argv[-2:] == ["-P", "prefork"]
    assert "-c" not in worker_argv({"hostname": "w@h"})


def test_a_worker_without_a_pool_runs_the_apps_own() -> None:
    """No ``-P``: Celery takes the app's worker_pool (else prefork); the launcher used to say -P prefork always."""
    assert "-P" not in worker_argv({"hostname": "w@h", "pool": None})
    assert "-P" not in worker_argv({"hostname": "w@h"})


def test_a_celery_app_path_whose_attribute_is_missing_names_the_attribute(broker_env: None) -> None:
    with pytest.raises(LaunchError, match=r"module app_under_test\.tasks has no attribute 'celery'"):
        load_celery_app("app_under_test.tasks:celery")


def test_things_that_are_not_web_apps_are_told_apart() -> None:
    from celery import Celery

    app = Celery("x", set_as_current=False)

    @app.task(name="t")
    def task(order_id): ...

    def wsgi(environ, start_response): ...

    assert "is the Celery task 't'" in not_a_web_app(task)
    assert "cannot be called as app(environ, start_response)" in not_a_web_app(lambda order_id: None)
    assert not_a_web_app("proj") == "is a str"
    assert not_a_web_app(wsgi) is None


def test_a_gevent_worker_is_patched_before_the_app_is_imported(tmp_path) -> None:
    """Celery's own command patches before anything imports kombu (``maybe_patch_concurrency``); the launcher runs
    ``worker_main`` itself, so it must do the same, or every socket of the worker blocks the whole process."""
    code = (
        "from harness.launcher import patch_concurrency; patch_concurrency('gevent');"
        "import socket, time, gevent.monkey;"
        "assert gevent.monkey.is_module_patched('socket') and gevent.monkey.is_module_patched('time'), 'not patched';"
        "patch_concurrency('threads')"  # another pool: nothing to do
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_a_green_pool_that_is_not_installed_is_one_sentence() -> None:
    code = "from harness.launcher import launch; launch({'role': 'worker', 'pool': 'eventlet'})"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "LaunchError: the worker's pool is eventlet, which is not installed: pip install eventlet" in done.stderr
