"""``python -m harness up``, ``ctl`` and ``down``: the by-hand demo (docs/guides/by-hand.md) replayed, and nothing
left behind.

Each case starts ``python -m harness up`` from the checkout (its ``harness_stack`` is the demo) in a real
subprocess with a private TMPDIR and its own state file (``HARNESS_STATE``), so that the guide's commands
run verbatim: the walkthrough drives the page over HTTP, reads the queue in the management API, and runs
``python -m harness ctl ...`` exactly as the guide prints it. SIGINT reaches the child even when these tests run
as a background job, which ignores SIGINT: tests/conftest.py gives the test process Python's handler back, so
its children start with the default.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis
import requests
from kombu import Connection
from run_leftovers import describe, kill, survivors

from harness.brokers.rabbitmq.management import ManagementAPI
from harness.up import with_env
from harness.waiting import WaitTimeout, eventually, never
from harness.web import WebClient

if TYPE_CHECKING:
    from conftest import DockerSetup, RunContainers

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "guides" / "by-hand.md"  # "Try it by hand", linked from the README

# The guide's commands ("Try it by hand"), run verbatim.
UP = "python -m harness up --harness-broker local --env HELLO_WORK_SECONDS=2"
STOP = "python -m harness ctl stop worker_hello"
START = "python -m harness ctl start worker_hello"
DEPLOY_V2 = "python -m harness ctl deploy web --env HELLO_PRODUCER=v2"
LOGS = "python -m harness ctl logs worker_hello"
STATUS = "python -m harness ctl status"
DOWN = "python -m harness down"
GUIDE_COMMANDS = (UP, STOP, START, DEPLOY_V2, LOGS, STATUS, DOWN)

WORK_S = 2.0  # HELLO_WORK_SECONDS in UP
INLINE_S = 2.0  # the demo's inline work (INLINE_WORK_SECONDS)
CLICK_BOUND_S = 1.0  # a Celery click only publishes a message
BROKER_AND_STACK_TIMEOUT_S = 120.0  # a broker boot (~6-12 s) and the stack, on a loaded machine
STACK_AFTER_BROKER_S = 15.0  # the bound: the demo is up within 15 s of the broker
EXIT_TIMEOUT_S = 60.0


def command_argv(command: str) -> list[str]:
    """A command of the guide (``python -m harness ...``) as this interpreter runs it."""
    words = shlex.split(command)
    assert words[0] == "python", command
    return [sys.executable, *words[1:]]


@dataclass
class Up:
    """One ``harness up`` in a subprocess, with its private TMPDIR and state file."""

    root: Path
    cwd: Path = ROOT  # the folder harness up runs in: its checkout (ini, app)
    process: subprocess.Popen | None = None
    containers: RunContainers | None = None
    socket_dirs: list[Path] = field(default_factory=list)

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def state_path(self) -> Path:
        return self.root / "up.json"

    @property
    def output_path(self) -> Path:
        return self.root / "up-output.txt"

    def env(self) -> dict[str, str]:
        env = {**os.environ, "TMPDIR": str(self.tmp), "HARNESS_STATE": str(self.state_path)}
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def output(self) -> str:
        return self.output_path.read_text(errors="replace") if self.output_path.exists() else "(no output)"

    def start(self, command: str = UP, broker_args: tuple[str, ...] = ()) -> dict:
        """Start ``command`` (with ``broker_args`` instead of its own broker flags, if given) and wait until the
        stack is up: its state file exists. Returns the state."""
        self.tmp.mkdir(parents=True)
        argv = command_argv(command)
        if broker_args:
            at = argv.index("--harness-broker")
            argv[at : at + 2] = list(broker_args)
        with self.output_path.open("wb") as output:
            self.process = subprocess.Popen(
                argv, cwd=self.cwd, env=self.env(), stdin=subprocess.DEVNULL,
                stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        eventually(
            lambda: self.state_path.exists() or self.process.poll() is not None, timeout=BROKER_AND_STACK_TIMEOUT_S,
            what="harness up to write its state file (the stack is up)", interval=0.2,
        )  # fmt: skip
        assert self.state_path.exists(), f"harness up ended before its stack was up:\n{self.output()}"
        # The state file is written just before the screen is printed: wait for the screen too.
        eventually(
            lambda: "stack up in" in self.output() or self.process.poll() is not None, timeout=10,
            what="harness up to print its screen", interval=0.1,
        )  # fmt: skip
        state = json.loads(self.state_path.read_text())
        self.socket_dirs.append(Path(state["supervisor_socket"]).parent)
        return state

    def run(self, command: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        """A command of the guide, in the checkout, on this stack (HARNESS_STATE)."""
        return subprocess.run(
            command_argv(command), cwd=ROOT, env=self.env(), capture_output=True, text=True, timeout=timeout
        )

    def status(self) -> dict:
        done = self.run(f"{STATUS} --json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def wait_exit(self, timeout: float = EXIT_TIMEOUT_S) -> int:
        assert self.process is not None
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"harness up did not exit within {timeout:.0f}s; its output:\n{self.output()}")

    def leftovers(self) -> tuple[list, list[str], list[str]]:
        processes = survivors(self.tmp)
        files = sorted(p.name for p in self.tmp.iterdir()) + [str(p) for p in [self.state_path] if p.exists()]
        files += [str(d) for d in self.socket_dirs if d.exists() and not d.is_relative_to(self.tmp)]
        containers = self.containers.of(self.process.pid) if self.containers and self.process else []
        return processes, files, containers

    def assert_nothing_left(self) -> None:
        try:
            eventually(self.leftovers, until=lambda left: not any(left), timeout=5, what="the run's leftovers to go")
        except WaitTimeout:
            processes, files, containers = self.leftovers()
            pytest.fail(
                f"harness up left {[describe(p) for p in processes]}, files {files}, containers {containers}\n"
                f"--- its output ---\n{self.output()[-3000:]}"
            )


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    run = Up(tmp_path)
    yield run
    print(f"--- harness up's output (tail) ---\n{run.output()[-4000:]}")  # shown when the test failed
    if run.process is not None and run.process.poll() is None:
        run.process.send_signal(signal.SIGTERM)
        try:
            run.process.wait(timeout=EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            run.process.kill()
    kill(survivors(run.tmp))


@pytest.fixture(params=["local", "docker"])
def broker_args(request: pytest.FixtureRequest, up: Up) -> tuple[str, ...]:
    """The guide's local broker, or the docker provider (skipped, saying why, without an engine or image)."""
    if request.param == "docker":
        setup: DockerSetup = request.getfixturevalue("docker_setup")
        up.containers = request.getfixturevalue("run_containers")
        return setup.args()
    return ()


