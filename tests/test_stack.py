"""AppStack's operator controls against real supervisord, gunicorn and Celery processes."""

import os
import socket
import sys

import pytest

import harness.stack
from app_under_test.stack import WORKER, demo
from harness.errors import HarnessWarning
from harness.producers import DirectProducer
from harness.spec import StackSpec, WorkerSpec
from harness.waiting import eventually, never


def test_a_killed_worker_stays_down_because_nothing_restarts_it(stack):
    stack.signal(WORKER, "KILL")
    eventually(lambda: stack.state(WORKER), until=lambda s: s == "EXITED", timeout=5, what="the worker to exit")
    never(
        lambda: stack.state(WORKER), until=lambda s: s != "EXITED", for_=1.5,
        what="supervisord restarted the killed worker (autorestart must be off for fault scenarios)",
    )  # fmt: skip


def test_a_program_that_is_not_running_is_named_with_its_state_and_the_error_its_stderr_names(stack):
    assert stack.not_running() == []
    stack.kill(WORKER)
    stack.wait_exited(WORKER)
    [line] = stack.not_running()
    assert line.startswith(f"{WORKER} is EXITED (exit status "), line


def test_stop_then_start_gives_a_ready_worker(stack, producer, ledger):
    stack.stop(WORKER)
    assert stack.state(WORKER) == "STOPPED"
    stack.start(WORKER)
    click = producer.send()
    ledger.wait_settled([click.task_id], timeout=10)
    assert ledger.history(click.task_id).count("task-succeeded") == 1


def test_the_web_app_serves_the_page_with_its_button(web):
    page = web.page()
    assert page.status_code == 200
    assert 'id="offload"' in page.text and 'data-url="/hello"' in page.text


ON_THE_DEFAULT_QUEUE = demo(workers=(WorkerSpec(WORKER, queues=("celery",)),))


@pytest.mark.parametrize("stack_spec", [ON_THE_DEFAULT_QUEUE], indirect=True, ids=["worker-on-celery-only"])
def test_a_routed_queue_no_worker_consumes_is_said_at_start_and_in_a_failure(recwarn, stack):
    """The app routes say_hello to hello_queue, the stack's one worker consumes only "celery": a click would
    wait there and a wait for it time out. Said as a warning when the stack is up, and by ``unconsumed()``,
    which a failed scenario's report shows."""
    said = [str(w.message) for w in recwarn.list if issubclass(w.category, HarnessWarning)]
    assert any(line.startswith("queue hello_queue has no consumer") for line in said), said
    [line] = stack.unconsumed()
    assert "no worker of the stack is told to consume it" in line, line
    assert "WorkerSpec(queues=(...))" in line


def test_a_stack_whose_workers_consume_every_routed_queue_says_nothing(recwarn, stack):
    assert stack.routed_queues == ("hello_queue",)
    assert stack.unconsumed() == []
    assert not [w for w in recwarn.list if issubclass(w.category, HarnessWarning)]


PARKED = demo().replace(
    producer=DirectProducer("say_hello", args=("parked-{n}",), via="send_task", options={"queue": "parked"})
)


@pytest.mark.parametrize("stack_spec", [PARKED], indirect=True, ids=["sent-to-a-queue-nobody-consumes"])
def test_a_task_waiting_in_a_queue_no_fixture_names_is_queued_not_lost(stack, producer, vhost, ledger):
    """The wrong verdict of old: tasks sitting safely in a queue the harness was not told about were
    counted lost. The verdict reads every queue of the scenario's vhost."""
    producer.send_many(3)
    vhost.wait_for_ready("parked", 3, timeout=5)
    verdict = stack.verdict()
    verdict.assert_counts(queued=3)
    assert set(verdict.where.values()) == {"parked"}


@pytest.mark.parametrize("stack_spec", [PARKED], indirect=True, ids=["parked"])
def test_the_verdict_right_after_a_broker_restart_reads_the_queues_on_a_fresh_connection(
    stack, producer, vhost, owned_broker
):
    """The harness's own connection died with the broker: the verdict reads again instead of raising
    ConnectionResetError (seen by a new user whose scenario asked for the verdict at once)."""
    producer.send_many(2)
    vhost.wait_for_ready("parked", 2, timeout=5)  # the vhost's connection is open, and about to die
    owned_broker.restart_broker()
    stack.verdict().assert_counts(queued=2)  # persistent messages in a durable queue survive the restart


