"""``python -m harness up``: the broker and the stack, up until Ctrl-C, for a person to drive by hand.

The broker comes from the same options as the plugin's (``--harness-broker local``, ``docker``, ``url``...,
or their ini keys), the stack is the checkout's (``harness_stack``, or ``--celery-app`` / ``--web-app``),
in a space of its own (a RabbitMQ vhost, a Redis database: ``--harness-transport``), with the same launcher,
journal and ledger as a scenario. Then one screen says where the page and the broker are (the management UI,
or the ``redis-cli`` line) and the exact commands to drive each program and the broker (``harness.screen``),
and a status line follows what happens (``harness.status``); between two lines ``up`` answers the broker
controls that ``ctl broker ...`` asks for (``harness.control``). ``--env NAME=VALUE``
reaches every program (over the stack's own values): the demo's ``HELLO_WORK_SECONDS=2`` makes a drain
slow enough to watch.

Ctrl-C, SIGTERM or ``python -m harness down`` tears everything down: programs, supervisord, the space,
broker (if the harness started it), temporary directories and the state file (``harness.state``).
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path

from harness import cli_options, screen
from harness.brokers.select import BrokerOptions, make_broker, resolve_transport
from harness.control import BrokerControls, ControlServer, socket_path
from harness.errors import HarnessError
from harness.introspect import routed_queues
from harness.redeploy import parse_env
from harness.spec import BeatSpec, StackSpec
from harness.standalone import running
from harness.state import STATE_HELP, StackState, path_for
from harness.status import StatusReader
from harness.waiting import WaitTimeout, eventually


def with_env(spec: StackSpec, env: Mapping[str, str]) -> StackSpec:
    """The stack with ``env`` in every program's environment, over the values the stack sets itself."""
    if not env:
        return spec
    web = dataclasses.replace(spec.web, env={**spec.web.env, **env}) if spec.web is not None else None
    workers = tuple(dataclasses.replace(w, env={**w.env, **env}) for w in spec.workers)
    return spec.replace(env={**spec.env, **env}, web=web, workers=workers)


