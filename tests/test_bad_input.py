"""Bad input: one clear sentence, fast, nothing left behind.

Each case runs pytest in a subprocess on a one-click scenario, with one thing wrong: no
``rabbitmq-server``, a broker URL that refuses the connection or the credentials, a port already
taken, an app that does not import or is not what it is said to be, a worker or web app that cannot
start, a route that answers an error or hides the task id, a queue the app does not declare, no Docker
engine, a Docker image that cannot be had, a container that never becomes ready. The scenario must
end within 10 s as an error (or failure) whose report is one ``harness: ...`` line naming the problem
and the fix (a crashed program's own stderr line included), no traceback, and no process, temporary
directory or container of the run left behind. The user's other tests in the same run still run.

The subprocess gets its own ``TMPDIR``: the harness's directories go there and every process the run
starts inherits it, which is how leftovers of exactly this run are found. Its pytest also records its
pid, which labels any container it makes (see tests/conftest.py).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import pytest

from harness.brokers.containers import engine_answers
from harness.ports import free_ports

if TYPE_CHECKING:
    from conftest import DockerSetup, RunContainers  # tests/conftest.py: the docker cases' fixtures

pytest_plugins = ["pytester"]
# Cases on the system broker share its vhost "/": in a parallel run they go to one worker, one by one.
# "bound": these assert a time bound (bad input ends the run within 10 s), meant for a machine that is not
# also running a parallel test suite: CI runs them on their own.
pytestmark = [pytest.mark.xdist_group("system-broker"), pytest.mark.bound]

BOUND_S = 10.0  # the requirement: bad input ends the run within 10 s
HANG_GUARD_S = 60.0  # a run that hangs fails the test instead of blocking the suite
SYSTEM_BROKER = ("127.0.0.1", 5672)
SYSTEM_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672//"
REAP_GRACE_S = 2.0  # SIGKILLed processes may take a moment to disappear

SCENARIO = """
def test_click(producer):
    producer.send()
"""

# An ordinary test of the user's, next to the scenario: a broken harness set-up must not stop it.
UNRELATED = """
def test_unrelated():
    assert 1 + 1 == 2
"""

# A plugin (-p record_pid) writing the inner pytest's pid next to the scenario: the pid label of any
# container the run makes.
RECORD_PID = """
import os
from pathlib import Path


def pytest_configure(config):
    Path(__file__).with_name("inner-pytest.pid").write_text(str(os.getpid()))
"""

# A scenario the harness could not run reports one line, whole, in pytest's ERRORS/FAILURES section.
HARNESS_LINE = re.compile(r"^harness: (?P<sentence>.+)$")

# Makes rabbitmq-server unfindable in the subprocess: the harness also looks in /usr/sbin and
# /usr/local/sbin explicitly, so a narrowed PATH alone cannot hide an installed one.
WITHOUT_RABBITMQ_SERVER = """
import os
import shutil

_which = shutil.which


def _which_but_rabbitmq(cmd, mode=os.F_OK | os.X_OK, path=None):
    if os.path.basename(cmd) == "rabbitmq-server":
        return None
    return _which(cmd, mode, path)


shutil.which = _which_but_rabbitmq
"""


def stack_spec_conftest(spec: str = "demo()") -> str:
    """A conftest defining ``stack_spec`` as ``spec``: an expression over the demo's ``demo``, ``worker`` and
    ``BUTTON``, and the harness's StackSpec, WebSpec, WorkerSpec, BeatSpec, HttpProducer, JsonField."""
    return f"""
import pytest

from app_under_test.stack import BUTTON, demo, worker
from harness.producers import HttpProducer, JsonField
from harness.spec import BeatSpec, StackSpec, WebSpec, WorkerSpec


@pytest.fixture
def stack_spec():
    return {spec}
"""


DEMO = stack_spec_conftest()


