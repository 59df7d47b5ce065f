"""harness.producers: a DirectProducer sends from the test process as the app's own code would, without
touching what the test process should not (the app's result backend)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from harness.producers import DirectProducer
from harness.spec import StackSpec, WorkerSpec

HERE = Path(__file__).parent
EXTRA = "direct_app.extra_tasks"  # a test-only task module the app does not include
DIRECT = StackSpec(celery_app="direct_app:app", cwd=str(HERE), workers=(WorkerSpec("worker"),))


def built() -> list[str]:
    """The result backends built in the test process (the app's module, as the producer imported it)."""
    return sys.modules["direct_app"].BUILT


@pytest.fixture(autouse=True)
def fresh_record() -> None:
    if "direct_app" in sys.modules:
        built().clear()


SHOUT = [DIRECT.replace(producer=DirectProducer("direct.shout", args=("hi-{n}",)))]


def shout_twice(stack, producer, ledger) -> None:
    sends = producer.send_many(2)
    ledger.wait_settled(sends, timeout=10)
    stack.verdict().assert_counts(succeeded=2)


@pytest.mark.celery_config(include=[EXTRA])
@pytest.mark.parametrize("stack_spec", SHOUT, indirect=True)
def test_a_task_module_the_scenario_includes_is_imported_by_the_test_process_too(stack, producer, ledger):
    """A user's test-only task module given to the worker by ``celery_config(include=[...])``: the worker ran
    it, and the DirectProducer said the app had no such task (it imported the app's modules before it took
    the scenario's settings)."""
    shout_twice(stack, producer, ledger)


@pytest.mark.celery_config(imports=[EXTRA])
@pytest.mark.parametrize("stack_spec", SHOUT, indirect=True)
def test_a_task_module_the_scenario_imports_is_imported_by_the_test_process_too(stack, producer, ledger):
    """The same module given by ``celery_config(imports=[...])``."""
    shout_twice(stack, producer, ledger)


@pytest.mark.parametrize(
    "stack_spec", [DIRECT.replace(producer=DirectProducer("direct.ping", args=(1,)))], indirect=True
)
def test_the_test_process_never_builds_the_apps_result_backend(stack, producer, ledger):
    """The app sets a result backend (a Flask app's ``db+sqlite:///results.sqlite`` made the file in the project
    folder): no result backend is set unless the scenario asks, in the test process as in the programs. Each
    send built the app's own before (its AsyncResult asks the app for one)."""
    ledger.wait_settled(producer.send_many(2), timeout=10)
    assert built() == [], "the app's own backend was built in the test process"
    assert type(producer.app.backend).__name__ == "DisabledBackend"
    producer.close()  # the app gets its own back, for whatever else the test process does with it
    assert type(producer.app.backend).__name__ == "AppsOwnBackend"


@pytest.mark.celery_config(result_backend="direct_app:ScenariosBackend")
@pytest.mark.parametrize(
    "stack_spec", [DIRECT.replace(producer=DirectProducer("direct.ping", args=(1,)))], indirect=True
)
def test_a_result_backend_the_scenario_asks_for_is_the_one_used(stack, producer, ledger):
    ledger.wait_settled(producer.send_many(1), timeout=10)
    assert built() == ["ScenariosBackend"], "the scenario's, never the app's own"


@pytest.mark.parametrize("stack_spec", [DIRECT.replace(producer=DirectProducer("direct.nope"))], indirect=True)
def test_a_task_no_module_registers_is_one_sentence_saying_how_to_fix_it(stack_spec, request):
    """A task the test process does not know: the error says where to name the module that registers it."""
    with pytest.raises(pytest.fail.Exception, match=r"harness: DirectProducer: the app has no task 'direct\.nope'; "
                       r"its tasks: .*direct\.ping.*; if a module the worker is given registers it, name that module "
                       r"in the app's include= or the scenario's celery_config\(include=\[\.\.\.\]\)"):  # fmt: skip
        request.getfixturevalue("stack")


def test_no_setting_or_environment_variable_brings_the_apps_backend_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """Celery reads ``CELERY_RESULT_BACKEND`` from the environment before any setting, and keeps a backend it
    built: the test process's app is given none on the app object itself, and gets its own back after."""
    from celery import Celery

    from harness.producers import ResultBackend

    monkeypatch.setenv("CELERY_RESULT_BACKEND", "cache+memory://")
    app = Celery("shop", set_as_current=False)
    assert type(app.backend).__name__ == "CacheBackend", "built before the harness takes it away"
    pinned = ResultBackend(app, asked=None)
    app.conf.update(result_backend=None)
    assert type(app.backend).__name__ == "DisabledBackend"
    pinned.restore()
    assert type(app.backend).__name__ == "CacheBackend"


@pytest.fixture
def eager_by_the_projects_conftest() -> None:
    """What a project's conftest does for its own tests (``pytest_configure``: ``app.conf.task_always_eager =
    True``), in the test process that the audit's and a DirectProducer's sends come from."""
    import direct_app

    direct_app.app.conf.task_always_eager = True
    yield
    direct_app.app.conf.task_always_eager = False


@pytest.mark.usefixtures("eager_by_the_projects_conftest")
@pytest.mark.parametrize(
    "stack_spec", [DIRECT.replace(producer=DirectProducer("direct.ping", args=(1,)))], indirect=True
)
def test_sends_reach_the_worker_when_the_projects_test_setup_made_the_app_eager(stack, producer, ledger):
    """A trial's audit run from a project's root loaded its conftest, which made the app eager: every probe ran
    in the test process, no worker saw one, and the verdict said "lost 20" on a passing test."""
    sends = producer.send_many(3)
    ledger.wait_settled(sends, timeout=10)
    stack.verdict().assert_counts(succeeded=3)
    assert {h.finished_by for h in stack.verdict().histories.values()} == {"worker@harness"}
