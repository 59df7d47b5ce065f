"""The plugin's options: each a command-line flag with an ini twin and an environment variable.

Precedence: the command line, then the ini file (``pytest.ini``, ``[tool.pytest.ini_options]``...), then
the environment, then the default. Names are prefixed (``--harness-...``, ini ``harness_...``) so they
clash with no other plugin (pytest-rabbitmq has ``--rabbitmq-*``); the two that name the app under test
are ``--celery-app`` and ``--web-app``.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.brokers.rabbitmq.docker import DEFAULT_IMAGE, NETWORKS  # plain constants: Docker's client is not imported
from harness.brokers.select import KINDS, TRANSPORT_CHOICES, BrokerOptions


def _flag(value: Any) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Option:
    name: str  # the ini key and the attribute of config.option
    help: str
    default: Any = None
    env: str | None = None
    convert: Callable[[Any], Any] = str
    choices: tuple[str, ...] | None = None
    flag: bool = False  # a switch: --name on the command line, true/false in ini and env

    @property
    def cli(self) -> str:
        return "--" + self.name.replace("_", "-")


OPTIONS = (
    Option(
        "harness_stack",
        "the default stack: a StackSpec, or a function returning one, module:attribute (e.g. proj.testing:stack); "
        "else one is built from --celery-app and --web-app",
        env="HARNESS_STACK",
    ),
    Option(
        "celery_app", "the Celery app under test, module:attribute (e.g. proj.celery:app)", env="HARNESS_CELERY_APP"
    ),
    Option("web_app", "its web app, a WSGI or ASGI object (e.g. proj.wsgi:application)", env="HARNESS_WEB_APP"),
    Option(
        "harness_transport",
        "the broker family: rabbitmq (default), redis, or auto (the app's own broker decides)",
        "rabbitmq",
        "HARNESS_TRANSPORT",
        choices=TRANSPORT_CHOICES,
    ),
    Option(
        "harness_broker",
        "where the broker comes from: auto (default), url, docker, local",
        "auto",
        "HARNESS_BROKER",
        choices=KINDS,
    ),
    Option(
        "harness_broker_url",
        "URL of an existing broker, for the url provider (amqp://... or redis://...)",
        env="HARNESS_BROKER_URL",
    ),
    Option(
        "harness_management_url",
        "management API of that broker (default: http://<host>:15672 if it answers)",
        env="HARNESS_MANAGEMENT_URL",
    ),
    Option(
        "harness_rabbitmq_server",
        "rabbitmq-server script for the local provider (default: the one on PATH)",
        env="HARNESS_RABBITMQ_SERVER",
    ),
    Option(
        "harness_rabbitmq_version",
        "RabbitMQ major version of the broker the harness starts (local, docker): 3 (default) or 4 "
        "(local: a Debian 13 root made by scripts/build-rabbitmq-root; docker: scripts/build-rabbitmq-image 4)",
        "3",
        "HARNESS_RABBITMQ_VERSION",
        choices=("3", "4"),
    ),
    Option("harness_rabbitmq_port", "AMQP port of the local node (default: a free one)", convert=int),
    Option(
        "harness_redis_server",
        "redis-server binary for the local Redis provider (default: the one on PATH)",
        env="HARNESS_REDIS_SERVER",
    ),
    Option(
        "harness_redis_image",
        "image for the docker Redis provider (default harness-redis:7-local, built by scripts/build-redis-image)",
        env="HARNESS_REDIS_IMAGE",
    ),
    Option(
        "harness_rabbitmq_image",
        f"image for the docker provider (default {DEFAULT_IMAGE})",
        env="HARNESS_RABBITMQ_IMAGE",
    ),
    Option(
        "harness_docker_network",
        "bridge (published ports, default) or host (the host's network)",
        "bridge",
        "HARNESS_DOCKER_NETWORK",
        choices=NETWORKS,
    ),
    Option("harness_docker_ryuk", "let testcontainers' reaper run too", False, convert=_flag, flag=True),
    Option(
        "harness_boot_timeout",
        "seconds a broker may take to answer",
        90.0,
        "HARNESS_BROKER_BOOT_TIMEOUT",
        convert=float,
    ),
    Option(
        "harness_ready_timeout",
        "seconds each program may take to be ready, for stacks that do not set StackSpec(ready_timeout=...) "
        "(default 15)",
        env="HARNESS_READY_TIMEOUT",
        convert=float,
    ),
    Option(
        "harness_report",
        "folder of the run report (index.html + data/*.json), relative to the rootdir",
        "harness-report",
        "HARNESS_REPORT",
    ),
    Option("harness_no_report", "write no run report", False, convert=_flag, flag=True),
    Option(
        "harness_deploy_base",
        "the deploy check's base: the running release's git ref (for the deploy_check fixture and "
        "harness.deploy_check_test)",
        env="HARNESS_DEPLOY_BASE",
    ),
    Option(
        "harness_deploy_base_setup",
        "the deploy check's set-up of the base: a shell command run in the base's checkout before it is read "
        "(untracked files the app needs: cp ../settings_local.py . && python manage.py migrate)",
        env="HARNESS_DEPLOY_BASE_SETUP",
    ),
    Option(
        "harness_deploy_calls",
        "how producers call tasks, for the deploy check: positional, keyword or both (default)",
        "both",
        "HARNESS_DEPLOY_CALLS",
        choices=("positional", "keyword", "both"),
    ),
    Option(
        "harness_deploy_prove", "prove the deploy check's verdicts on a mixed fleet", False, convert=_flag, flag=True
    ),
    Option(
        "keep_on_failure",
        "when a scenario fails, keep its vhost, app and workers up and show how to reach them, until Enter "
        "or Ctrl-C (works with --pdb)",
        False,
        "HARNESS_KEEP_ON_FAILURE",
        convert=_flag,
        flag=True,
    ),
    Option(
        "audit_like",
        "the resilience audit's probe is routed like this task of the app and gets its options "
        "(e.g. proj.tasks.send_email); default: the app's default queue and settings",
        env="HARNESS_AUDIT_LIKE",
    ),
    Option(
        "audit_task",
        "audit with this real task of the app instead of the probe (one safe to run again and again)",
        env="HARNESS_AUDIT_TASK",
    ),
    Option("audit_args", "the real task's positional arguments, a JSON list (e.g. '[1]')", env="HARNESS_AUDIT_ARGS"),
    Option(
        "audit_work",
        "seconds the probe works when a fault must land mid-task (default 1.0)",
        env="HARNESS_AUDIT_WORK",
        convert=float,
    ),
    Option(
        "audit_config",
        "Celery settings over the app's own for the audit, a JSON object (e.g. '{\"task_acks_late\": true}')",
        env="HARNESS_AUDIT_CONFIG",
    ),
    Option(
        "audit_expect",
        "the fates the audit accepts, e.g. lost=0,duplicated=0 or worker_killed:duplicated=1 (ini: one per "
        "line); a failure with more fails its test",
        env="HARNESS_AUDIT_EXPECT",
    ),
    Option(
        "audit_redis_persistence",
        "on Redis, the server's persistence for the audit's Redis restart: off (default: nothing kept across a "
        "crash), rdb, aof-everysec, aof-always",
        env="HARNESS_AUDIT_REDIS_PERSISTENCE",
    ),
    Option(
        "audit_json",
        "where the audit writes its table as JSON (default: audit.json in the report folder), relative to the rootdir",
        env="HARNESS_AUDIT_JSON",
    ),
    Option(
        "harness_progress",
        "show long waits' progress: auto (terminals only), on, off",
        "auto",
        choices=("auto", "on", "off"),
    ),
)
BY_NAME = {option.name: option for option in OPTIONS}


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "Celery failure harness")
    for option in OPTIONS:
        extra = f" (ini {option.name}" + (f", env {option.env}" if option.env else "") + ")"
        if option.flag:
            group.addoption(option.cli, action="store_true", default=None, dest=option.name, help=option.help + extra)
        else:
            group.addoption(
                option.cli, default=None, dest=option.name, choices=option.choices, help=option.help + extra
            )
        parser.addini(option.name, option.help, default="")


def get(config: pytest.Config, name: str) -> Any:
    """The option's value: command line > ini > environment > default."""
    option = BY_NAME[name]
    value = config.getoption(name, default=None)
    if value is None:
        value = config.getini(name) or None
    if value is None and option.env:
        value = os.environ.get(option.env) or None
    if value is None:
        return option.default
    converted = option.convert(value)
    if option.choices and converted not in option.choices:
        raise pytest.UsageError(f"{option.cli} {converted!r} is not one of {', '.join(option.choices)}")
    return converted