@dataclass(frozen=True)
class Run:
    """One pytest subprocess run: how it ended, how long it took, what it printed."""

    returncode: int
    seconds: float
    lines: list[str]
    tmpdir: Path
    pid: int | None  # the inner pytest's, if it got as far as configuring itself
    outcomes: dict[str, int]

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    @property
    def harness_lines(self) -> list[str]:
        """``harness: ...`` lines of the ERRORS and FAILURES sections (not the header's notices)."""
        found, inside = [], False
        for line in self.lines:
            if re.match(r"^=+ (ERRORS|FAILURES) =+$", line):
                inside = True
            elif re.match(r"^=+ .* =+$", line):
                inside = False
            elif inside and HARNESS_LINE.match(line):
                found.append(line)
        return found

    @property
    def sentence(self) -> str:
        match = HARNESS_LINE.match(self.harness_lines[0]) if self.harness_lines else None
        return match["sentence"] if match else ""


RunScenario = Callable[..., Run]


@pytest.fixture
def short_tmpdir() -> Iterator[Path]:
    """A fresh TMPDIR with a short path (supervisord's socket path grows with it: see the last test)."""
    path = Path(tempfile.mkdtemp(prefix="bad-input-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def run_scenario(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, short_tmpdir: Path) -> RunScenario:
    """Run the one-click scenario in a pytest subprocess with ``args``; time it."""

    def run(
        *args: str,
        conftest: str = DEMO,
        env: dict[str, str] | None = None,
        tmpdir: Path = short_tmpdir,
        scenario: str = SCENARIO,
    ) -> Run:
        pytester.makepyfile(test_scenario=scenario, test_unrelated=UNRELATED, record_pid=RECORD_PID)
        pid_file = pytester.path / "inner-pytest.pid"
        if conftest:
            pytester.makeconftest(conftest)
        for name in [name for name in os.environ if name.startswith("HARNESS_")]:
            monkeypatch.delenv(name)  # only the command line configures the run
        for name, value in {"TMPDIR": str(tmpdir), **(env or {})}.items():
            monkeypatch.setenv(name, value)
        started = time.monotonic()
        result = pytester.runpytest_subprocess(
            "-p", "no:cacheprovider", "-p", "record_pid", *args, timeout=HANG_GUARD_S
        )
        seconds = time.monotonic() - started
        pid = int(pid_file.read_text()) if pid_file.exists() else None
        print(f"run (pytest pid {pid}) took {seconds:.2f}s")
        outcomes = result.parseoutcomes() if result.outlines else {}
        return Run(int(result.ret), seconds, result.outlines + result.errlines, tmpdir, pid, outcomes)

    return run


class BrokenRun(Exception):
    """The run broke in a way none of these tests expects; an xfail for a known harness bug must not hide it."""


def reached_the_scenario(run: Run) -> Run:
    """``run``, if pytest got as far as the scenario's fixtures (passed, failed, or errored)."""
    if run.returncode not in (0, 1) or "INTERNALERROR" in run.output:
        raise BrokenRun(f"the run ended with exit code {run.returncode}:\n{run.output}")
    return run


def processes_of(run: Run) -> list[str]:
    """Processes of the run still alive after a short grace."""
    deadline = time.monotonic() + REAP_GRACE_S
    while (alive := live_processes_of(run)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive


def live_processes_of(run: Run) -> list[str]:
    """Live processes started by the run: they inherited its TMPDIR (or name it on their command line)."""
    marker = str(run.tmpdir)
    found = []
    for process in psutil.process_iter(["pid", "cmdline", "environ", "status"]):
        info = process.info
        if info["pid"] == os.getpid() or info["status"] == psutil.STATUS_ZOMBIE:
            continue
        cmdline = " ".join(info["cmdline"] or ())
        if marker in cmdline or marker in (info["environ"] or {}).get("TMPDIR", ""):
            found.append(f"{info['pid']}: {cmdline}")
    return found


def tmp_leftovers(run: Run) -> list[str]:
    return sorted(p.name for p in run.tmpdir.iterdir())


class SentenceLacks(AssertionError):
    """The one sentence came, in time, but does not name what it should (an xfail may target just this)."""


def assert_ended_with_one_sentence(run: Run, *facts: str) -> None:
    """Within the bound: the scenario errored (or failed) with one harness line holding every fact, the
    user's unrelated test passed, no traceback, nothing left."""
    assert run.returncode == pytest.ExitCode.TESTS_FAILED, f"exit code {run.returncode}, expected 1:\n{run.output}"
    assert run.outcomes.get("passed") == 1, f"the unrelated test did not pass: {run.outcomes}\n{run.output}"
    assert run.outcomes.get("errors", 0) + run.outcomes.get("failed", 0) == 1, f"{run.outcomes}\n{run.output}"
    assert run.seconds < BOUND_S, f"the run took {run.seconds:.1f}s; bad input must end it within {BOUND_S:.0f}s"
    assert len(run.harness_lines) == 1, f"expected one 'harness:' line, got {run.harness_lines}:\n{run.output}"
    assert "Traceback" not in run.output, f"a traceback reached the user:\n{run.output}"
    assert_nothing_left_behind(run)
    missing = [fact for fact in facts if fact not in run.sentence]
    if missing:
        raise SentenceLacks(f"the sentence lacks {missing}: {run.sentence!r}")


def assert_nothing_left_behind(run: Run) -> None:
    alive, files = processes_of(run), tmp_leftovers(run)
    assert not alive, f"processes of the run are still alive: {alive}"
    assert not files, f"the run left {files} in its TMPDIR {run.tmpdir}"


def rabbitmq_server_installed() -> bool:
    return bool(shutil.which("rabbitmq-server") or shutil.which("rabbitmq-server", path="/usr/sbin:/usr/local/sbin"))


def system_broker_answers() -> bool:
    try:
        socket.create_connection(SYSTEM_BROKER, timeout=1).close()
    except OSError:
        return False
    return True


needs_rabbitmq_server = pytest.mark.skipif(not rabbitmq_server_installed(), reason="rabbitmq-server is not installed")
needs_system_broker = pytest.mark.skipif(
    not system_broker_answers(), reason=f"no broker answers at {SYSTEM_BROKER_URL}"
)


def closed_port() -> int:
    """A loopback port nobody listens on (bound for a moment by the kernel's choice, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port the harness would consider free, held by a listener that never accepts (and never answers)."""
    port = free_ports(1)[0]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        yield port


# -- 1. no rabbitmq-server ------------------------------------------------------------------------


def test_rabbitmq_server_option_naming_a_missing_file(run_scenario: RunScenario) -> None:
    run = run_scenario("--harness-broker", "local", "--harness-rabbitmq-server", "/nonexistent/rabbitmq-server")
    assert_ended_with_one_sentence(
        run, "--harness-rabbitmq-server /nonexistent/rabbitmq-server", "not an executable file", "apt-get install"
    )


def test_rabbitmq_server_option_naming_a_non_executable_file(
    run_scenario: RunScenario, pytester: pytest.Pytester
) -> None:
    server = pytester.makefile("", **{"rabbitmq-server": "#!/bin/sh\nexit 0\n"})
    server.chmod(0o644)
    run = run_scenario("--harness-broker", "local", "--harness-rabbitmq-server", str(server))
    assert_ended_with_one_sentence(run, str(server), "not an executable file", "--harness-broker-url")


@pytest.mark.parametrize(
    ("kind", "facts"),
    [
        ("local", ("rabbitmq-server was not found", "apt-get install", "--harness-rabbitmq-server PATH")),
        ("auto", ("no RabbitMQ is available", "apt-get install", "--harness-broker-url")),
    ],
)
def test_rabbitmq_server_not_installed(run_scenario: RunScenario, kind: str, facts: tuple[str, ...]) -> None:
    env = {
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), "/usr/bin", "/bin"]),  # no sbin
        "DOCKER_HOST": "unix:///nonexistent/docker.sock",  # and no Docker engine for auto to pick
    }
    run = run_scenario("--harness-broker", kind, conftest=DEMO + WITHOUT_RABBITMQ_SERVER, env=env)
    assert_ended_with_one_sentence(run, *facts)


