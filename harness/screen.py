"""The screen a person reads to drive a stack by hand: where the web app and the management UI are, the exact
commands to stop, start, kill and redeploy each program, and how to end it all.

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


def management_links(state: StackState, queues: list[str]) -> list[str]:
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
