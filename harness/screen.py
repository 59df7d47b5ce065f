"""The screen a person reads to drive a stack by hand: where the web app and the broker are (RabbitMQ's
management UI, or the ``redis-cli`` line that shows the stack's Redis database), the exact commands to stop,
start, kill and redeploy each program and to fault the broker, and how to end it all.

Shown by ``harness up`` and by a scenario kept up with ``--keep-on-failure``; everything comes from the
state file (``harness.state``), so the commands it prints are the ones that work on that stack.
"""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path
from urllib.parse import quote

import requests

from harness.state import StackState, default_path

CONTROLS = (
    ("stop", "worker", "supervisorctl stop: TERM to its process group; waiting tasks stay in the queue"),
    ("start", "worker", "start it, and wait until it is ready"),
    ("kill", "worker", "SIGKILL to its whole process group: the machine died"),
    ("restart", "web", "stop, then start"),
    ("logs", "worker", "the end of its log (stderr; -f to follow)"),
    ("status", None, "programs, queues, workers online, tasks so far (--json for scripts)"),
)


def _shown(path: Path) -> str:
    """A path as short as it can be from the working directory."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def harness_command() -> str:
    """How to run the harness's commands from this shell: ``python -m harness`` when ``python`` on PATH is this
    interpreter, else this interpreter's own path."""
    found = shutil.which("python")
    if found and Path(found).absolute() == Path(sys.executable).absolute():
        return "python -m harness"
    return f"{_shown(Path(sys.executable))} -m harness"


def command(state_path: Path, subcommand: str) -> str:
    """How to run ``subcommand`` (``ctl``, ``down``) on the stack whose state file is ``state_path``: with
    ``--state`` when it is not the default one."""
    line = f"{harness_command()} {subcommand}"
    if state_path.absolute() != default_path().absolute():
        line += f" --state {shlex.quote(_shown(state_path))}"
    return line


def supervisorctl_command() -> str:
    found = Path(sys.executable).with_name("supervisorctl")
    return _shown(found) if found.exists() else f"{_shown(Path(sys.executable))} -m supervisor.supervisorctl"


def management_where(url: str | None, user: str, password: str, vhost: str) -> str:
    """Where the management UI of a stack's broker is, and how to log in and find its vhost, on one line."""
    if not url:
        return "none: this broker has no management API (queues are read over AMQP)"
    return f"{url}/#/queues   user {user}, password {password}, vhost {vhost}"


def redis_where(url: str) -> str:
    """Where a stack's Redis database is, and the ``redis-cli`` line that looks at it (its queues are lists)."""
    from harness.brokers.redis.base import parse_redis_url

    e = parse_redis_url(url, "the state file's url")
    words = ["redis-cli"] + (["-h", e.host] if e.host not in ("127.0.0.1", "localhost") else []) + ["-p", str(e.port)]
    if e.password is not None:
        words += (["--user", e.user] if e.user else []) + ["-a", e.password, "--no-auth-warning"]
    cli = " ".join(shlex.quote(w) for w in [*words, "-n", str(e.db)])
    return f"{e.host}:{e.port}, database {e.db}   {cli}   (a queue is a list: LLEN <queue>; held tasks: HLEN unacked)"


def management_links(state: StackState, queues: list[str]) -> list[str]:
    if state.transport == "redis":
        return [f"Redis          {redis_where(state.url)}"]
    where = management_where(state.management_url, state.user, state.password, state.vhost)
    lines = [f"RabbitMQ UI    {where}"]
    vhost = quote(state.vhost, safe="")
    if state.management_url:
        lines += [f"               {state.management_url}/#/queues/{vhost}/{quote(q, safe='')}" for q in queues]
    return lines


def root_note(web_url: str, timeout: float = 3.0) -> str:
    """What the web app's root path answers, when that is not a page: an API may have none (checked once)."""
    try:
        answer = requests.get(f"{web_url}/", timeout=timeout, allow_redirects=True)
    except requests.RequestException as exc:
        return f" (/ did not answer: {type(exc).__name__})"
    if answer.status_code == 404:
        return " (no page at /: an API)"
    return "" if answer.ok else f" (/ answers {answer.status_code})"


def broker_controls(state: StackState, ctl: str) -> list[str]:
    """The ``ctl broker`` lines the stack's family offers (only ``harness up`` answers them)."""
    from harness.control import ACTIONS, STOPS

    if not state.control_socket:
        return []
    kinds, _, how = STOPS.get(state.transport, "HOW: ").partition(": ")
    offered = [
        (f"{ctl} broker {name} {args.replace('HOW', kinds)}".rstrip(), what.replace("HOW: see STOPS", how))
        for name, (families, args, what) in ACTIONS.items() if state.transport in families
    ]  # fmt: skip
    width = max(len(command) for command, _ in offered)
    return ["", f"the broker ({state.broker_kind} {state.transport}):", *(f"  {c:<{width}}  {w}" for c, w in offered)]


def render(
    state: StackState, state_path: Path, queues: list[str] = (), headline: str = "", problems: list[str] = ()
) -> str:
    """The screen, as text. ``queues``: the queues to link in the management UI; ``problems``: what the first
    status read found wrong (a queue no worker consumes)."""
    ctl = command(state_path, "ctl")
    workers = [name for name, role in state.programs.items() if role == "worker"]
    web = next((name for name, role in state.programs.items() if role == "web"), None)
    example = {"worker": workers[0] if workers else None, "web": web or (workers[0] if workers else None)}
    lines = [headline, ""] if headline else []
    if state.web_url:
        lines.append(f"the web app    {state.web_url}/{root_note(state.web_url)}")
    lines += management_links(state, list(queues))
    if problems:
        lines += ["", "problems:", *(f"  {problem}" for problem in problems)]
    lines += ["", f"the programs ({', '.join(state.programs)}), under supervisord:"]
    commands = []
    for action, kind, what in CONTROLS:
        program = example[kind] if kind else ""
        if kind and not program:
            continue
        commands.append((f"{ctl} {action} {program}".rstrip(), what))
    width = max(len(command) for command, _ in commands)
    lines += [f"  {command:<{width}}  {what}" for command, what in commands]
    lines += [
        "  the same with supervisorctl itself:",
        f"  {supervisorctl_command()} -c {_shown(Path(state.supervisor_conf))} stop {example['worker'] or web}",
        *broker_controls(state, ctl),
        "",
        "deploy another version (the program restarts with it):",
    ]
    if state.deploys:
        for program, choices in state.deploys.items():
            current, *others = choices[1:] + choices[:1] if len(choices) > 1 else choices
            lines.append(f"  {ctl} deploy {program} {current}")
            if others:
                lines.append(f"      or: {'; '.join(others)}")
    else:
        lines.append(
            f"  {ctl} deploy <program> --env NAME=VALUE (its environment), --celery-app module:app (a "
            "worker's code) or --web-app module:app (the web app's code)"
        )
    return "\n".join(lines)