# -- 2. and 3. a broker URL that refuses the connection or the credentials -------------------------


def url_broker(url: str) -> tuple[str, ...]:
    return ("--harness-broker", "url", "--harness-broker-url", url)


def test_broker_url_refusing_connections(run_scenario: RunScenario) -> None:
    port = closed_port()
    run = run_scenario(*url_broker(f"amqp://guest:guest@127.0.0.1:{port}//"))
    assert_ended_with_one_sentence(run, f"127.0.0.1:{port}", "connection refused", "--harness-broker-url")


def test_broker_url_where_nothing_speaks_amqp(run_scenario: RunScenario, taken_port: int) -> None:
    run = run_scenario(*url_broker(f"amqp://guest:guest@127.0.0.1:{taken_port}//"))
    assert_ended_with_one_sentence(run, f"127.0.0.1:{taken_port}", "did not answer", "--harness-broker-url")


@needs_system_broker
@pytest.mark.parametrize(
    ("url", "facts"),
    [
        (
            "amqp://guest:not-the-password-7f3a@127.0.0.1:5672//",
            ("127.0.0.1:5672", "ACCESS_REFUSED", "'guest'", "password in --harness-broker-url"),
        ),
        (
            "amqp://guest:guest@127.0.0.1:5672/no-such-vhost-7f3a",
            ("'no-such-vhost-7f3a'", "NOT_ALLOWED", "create the vhost"),
        ),
    ],
    ids=["wrong-password", "unknown-vhost"],
)
def test_broker_url_rejecting_the_credentials(run_scenario: RunScenario, url: str, facts: tuple[str, ...]) -> None:
    run = run_scenario(*url_broker(url))
    assert_ended_with_one_sentence(run, *facts)
    assert "not-the-password-7f3a" not in run.output, "the password was printed"