@pytest.fixture(scope="module")
def venv_without_the_harness(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A virtualenv with Celery, Flask and gunicorn but not the harness: it sees this venv's site-packages
    through a .pth file, whose own .pth files (the harness's editable install) it does not run."""
    import site
    import subprocess

    folder = tmp_path_factory.mktemp("app-venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    [target] = list((folder / "lib").glob("python3*/site-packages"))
    (target / "borrowed.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    python = str(folder / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # as a user's shell would have it
    probe = subprocess.run(
        [python, "-c", "import celery, flask, gunicorn; import harness"], capture_output=True, cwd=folder, env=env
    )
    assert b"No module named 'harness'" in probe.stderr, probe.stderr
    return python


@pytest.fixture
def stack_spec(request: pytest.FixtureRequest) -> StackSpec:
    param = getattr(request, "param", None)
    if param == "venv-without-the-harness":
        return demo().replace(python=request.getfixturevalue("venv_without_the_harness"))
    return param or demo()


@pytest.mark.parametrize("stack_spec", ["venv-without-the-harness"], indirect=True)
def test_an_app_with_its_own_interpreter_runs_on_a_copy_of_the_launcher(stack, producer, ledger):
    """``StackSpec(python=...)``: the programs run the launcher copied into the scenario (standard library and
    Celery only), not the harness package, so an app's own virtualenv needs none of the harness's dependencies."""
    commands = [p.command for p in stack.supervisor.programs.values()]
    assert all("_celery_harness.launcher" in command for command in commands), commands
    click = producer.send()
    ledger.wait_settled([click.task_id], timeout=10)
    stack.verdict().assert_counts(succeeded=1)


def test_a_deploy_restarts_the_program_with_its_new_environment_and_marks_the_timeline(stack, producer, ledger):
    old_pid = stack.supervisor.info("web")["pid"]
    change = stack.deploy("web", env={"HELLO_PRODUCER": "v2"})
    assert change == "HELLO_PRODUCER=v2 (was v1)" and stack.supervisor.info("web")["pid"] != old_pid
    click = producer.send()  # v2 sends say_hello(name, greeting) to a v1 worker
    ledger.wait_settled([click.task_id], timeout=10)
    assert ledger.history(click.task_id).exception_type == "TypeError"
    assert [f.label for f in stack.timeline.faults] == ["web deployed: HELLO_PRODUCER=v2 (was v1)"]


def test_a_deploy_of_another_worker_app_runs_that_code(stack, producer, ledger):
    stack.deploy(WORKER, app="app_under_test.tasks_v2:app")  # say_hello(name, greeting): v1 clicks now fail
    click = producer.send()
    ledger.wait_settled([click.task_id], timeout=10)
    assert ledger.history(click.task_id).exception_type == "TypeError"  # the v1 worker would have succeeded


LONG_WORK = demo(work_seconds=3.0)


@pytest.mark.parametrize("stack_spec", [LONG_WORK], indirect=True, ids=["3s-tasks"])
def test_a_failed_task_is_shown_by_its_real_exception_not_billiards_wrapper(stack, ledger):
    """A pool process killed mid-task (the OOM killer): the worker's main process fails the task, and Celery's
    task-failed event names billiard's ``ExceptionWithTraceback()`` instead of the exception. The verdict (and
    the report and status line, which read the same history) show the cause."""
    _, running = stack.busy_worker(1)
    stack.kill_pool_process(WORKER)
    ledger.wait_settled([running], timeout=20)
    end = eventually(  # the journal writes the end first; Celery's event, and its wrapper, come a moment later
        lambda: ledger.history(running).terminal, until=lambda step: step.witnesses == {"events", "journal"},
        timeout=10, what="both witnesses to see the task fail",
    )  # fmt: skip
    assert end.error.startswith("WorkerLostError: Worker exited prematurely: signal 9 (SIGKILL)"), end.error
    assert "ExceptionWithTraceback" not in stack.verdict().explain()


RELEASE = "release-the-task"
HELD = demo(env={"HELLO_HOLD_UNTIL": RELEASE})


@pytest.mark.parametrize("stack_spec", [HELD], indirect=True, ids=["held"])
def test_a_verdict_taken_while_a_task_runs_calls_it_in_flight_not_lost(stack, producer, ledger):
    """Early acknowledgement: RabbitMQ has forgotten the running task's message, so only the worker holds it.
    A verdict taken now (a scenario's early look, or a failure's report) says so; once the worker is killed,
    nothing holds it any more: lost."""
    task_id = producer.send().task_id
    ledger.wait_running([task_id])

    verdict = stack.verdict()
    assert verdict.ids("unsettled") == [task_id], verdict.summary()
    assert verdict.reasons[task_id] == f"in flight: {WORKER} received it and still runs; no end of it yet"

    stack.kill(WORKER)
    stack.wait_exited(WORKER)
    assert stack.verdict().ids("lost") == [task_id]


@pytest.fixture
def web_port_taken(monkeypatch):
    """Another process listens on the port the harness picks for the web app, as another run on this machine
    can between the pick and gunicorn's bind."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    picks = iter([[port]])
    real = harness.stack.free_ports
    monkeypatch.setattr(harness.stack, "free_ports", lambda *a, **kw: next(picks, None) or real(*a, **kw))
    yield port
    holder.close()


def test_a_web_port_another_process_took_first_is_replaced_by_a_free_one(web_port_taken, stack, web):
    assert f":{web_port_taken}" not in web.base_url
    assert web.page().status_code == 200


# Variables of a deployment's environment that Celery's own command line (run by app.worker_main) reads:
# each would replace the app, or give the worker a result backend it cannot reach.
HOSTILE_ENV = demo().with_env(
    APP="nothing.here", RESULT_BACKEND="redis://redis.invalid:6379/0", CELERY_RESULT_BACKEND="redis://env.invalid/1"
)


@pytest.mark.parametrize("stack_spec", [HOSTILE_ENV], indirect=True, ids=["celery-cli-variables-set"])
def test_the_worker_keeps_the_forced_settings_when_the_environment_names_another_app_and_backend(
    stack, producer, ledger
):
    click = producer.send()
    ledger.wait_settled([click.task_id], timeout=10)
    assert ledger.history(click.task_id).count("task-succeeded") == 1
    config = stack.ledger.program_config(WORKER)
    assert config is not None and config["settings"]["result_backend"] is None


def test_the_launchers_copy_for_another_interpreter_holds_every_module_it_imports(tmp_path):
    """Under another interpreter (an app's own virtualenv) the launcher runs from a copy of its modules:
    each relative import of the copy must be in it (a new module of the launcher's went missing once)."""
    import ast

    harness.stack.harness_module("/other/venv/bin/python", "launcher", tmp_path)
    folder = tmp_path / "launcher" / harness.stack.COPIED_PACKAGE
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                assert (folder / f"{node.module}.py").exists(), f"{path.name} imports .{node.module}, not copied"


CELERY_REFUSES_ROOT = """\
/venv/lib/python3.11/site-packages/celery/platforms.py:841: SecurityWarning: An entry in the CELERY_ACCEPT_CONTENT
  warnings.warn(SecurityWarning(ROOT_DISCOURAGED.format(

Running a worker with superuser privileges when the
worker accepts messages serialized with pickle is a very bad idea!

If you really want to continue then you have to set the C_FORCE_ROOT
environment variable (but please think about this before you do).

User information: uid=0 euid=0 gid=0 egid=0
"""


def test_why_a_program_stopped_is_read_whole_from_its_stderr():
    """A trial's worker refused to start as root with pickle accepted; the harness quoted only "User information:
    uid=0 euid=0 gid=0 egid=0", not the reason nor the fix (C_FORCE_ROOT) two paragraphs above."""
    gist = harness.stack.stderr_gist(CELERY_REFUSES_ROOT)
    assert "worker accepts messages serialized with pickle is a very bad idea!" in gist
    assert "set the C_FORCE_ROOT environment variable" in gist and gist.endswith("uid=0 euid=0 gid=0 egid=0")
    assert harness.stack.stderr_gist("x\nTraceback ...\nModuleNotFoundError: No module named 'nope'\n") == (
        "ModuleNotFoundError: No module named 'nope'"
    )
    log = "\n".join(f"[INFO] line {n}" for n in range(10))
    assert harness.stack.stderr_gist(log) == "[INFO] line 7 [INFO] line 8 [INFO] line 9"


def test_a_workers_unrecoverable_error_is_why_it_stopped_not_a_later_handlers_error() -> None:
    log = (
        "[2026-12-07 04:23:54: CRITICAL/MainProcess] Unrecoverable error: AttributeError(\"'NoneType' object has no "
        "attribute 'hostname'\")\nTraceback (most recent call last):\n  ...\nAttributeError: 'NoneType' object has "
        "no attribute 'hostname'\n[2026-12-07 04:23:55: WARNING/ForkPoolWorker-1] Signal handler raised: "
        "AttributeError(\"'DisabledBackend' object has no attribute '_get_task_meta_for'\")\n"
        "AttributeError: 'DisabledBackend' object has no attribute '_get_task_meta_for'\n"
    )
    assert harness.stack.stderr_gist(log) == "AttributeError(\"'NoneType' object has no attribute 'hostname'\")"