@contextmanager
def stop_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP end ``up`` as Ctrl-C does; once the teardown has begun, further signals are ignored
    so that a second Ctrl-C cannot leave half a stack behind. A SIGINT the shell told us to ignore (a
    background job) stays ignored."""
    handled = [signal.SIGTERM, signal.SIGHUP]
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        handled.append(signal.SIGINT)
    before = {sig: signal.getsignal(sig) for sig in handled}

    def stop(signum: int, frame: object) -> None:
        for sig in handled:
            signal.signal(sig, signal.SIG_IGN)
        raise KeyboardInterrupt

    for sig in handled:
        signal.signal(sig, stop)
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def app_queues(spec: StackSpec, folder: Path) -> tuple[tuple[str, ...], tuple[str, ...], str | None]:
    """The app's queues (purged where no management API lists a vhost's queues), those its tasks are routed
    to (each needs a consumer: one no worker consumes is a problem on the screen and the status line), and the
    broker family the app is configured for (``--harness-transport auto`` follows it)."""
    if not spec.celery_app:
        return (), (), None
    from harness.app_info import introspect, own_transport

    cwd = str(Path(spec.cwd or folder).resolve())
    info = introspect(spec.celery_app, cwd, spec.python, env=spec.env)
    return tuple(info["queues"]), routed_queues(info), own_transport(info)


def resolved(options: BrokerOptions, app_transport: str | None) -> BrokerOptions:
    """The options with the family resolved as the plugin resolves it (``auto``: the URL's, else the app's own)."""
    transport, why = resolve_transport(options, app_transport)
    if why:
        print(f"harness: transport {transport} (auto: {why})", flush=True)
    return dataclasses.replace(options, transport=transport)


class StatusLine:
    """The status line: rewritten in place on a terminal, else printed whenever it changes."""

    def __init__(self, reader: StatusReader, stream=sys.stdout) -> None:
        self.reader = reader
        self.stream = stream
        self.tty = stream.isatty()
        self.last = ""

    def show(self) -> None:
        text = f"status: {self.reader.read().line()}"
        if self.tty:
            self.stream.write("\r\x1b[K" + text)
            self.stream.flush()
        elif text != self.last:
            print(text, file=self.stream, flush=True)
        self.last = text

    def end(self) -> None:
        if self.tty and self.last:
            self.stream.write("\n")


def up(args: argparse.Namespace) -> int:
    folder = Path.cwd()
    state_path = path_for(args.state, folder)
    existing = StackState.read_if_any(state_path)
    if existing is not None:
        if existing.alive:
            raise HarnessError(
                f"a stack is already up here (pid {existing.pid}, {state_path}): use it, end it with "
                "python -m harness down, or give this one another --state file"
            )
        raise HarnessError(
            f"{state_path} is left by a stack whose process (pid {existing.pid}) died: python -m harness down "
            "cleans up after it"
        )
    spec = with_env(cli_options.stack_spec(args, folder), parse_env(args.env))
    if getattr(args, "beat", False) and not spec.beats:
        spec = spec.replace(beats=(BeatSpec(),))
    work_root = Path(tempfile.mkdtemp(prefix="harness-up-"))
    try:
        with stop_signals():
            try:
                serve(args, spec, folder, state_path, work_root)
            except KeyboardInterrupt:
                print("\nharness: tearing everything down ...", flush=True)
    finally:
        state_path.unlink(missing_ok=True)
        shutil.rmtree(work_root, ignore_errors=True)
    print("harness: everything is down", flush=True)
    return 0


def serve(args: argparse.Namespace, spec: StackSpec, folder: Path, state_path: Path, work_root: Path) -> None:
    options = cli_options.broker_options(args, str(work_root), folder)  # a bad value is said before any work
    # Before the broker boots: an app that does not import is said at once.
    queues, routed, own = app_queues(spec, folder)
    broker = make_broker(resolved(options, own))
    try:
        print(f"harness: starting the {broker.kind} {broker.product} broker ...", flush=True)
        started = time.monotonic()
        broker.start()
        broker_s = time.monotonic() - started
        problem = getattr(broker, "management_problem", None)
        if problem:
            print(f"harness: {problem}", flush=True)
        print(f"harness: broker up in {broker_s:.1f} s; starting the stack ...", flush=True)
        started = time.monotonic()
        purged = queues  # a shared space (a url broker without a management API, a url Redis) purges them
        with running(broker, spec, work_root, "up", purged, cwd=str(folder)) as stack:
            stack_s = time.monotonic() - started
            with ExitStack() as closing:  # before the stack closes: a frozen broker thawed, an alarm cleared
                controls = BrokerControls(broker, stack.vhost)
                closing.callback(controls.close)
                server = ControlServer(socket_path(work_root), controls)
                closing.callback(server.close)
                state = StackState.of("up", "harness up", stack.stack, broker, queues, work_root)
                state.routed_queues = list(routed)
                state.control_socket = str(server.path)
                reader = StatusReader(state, stack.vhost.reader())
                closing.callback(reader.close)
                state.write(state_path)
                headline = (
                    f"harness up: the stack is ready (broker {broker.kind} up in {broker_s:.1f} s, "
                    f"stack up in {stack_s:.1f} s after it)"
                )
                first = first_status(reader)
                print("\n" + screen.render(state, state_path, list(first.queues), headline, first.problems), flush=True)
                print(f"\nstop everything: Ctrl-C here, or {screen.command(state_path, 'down')}\n", flush=True)
                line = StatusLine(reader)
                closing.callback(line.end)
                while True:
                    line.show()
                    # Until the next line: answer a ctl broker request, if one comes (else a display refresh).
                    if server.serve(args.status_every) is not None:
                        pid = getattr(broker, "pid", None) if broker.owned else None
                        if pid != state.broker_pid:  # a restarted local server: down must find the new one
                            state.broker_pid = pid
                            state.write(state_path)
    finally:
        broker.close()


CONSUMERS_SETTLE_S = 3.0  # a worker just online may not be counted on its queue yet


def first_status(reader: StatusReader):
    """The status for the screen: a queue that a worker just online consumes may show no consumer for a
    moment; give the count a few seconds before calling it a problem."""
    try:
        return eventually(
            reader.read, until=lambda status: not any("has no consumer" in p for p in status.problems),
            timeout=CONSUMERS_SETTLE_S, what="every routed queue to have a consumer",
        )  # fmt: skip
    except WaitTimeout:
        return reader.read()  # a queue that no worker consumes: the screen says so


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness up", description=__doc__.split("\n\n")[0])
    cli_options.add_broker_and_stack(parser)
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE",
        help="set in every program's environment, over the stack's own (repeatable), e.g. HELLO_WORK_SECONDS=2",
    )  # fmt: skip
    parser.add_argument(
        "--beat", action="store_true",
        help="run celery beat too, on the app's own beat_schedule (a stack that has beats runs them anyway)",
    )  # fmt: skip
    parser.add_argument("--state", type=Path, help=STATE_HELP)
    parser.add_argument("--status-every", type=float, default=1.0, help="seconds between status lines (default 1)")
    args = parser.parse_args(argv)
    try:
        return up(args)
    except HarnessError as error:
        print(f"harness: {error}", file=sys.stderr)
        return 2