def post_hello(web: WebClient) -> tuple[requests.Response, float]:
    started = time.monotonic()
    answer = web.request("POST", "/hello", json={})
    return answer, time.monotonic() - started


def ready_in(state: dict, queue: str) -> int:
    """Ready messages, exact, over AMQP (a passive declare)."""
    with Connection(state["url"], connect_timeout=3) as connection:
        return connection.default_channel.queue_declare(queue=queue, passive=True)[1]


def redis_of(state: dict) -> redis.Redis:
    """A client on the stack's own Redis database (the state file's URL)."""
    return redis.Redis.from_url(state["url"], socket_timeout=3)


def test_the_by_hand_guide_shows_the_commands_this_test_runs() -> None:
    missing = [command for command in GUIDE_COMMANDS if command not in GUIDE.read_text()]
    assert not missing, f"the guide 'Try it by hand' does not show: {missing}"


def test_the_by_hand_walkthrough_replays_against_harness_up(up: Up, broker_args: tuple[str, ...]) -> None:
    state = up.start(UP, broker_args)
    stack_s = float(re.search(r"stack up in ([\d.]+) s after it", up.output())[1])
    assert stack_s <= STACK_AFTER_BROKER_S, f"the stack took {stack_s} s after the broker:\n{up.output()}"
    # One stack per folder (state file): a second up says so at once.
    second = up.run(UP, timeout=30)
    assert second.returncode == 2 and "already up" in second.stderr, second
    web = WebClient(state["web_url"])
    management = ManagementAPI(state["management_url"], state["user"], state["password"])

    # 1. The inline click: the work runs inside the request, and the whole site waits for it.
    slow = web.begin("POST", "/hello/inline")
    page_wait = web.time_page("/")
    status, inline_s = slow.finish()
    assert status == 200 and inline_s >= INLINE_S, (status, inline_s)
    assert page_wait >= INLINE_S * 0.75, f"the page answered in {page_wait:.2f}s while the inline work ran"

    # 2. The Celery click answers at once; the worker does the work.
    answer, click_s = post_hello(web)
    assert answer.status_code == 202 and click_s < CLICK_BOUND_S, (answer.status_code, click_s)
    eventually(up.status, until=lambda s: s["tasks"]["succeeded"] == 1, timeout=15, what="the first task to succeed")

    # 3. Stop the worker (the guide's command), 4. click five times.
    assert up.run(STOP).returncode == 0
    assert up.status()["programs"]["worker_hello"] == "STOPPED"
    for _ in range(5):
        answer, click_s = post_hello(web)
        assert answer.status_code == 202 and click_s < CLICK_BOUND_S, (answer.status_code, click_s)

    # 5. Five messages ready, as the management UI shows them (its API; its counters lag a little).
    eventually(
        lambda: management.queues(state["vhost"]).get("hello_queue"), until=lambda q: q is not None and q.ready == 5,
        timeout=15, what="the management API to show 5 ready messages in hello_queue",
    )  # fmt: skip

    # 6. Start the worker and watch the drain: five 2 s tasks, one after the other.
    started = time.monotonic()
    done = up.run(START)
    assert done.returncode == 0, done.stderr
    final = eventually(
        up.status, until=lambda s: s["tasks"]["succeeded"] == 6, timeout=5 * WORK_S + 20,
        what="the backlog to drain (6 succeeded)",
    )  # fmt: skip
    drain_s = time.monotonic() - started
    assert drain_s >= 5 * WORK_S * 0.9, f"five {WORK_S} s tasks drained in {drain_s:.1f} s"
    assert final["queues"]["hello_queue"]["ready"] == 0 and final["workers_online"] == ["worker_hello"], final

    # 7. Deploy the v2 producer; 8. a click fails on the worker with TypeError, and the queue stays empty.
    done = up.run(DEPLOY_V2)
    assert done.returncode == 0, done.stderr
    answer, _ = post_hello(web)
    assert answer.status_code == 202, answer.text
    failed = eventually(
        up.status, until=lambda s: s["tasks"]["failed"] == 1, timeout=15, what="the v2 click's task to fail"
    )
    assert failed["failures"] == {"TypeError": 1} and failed["tasks"]["succeeded"] == 6, failed
    never(
        lambda: ready_in(state, "hello_queue"), until=lambda n: n != 0, for_=1.0,
        what="hello_queue holds a message although the failed task was consumed",
    )  # fmt: skip
    logs = up.run(LOGS)
    # The guide promises this line in the worker's log: check the promise, not Celery's wording elsewhere.
    assert logs.returncode == 0 and "TypeError" in logs.stdout, logs.stdout[-2000:]

    # 9. Down: everything goes, and up itself exits cleanly.
    done = up.run(DOWN, timeout=EXIT_TIMEOUT_S + 10)
    assert done.returncode == 0, done.stderr
    assert up.wait_exit() == 0, up.output()
    up.assert_nothing_left()