# -- 4. a port already taken -----------------------------------------------------------------------


@needs_rabbitmq_server
def test_rabbitmq_port_already_taken(run_scenario: RunScenario, taken_port: int) -> None:
    run = run_scenario("--harness-broker", "local", "--harness-rabbitmq-port", str(taken_port))
    assert_ended_with_one_sentence(run, f"port {taken_port}", "already in use", "--harness-rabbitmq-port")


# -- 5. the app under test: not importable, not an app, a program that cannot start ------------------

SYSTEM = url_broker(SYSTEM_BROKER_URL)


@needs_system_broker
def test_celery_app_option_that_does_not_import(run_scenario: RunScenario) -> None:
    # No stack_spec of the scenario's own: the stack comes from --celery-app alone.
    run = run_scenario(*SYSTEM, "--celery-app", "no_such_project.celery:app", conftest="")
    assert_ended_with_one_sentence(
        run, "--celery-app no_such_project.celery:app does not import", "No module named 'no_such_project'"
    )


@needs_system_broker
def test_celery_app_option_typo_beside_a_conftests_own_stack_spec(run_scenario: RunScenario) -> None:
    # The conftest's stack_spec names a good app; the one typed on the command line is the one run, or said.
    run = run_scenario(*SYSTEM, "--celery-app", "no_such_project.celery:app", conftest=stack_spec_conftest())
    assert_ended_with_one_sentence(
        run, "--celery-app no_such_project.celery:app does not import", "No module named 'no_such_project'"
    )


@needs_system_broker
def test_celery_app_from_the_environment_that_does_not_import_is_said_so(run_scenario: RunScenario) -> None:
    # Named where the user named it, not as a flag they never typed.
    run = run_scenario(*SYSTEM, conftest="", env={"HARNESS_CELERY_APP": "no_such_project.celery:app"})
    assert_ended_with_one_sentence(run, "env HARNESS_CELERY_APP no_such_project.celery:app does not import")


@needs_system_broker
def test_celery_app_option_naming_no_celery_app(run_scenario: RunScenario) -> None:
    run = run_scenario(*SYSTEM, "--celery-app", "app_under_test.settings:HELLO_QUEUE", conftest="")
    assert_ended_with_one_sentence(run, "app_under_test.settings:HELLO_QUEUE", "not a Celery app")


@needs_system_broker
def test_worker_whose_app_fails_to_import(run_scenario: RunScenario) -> None:
    spec = 'demo(workers=(worker(version="does_not_exist"),))'
    run = run_scenario(*SYSTEM, conftest=stack_spec_conftest(spec))
    # The worker's own stderr names the module it could not load.
    assert_ended_with_one_sentence(run, "worker_hello", "exited while starting", "app_under_test.does_not_exist")