def origin(config: pytest.Config, name: str) -> str | None:
    """Where the option's value comes from, as a user would write it (``--celery-app``, ``ini celery_app``,
    ``env HARNESS_CELERY_APP``); None when it is not set (the default, or what a fixture chose)."""
    option = BY_NAME[name]
    if config.getoption(name, default=None) is not None:
        return option.cli
    if config.getini(name):
        return f"ini {option.name}"
    if option.env and os.environ.get(option.env):
        return f"env {option.env}"
    return None


# The options a broker is made from, for the tools outside pytest that take the same flags.
BROKER_OPTIONS = (
    "harness_broker", "harness_broker_url", "harness_management_url", "harness_rabbitmq_server",
    "harness_rabbitmq_port", "harness_rabbitmq_image", "harness_docker_network", "harness_docker_ryuk",
    "harness_boot_timeout", "harness_rabbitmq_version", "harness_transport", "harness_redis_server",
    "harness_redis_image",
)  # fmt: skip


def broker_options_with(value: Callable[[str], Any], work_root: str | None = None) -> BrokerOptions:
    """The broker options, each read with ``value(name)`` (the plugin's ``get``, or a tool's own reader)."""
    return BrokerOptions(
        kind=value("harness_broker"),
        url=value("harness_broker_url"),
        management_url=value("harness_management_url"),
        rabbitmq_server=value("harness_rabbitmq_server"),
        rabbitmq_port=value("harness_rabbitmq_port"),
        work_root=work_root,
        image=value("harness_rabbitmq_image"),
        docker_network=value("harness_docker_network"),
        docker_ryuk=value("harness_docker_ryuk"),
        boot_timeout=value("harness_boot_timeout"),
        rabbitmq_version=value("harness_rabbitmq_version") or "3",
        transport=value("harness_transport") or "rabbitmq",
        redis_server=value("harness_redis_server"),
        redis_image=value("harness_redis_image"),
    )


