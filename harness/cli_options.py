"""The plugin's options for the tools that run outside pytest (``python -m harness up``...).

The same flags (``--harness-broker``, ``--celery-app``...), ini keys and environment variables as the
plugin (``harness.options``), with the same precedence: the command line, then the ini file of the
folder (``ini_value``), then the environment, then the default. The stack is found as the plugin finds
it: ``--harness-stack``, else ``--celery-app`` / ``--web-app``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from harness.brokers.select import BrokerOptions
from harness.errors import HarnessError
from harness.options import BROKER_OPTIONS, BY_NAME, broker_options_with, ini_value
from harness.spec import StackSpec

STACK_OPTIONS = ("harness_stack", "celery_app", "web_app")


def add(parser: argparse.ArgumentParser, names: tuple[str, ...]) -> None:
    """Add the plugin's options ``names`` to ``parser``, as the plugin spells them."""
    for name in names:
        option = BY_NAME[name]
        extra = f" (ini {option.name}" + (f", env {option.env}" if option.env else "") + ")"
        if option.flag:
            parser.add_argument(option.cli, action="store_true", default=None, dest=name, help=option.help + extra)
        else:
            parser.add_argument(option.cli, default=None, dest=name, choices=option.choices, help=option.help + extra)


def get(args: argparse.Namespace, name: str, folder: Path | None = None) -> Any:
    """The option's value: command line > ini (of ``folder`` or above) > environment > default."""
    option = BY_NAME[name]
    value = getattr(args, name, None)
    if value is None:
        value = ini_value(name, folder) or None
    if value is None and option.env:
        value = os.environ.get(option.env) or None
    if value is None:
        return option.default
    try:
        converted = option.convert(value)
    except ValueError:
        raise HarnessError(f"{option.cli} {value!r} is not a valid value") from None
    if option.choices and converted not in option.choices:
        raise HarnessError(f"{option.cli} {converted!r} is not one of {', '.join(option.choices)}")
    return converted


def add_broker_and_stack(parser: argparse.ArgumentParser) -> None:
    add(parser, (*BROKER_OPTIONS, *STACK_OPTIONS))


def broker_options(args: argparse.Namespace, work_root: str, folder: Path | None = None) -> BrokerOptions:
    return broker_options_with(lambda name: get(args, name, folder), work_root)


def stack_spec(args: argparse.Namespace, folder: Path) -> StackSpec:
    """The stack of the checkout in ``folder`` (importable from it), as the plugin would run it."""
    from harness.fixtures import spec_from

    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    return spec_from(
        get(args, "harness_stack", folder), get(args, "celery_app", folder), get(args, "web_app", folder), folder
    )