def web_app(app: str, ready_path: str | None = "/healthz") -> str:
    spec = f'demo().replace(web=WebSpec(app="{app}", ready_path={ready_path!r}))'
    return stack_spec_conftest(spec)


@needs_system_broker
def test_web_app_that_does_not_import(run_scenario: RunScenario) -> None:
    run = run_scenario(*SYSTEM, conftest=web_app("app_under_test.nope:app"))
    assert_ended_with_one_sentence(run, "web exited while starting", "ModuleNotFoundError", "app_under_test.nope")


@needs_system_broker
def test_web_app_that_is_not_a_wsgi_or_asgi_app(run_scenario: RunScenario) -> None:
    run = run_scenario(*SYSTEM, conftest=web_app("app_under_test.settings:HELLO_QUEUE"))
    assert_ended_with_one_sentence(run, "app_under_test.settings:HELLO_QUEUE", "not a WSGI or ASGI application")


@needs_system_broker
def test_web_app_that_is_a_celery_task(run_scenario: RunScenario) -> None:
    run = run_scenario(*SYSTEM, conftest=web_app("app_under_test.tasks:say_hello"))
    assert_ended_with_one_sentence(run, "is the Celery task 'say_hello'", "not a WSGI or ASGI application")


@needs_system_broker
def test_worker_consuming_a_queue_the_app_does_not_declare(run_scenario: RunScenario) -> None:
    run = run_scenario(*SYSTEM, conftest=stack_spec_conftest('demo(workers=(worker(queues=("hello_queeu",)),))'))
    assert_ended_with_one_sentence(run, "worker_hello consumes 'hello_queeu'", "does not declare", "hello_queue")


NEVER_HEALTHY_WSGI_APP = """
def app(environ, start_response):
    start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
    return [b"starting"]
"""


@needs_system_broker
def test_web_app_that_never_answers_its_ready_path(run_scenario: RunScenario, pytester: pytest.Pytester) -> None:
    # The programs' working directory is the inner run's rootdir, where this module is written.
    pytester.makepyfile(never_healthy=NEVER_HEALTHY_WSGI_APP)
    run = reached_the_scenario(run_scenario(*SYSTEM, conftest=web_app("never_healthy:app")))
    assert_ended_with_one_sentence(run, "web answers GET /healthz with 503", "fix the app, or its ready_path")


# -- 6. a producer whose route answers an error, or hides the task id --------------------------------


@needs_system_broker
@pytest.mark.parametrize(
    ("producer", "facts"),
    [
        ('HttpProducer("/no-such-route")', ("POST /no-such-route answered 404", "body starts", "fix the path")),
        ('HttpProducer("/hello", json={"name": "x"}, task_id=JsonField("id"))', ("JSON field 'id'", "no task id")),
    ],
    ids=["route-404", "task-id-not-found"],
)
def test_producer_that_cannot_record_a_send(run_scenario: RunScenario, producer: str, facts: tuple[str, ...]) -> None:
    run = run_scenario(*SYSTEM, conftest=stack_spec_conftest(f"demo().replace(producer={producer})"))
    assert_ended_with_one_sentence(run, *facts)


# -- 7. a queue the app does not declare --------------------------------------------------------------

WAITS_ON_AN_UNKNOWN_QUEUE = """
def test_click(producer, vhost):
    producer.send()
    vhost.wait_for_ready("hello_queeu", 1, timeout=30)
"""


@needs_system_broker
def test_scenario_naming_a_queue_the_app_does_not_declare(run_scenario: RunScenario) -> None:
    run = run_scenario(*SYSTEM, scenario=WAITS_ON_AN_UNKNOWN_QUEUE)
    assert_ended_with_one_sentence(run, "'hello_queeu'", "does not declare", "hello_queue")


@needs_system_broker
def test_long_tmpdir_does_not_break_the_stack(run_scenario: RunScenario, pytester: pytest.Pytester) -> None:
    long_tmpdir = pytester.mkdir("long-tmpdir-".ljust(max(12, 80 - len(str(pytester.path)) - 1), "x"))
    run = reached_the_scenario(run_scenario(*SYSTEM, tmpdir=long_tmpdir))
    assert run.returncode == 0, run.output
    assert_nothing_left_behind(run)