def broker_options_from(config: pytest.Config, work_root: str | None = None) -> BrokerOptions:
    return broker_options_with(lambda name: get(config, name), work_root)


def ini_table(folder: Path | None = None) -> tuple[Path, dict[str, str]] | None:
    """The pytest configuration file pytest would use from ``folder`` (the first of pytest.ini, pyproject.toml
    with [tool.pytest.ini_options], tox.ini and setup.cfg with a pytest section, in ``folder`` or above) and its
    keys; None if there is none. Its folder is pytest's rootdir."""
    here = (folder or Path.cwd()).resolve()
    for directory in [here, *here.parents]:
        for filename, section in (("pytest.ini", "pytest"), ("tox.ini", "pytest"), ("setup.cfg", "tool:pytest")):
            path = directory / filename
            if path.is_file():
                parser = configparser.ConfigParser()
                parser.read(path)
                if parser.has_section(section):
                    return path, dict(parser.items(section))
        pyproject = directory / "pyproject.toml"
        if pyproject.is_file():
            try:
                import tomllib
            except ImportError:  # Python 3.10: no TOML reader in the standard library
                return None
            table = tomllib.loads(pyproject.read_text()).get("tool", {}).get("pytest", {}).get("ini_options")
            if table is not None:
                return pyproject, {key: str(value) for key, value in table.items() if value is not None}
    return None


def ini_value(name: str, folder: Path | None = None) -> str | None:
    """An ini key as pytest would find it, for the tools that run outside pytest (bench, up, the audit's
    command): from the file ``ini_table`` finds."""
    found = ini_table(folder)
    return found[1].get(name) if found is not None else None
