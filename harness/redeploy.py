"""Deploying another version of one program: new environment variables, or another app, then a restart.

What ops do when they roll out a new web app or worker: the program's environment changes (``--env
NAME=VALUE``) or it runs other code (``--celery-app module:app`` for a worker, ``--web-app module:app`` for
the web program), and it is restarted with it. Used by ``AppStack.deploy`` (scenarios) and by ``python -m
harness ctl deploy`` (by hand), both on the same supervisord: the program's launcher configuration is
rewritten, then supervisord's own (see ``Supervisor.replace_program``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.supervisor import Program, Supervisor

# Which key of the launcher's configuration names the program's code, by role.
APP_KEYS = {"worker": "celery_app", "beat": "celery_app", "web": "web_app"}


def config_path(program: Program) -> Path:
    """The launcher configuration of a program (``python -m harness.launcher --config PATH``)."""
    try:
        return Path(program.command[program.command.index("--config") + 1])
    except (ValueError, IndexError):
        raise HarnessError(f"{program.name} was not started through the harness's launcher") from None


def program_config(program: Program) -> dict[str, Any]:
    return json.loads(config_path(program).read_text())


def parse_env(pairs: list[str]) -> dict[str, str]:
    """``["NAME=VALUE", ...]`` as a mapping; anything else is one sentence."""
    env = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise HarnessError(f"--env {pair!r} is not NAME=VALUE")
        env[name] = value
    return env


def deploy(supervisor: Supervisor, name: str, env: Mapping[str, str] | None = None, app: str | None = None) -> str:
    """Restart program ``name`` with ``env`` over its environment and, if given, ``app`` as its code; returns what
    changed (``HELLO_PRODUCER=v2 (was v1)``). The caller waits until it is ready."""
    if name not in supervisor.programs:
        raise HarnessError(f"the stack has no program {name!r}; its programs: {sorted(supervisor.programs)}")
    program = supervisor.programs[name]
    changes = [f"{k}={v} (was {program.environment.get(k, 'unset')})" for k, v in (env or {}).items()]
    if app:
        config = program_config(program)
        key = APP_KEYS.get(config.get("role", ""))
        if key is None:
            raise HarnessError(f"{name} is a {config.get('role')!r} program, which runs no app of its own")
        changes.append(f"{key}={app} (was {config.get(key)})")
        config[key] = app
        config_path(program).write_text(json.dumps(config, indent=1))
    if not changes:
        raise HarnessError(f"nothing to deploy to {name}: give --env NAME=VALUE, --celery-app or --web-app")
    environment = {**program.environment, **(env or {})}
    supervisor.replace_program(dataclasses.replace(program, environment=environment))
    return ", ".join(changes)