def test_ctrl_c_tears_everything_down(up: Up) -> None:
    state = up.start()
    assert WebClient(state["web_url"]).ready("/healthz")
    assert survivors(up.tmp), "no process of the run seen before Ctrl-C: the leak check would prove nothing"
    os.kill(up.process.pid, signal.SIGINT)
    assert up.wait_exit() == 0, up.output()
    assert "everything is down" in up.output()
    up.assert_nothing_left()


def test_down_cleans_up_after_an_up_that_was_killed(up: Up) -> None:
    up.start()
    os.kill(up.process.pid, signal.SIGKILL)  # up cannot clean up: its broker node and supervisord live on
    up.wait_exit()
    assert survivors(up.tmp), "nothing outlived the killed up: the test would prove nothing"
    done = up.run(DOWN)
    assert done.returncode == 0 and "had died" in done.stdout, (done.stdout, done.stderr)
    up.assert_nothing_left()


def test_ctl_without_a_stack_says_how_to_start_one(tmp_path: Path) -> None:
    env = {**os.environ, "HARNESS_STATE": str(tmp_path / "none.json")}
    done = subprocess.run(command_argv(STATUS), cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "python -m harness up" in done.stderr, done.stderr


def test_env_reaches_every_program_over_the_stacks_own_values() -> None:
    from app_under_test.stack import demo

    spec = with_env(demo(), {"HELLO_PRODUCER": "v2", "HELLO_WORK_SECONDS": "2"})
    assert spec.web.env["HELLO_PRODUCER"] == "v2" and spec.env["HELLO_WORK_SECONDS"] == "2"
    assert all(w.env["HELLO_WORK_SECONDS"] == "2" for w in spec.workers)


def test_down_with_nothing_up_says_so_and_succeeds(tmp_path: Path) -> None:
    """A CI job's "always tear down" step runs down whether or not a stack came up."""
    state = tmp_path / "none.json"
    env = {**os.environ, "HARNESS_STATE": str(state)}
    done = subprocess.run(command_argv(DOWN), cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "nothing is up here" in done.stdout and not state.exists()


# An app as a new user brings it (the trial report): late acknowledgement, one task prefetched, and a task
# routed to a second queue that the one default worker of ``--celery-app`` does not consume.
TWO_QUEUES_APP = """
import os
import time

from celery import Celery

app = Celery("twoqueues")
app.conf.update(
    task_default_queue="orders", task_routes={"twoqueues.notify": {"queue": "notifications"}},
    task_acks_late=True, worker_prefetch_multiplier=1,
)


@app.task(name="twoqueues.process")
def process(seconds, marker):
    if not os.path.exists(marker):  # the first run works long enough to be killed; a rerun ends at once
        open(marker, "w").close()
        time.sleep(seconds)


@app.task(name="twoqueues.notify")
def notify():
    pass
"""
KILLED_WORK_S = 60.0  # the first run's: it is killed long before it ends


def test_the_status_counts_a_killed_run_as_queued_then_duplicated_and_names_an_unconsumed_queue(up: Up) -> None:
    from celery import Celery

    up.cwd = up.root / "app"
    up.cwd.mkdir()
    (up.cwd / "twoqueues.py").write_text(TWO_QUEUES_APP)
    state = up.start("python -m harness up --harness-broker local --celery-app twoqueues:app")
    screen = up.output()
    assert "problems:\n  queue notifications has no consumer" in screen, screen
    assert "queue orders has no consumer" not in screen, "the default worker consumes the default queue"
    status = up.status()
    assert "queue notifications has no consumer" in status["problems"], status

    producer = Celery("producer", broker=state["url"])
    producer.conf.task_default_queue = "orders"
    producer.send_task("twoqueues.process", args=[KILLED_WORK_S, str(up.cwd / "ran-once")])
    eventually(up.status, until=lambda s: s["tasks"]["running"] == 1, timeout=20, what="the task to be running")
    assert up.run("python -m harness ctl kill worker").returncode == 0
    killed = eventually(
        up.status, until=lambda s: s["tasks"]["running"] == 0, timeout=10, what="the killed run to stop counting"
    )
    assert killed["tasks"].get("queued") == 1 and killed["queues"]["orders"]["ready"] == 1, killed
    assert up.run("python -m harness ctl start worker").returncode == 0
    final = eventually(
        up.status, until=lambda s: s["tasks"]["running"] == 0 and s["tasks"].get("duplicated") == 1,
        timeout=30, what="the redelivered run to end: the task ran twice",
    )  # fmt: skip
    assert final["tasks"]["succeeded"] == 0 and not final["tasks"].get("queued"), final
    assert "1 duplicated" in up.run(STATUS).stdout

    done = up.run(DOWN, timeout=EXIT_TIMEOUT_S + 10)
    assert done.returncode == 0, done.stderr
    assert up.wait_exit() == 0, up.output()
    up.assert_nothing_left()


# The same by hand on Redis: the stack in a database of its own on a private redis-server.
UP_REDIS = "python -m harness up --harness-transport redis --harness-broker local --env HELLO_WORK_SECONDS=2"
CTL_BROKER = "python -m harness ctl broker"


def test_up_on_redis_shows_its_database_reads_its_queues_and_faults_its_server(up: Up) -> None:
    state = up.start(UP_REDIS)
    assert state["transport"] == "redis" and state["vhost"] == f"db {state['url'].rsplit('/', 1)[1]}", state
    port, db = re.fullmatch(r"redis://127\.0\.0\.1:(\d+)/(\d+)", state["url"]).groups()
    assert f"redis-cli -p {port} -n {db}" in up.output() and "RabbitMQ UI" not in up.output(), up.output()
    assert "broker kill-connections" in up.output() and "broker alarm" not in up.output()
    web = WebClient(state["web_url"])

    # The worker stopped, three clicks wait in hello_queue: the status reads them from Redis, as redis-cli would.
    assert up.run(STOP).returncode == 0
    for _ in range(3):
        answer, click_s = post_hello(web)
        assert answer.status_code == 202 and click_s < CLICK_BOUND_S, (answer.status_code, click_s)
    waiting = eventually(
        up.status, until=lambda s: (s["queues"].get("hello_queue") or {}).get("ready") == 3, timeout=15,
        what="the status to show 3 ready messages in hello_queue",
    )  # fmt: skip
    with redis_of(state) as client:
        assert client.llen("hello_queue") == 3
    assert "queue hello_queue has no consumer" in waiting["problems"] and waiting["workers_online"] == [], waiting

    # The worker back: it holds what it took unacknowledged (Redis's unacked hash), then the backlog drains.
    assert up.run(START).returncode == 0
    eventually(
        up.status, until=lambda s: (s["queues"].get("hello_queue") or {}).get("unacked", 0) >= 1, timeout=10,
        what="the status to show the worker's unacknowledged message",
    )  # fmt: skip
    drained = eventually(
        up.status, until=lambda s: s["tasks"]["succeeded"] == 3, timeout=3 * WORK_S + 20, what="the backlog to drain"
    )
    assert drained["queues"]["hello_queue"] == {"ready": 0, "unacked": 0, "consumers": None}, drained
    assert drained["problems"] == [] and drained["workers_online"] == ["worker_hello"], drained

    # The broker controls: RabbitMQ's refused in one sentence; Redis's own and a restart act on the server up owns.
    refused = up.run(f"{CTL_BROKER} rabbitmqctl status")
    assert refused.returncode == 2 and refused.stderr == (
        "harness: ctl broker rabbitmqctl acts on RabbitMQ; this stack runs on Redis\n"
    ), refused.stderr
    done = up.run(f"{CTL_BROKER} persistence aof-everysec")
    assert done.returncode == 0 and "persistence aof-everysec" in done.stdout, done.stderr
    assert "connection(s) of the stack's programs killed" in up.run(f"{CTL_BROKER} kill-connections").stdout
    pid_before = state["broker_pid"]
    done = up.run(f"{CTL_BROKER} stop")
    assert done.returncode == 0 and "stopped (crash)" in done.stdout, done.stderr
    eventually(
        up.status, until=lambda s: any(p.startswith("queues:") for p in s["problems"]), timeout=10,
        what="the status to say it cannot read the stopped server",
    )  # fmt: skip
    assert up.run(f"{CTL_BROKER} start").returncode == 0
    restarted = json.loads(up.state_path.read_text())
    assert restarted["broker_pid"] not in (None, pid_before), "down must find the restarted server"
    eventually(
        up.status, until=lambda s: not any(p.startswith("queues:") for p in s["problems"]), timeout=10,
        what="the status to read the restarted server",
    )  # fmt: skip

    # Ctrl-C with the server frozen: up thaws it, and everything goes.
    done = up.run(f"{CTL_BROKER} freeze")
    assert done.returncode == 0 and "frozen" in done.stdout, done.stderr
    os.kill(up.process.pid, signal.SIGINT)
    assert up.wait_exit() == 0, up.output()
    up.assert_nothing_left()


def test_down_cleans_up_after_an_up_on_redis_that_was_killed(up: Up) -> None:
    up.start(UP_REDIS)
    os.kill(up.process.pid, signal.SIGKILL)  # up cannot clean up: supervisord and its programs live on
    up.wait_exit()
    assert survivors(up.tmp), "nothing outlived the killed up: the test would prove nothing"
    done = up.run(DOWN)
    assert done.returncode == 0 and "had died" in done.stdout, (done.stdout, done.stderr)
    up.assert_nothing_left()


def test_up_with_beat_shows_its_next_due_run_and_ctl_stops_and_starts_it(up: Up) -> None:
    state = up.start(f"{UP} --beat")
    assert state["programs"]["beat"] == "beat"
    shown = "beat: hello-every-minute every 60s next in"
    status = eventually(
        up.status, until=lambda s: any(b.startswith(shown) for b in s["beats"]), timeout=10,
        what="the status to show beat's entry and when it is next due",
    )  # fmt: skip
    assert status["programs"]["beat"] == "RUNNING"
    stopped = up.run("python -m harness ctl stop beat")
    assert stopped.returncode == 0, stopped.stderr
    assert up.status()["beats"] == ["beat: stopped"], "a stopped beat says so, with no next due run"
    started = up.run("python -m harness ctl start beat")
    assert started.returncode == 0 and "beat: ready in" in started.stdout, (started.stdout, started.stderr)
    os.kill(up.process.pid, signal.SIGINT)
    assert up.wait_exit() == 0, up.output()
    up.assert_nothing_left()