# -- 8., 9. and 10. no Docker engine, an image that cannot be had, a container that never answers ---

NO_ENGINE = "unix:///nonexistent.sock"
MISSING_IMAGE = "harness-no-such-image:1"
NEVER_READY_BOOT_TIMEOUT_S = 3


@pytest.fixture
def run_containers_if_engine(request: pytest.FixtureRequest) -> RunContainers | None:
    """``run_containers`` where an engine answers; None elsewhere, where no run can make a container."""
    return request.getfixturevalue("run_containers") if engine_answers() else None


@pytest.fixture(scope="session")
def never_ready_image(docker_setup: DockerSetup) -> Iterator[str]:
    """The RabbitMQ image with ``sleep 3600`` for a command: its containers run but never serve AMQP.
    Made from the local image (a commit shares its layers: no registry, about a second); removed after."""
    name, tag = "harness-never-ready", str(os.getpid())
    helper = docker_setup.client.containers.create(docker_setup.image, command=["sleep", "3600"], network_mode="none")
    try:
        helper.commit(name, tag)
    finally:
        helper.remove(force=True)
    yield f"{name}:{tag}"
    docker_setup.client.images.remove(f"{name}:{tag}", force=True)


def assert_no_container_left(run: Run, containers: RunContainers) -> None:
    assert run.pid is not None, f"the inner pytest did not record its pid:\n{run.output}"
    left = containers.of(run.pid)
    assert not left, f"the run left harness containers behind: {left}"


def test_docker_with_no_engine(run_scenario: RunScenario, run_containers_if_engine: RunContainers | None) -> None:
    run = run_scenario("--harness-broker", "docker", env={"DOCKER_HOST": NO_ENGINE})
    if run_containers_if_engine is not None:  # the real engine, not the socket the run was pointed at
        assert_no_container_left(run, run_containers_if_engine)
    assert_ended_with_one_sentence(run, "no Docker engine answers", NO_ENGINE, "DOCKER_HOST", "--harness-broker local")


def test_docker_image_that_cannot_be_pulled(
    run_scenario: RunScenario, docker_setup: DockerSetup, run_containers: RunContainers
) -> None:
    run = reached_the_scenario(run_scenario(*docker_setup.args(MISSING_IMAGE)))
    assert_no_container_left(run, run_containers)
    assert_ended_with_one_sentence(run, MISSING_IMAGE, "the pull failed", "--harness-rabbitmq-image")


def test_docker_container_that_never_becomes_ready(
    run_scenario: RunScenario, docker_setup: DockerSetup, never_ready_image: str, run_containers: RunContainers
) -> None:
    args = (*docker_setup.args(never_ready_image), "--harness-boot-timeout", str(NEVER_READY_BOOT_TIMEOUT_S))
    run = reached_the_scenario(run_scenario(*args))
    assert_no_container_left(run, run_containers)
    # The stated bound, what the probe saw last, and the container's log (empty: sleep says nothing).
    assert_ended_with_one_sentence(
        run,
        "did not answer on AMQP port",
        f"within {NEVER_READY_BOOT_TIMEOUT_S}s",
        "last seen",
        "AMQP port",
        "its log ends",
    )
    assert run.seconds >= NEVER_READY_BOOT_TIMEOUT_S, f"the run gave up after {run.seconds:.1f}s, before its bound"


@needs_system_broker
def test_beat_whose_scheduler_does_not_import(run_scenario: RunScenario) -> None:
    spec = 'demo().replace(beats=(BeatSpec(scheduler="no_such_package.schedulers:DatabaseScheduler"),))'
    run = run_scenario(*SYSTEM, conftest=stack_spec_conftest(spec))
    assert_ended_with_one_sentence(run, "beat exited while starting", "no_such_package.schedulers", "does not import")


@needs_system_broker
def test_beat_of_an_app_without_a_beat_schedule(run_scenario: RunScenario) -> None:
    spec = 'demo().replace(beats=(BeatSpec(celery_config={"beat_schedule": {}}),))'
    run = run_scenario(*SYSTEM, conftest=stack_spec_conftest(spec))
    assert_ended_with_one_sentence(run, "beat exited while starting", "has no beat_schedule", "give the BeatSpec")
