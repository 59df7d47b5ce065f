"""``python -m harness.apidocs``: the scenario API's reference, written from the harness's own docstrings.

Every public method and property of the objects behind the fixtures a scenario uses (``stack``, ``vhost``,
``ledger``, ``producer``, ``broker``, ``net``) and of what they return (``Sent``, ``Depth``, ``Verdict``,
``TaskHistory``, ``TaskEvent``), with its signature and docstring, into ``docs/api.md``. ``--check`` fails
when the file is out of date or a public member has no docstring (tests/test_apidocs.py runs it); a member
added without one, or without regenerating, fails the harness's own tests.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.brokers.base import Broker
from harness.brokers.rabbitmq.base import RabbitMQBroker
from harness.brokers.rabbitmq.local import LocalBroker
from harness.brokers.rabbitmq.vhost import Depth, ScenarioVhost
from harness.brokers.rabbitmq.warm import WarmBroker
from harness.brokers.redis.base import RedisBroker
from harness.brokers.redis.space import RedisSpace
from harness.ledger import Ledger
from harness.netfaults import NetFaults
from harness.producers import DirectSender, HttpSender
from harness.sent import Sent
from harness.stack import AppStack
from harness.verdict import TaskEvent, TaskHistory, Verdict

PATH = Path("docs") / "api.md"


@dataclass(frozen=True)
class Documented:
    """One object of the reference: how a scenario reaches it, and its class."""

    reached_as: str  # "stack", "producer (web route)", "what send() returns"...
    cls: type
    prefix: str  # how its members are written: "stack.", "verdict."...
    beyond: type | None = None  # a provider: only what it adds to this class (documented there)


OBJECTS = (
    Documented("the `stack` fixture", AppStack, "stack."),
    Documented("the `net` fixture, also `stack.net`", NetFaults, "net."),
    Documented("the `vhost` fixture (also `space`) on RabbitMQ", ScenarioVhost, "vhost."),
    Documented("the `vhost` fixture (also `space`) on Redis: a database of its own", RedisSpace, "vhost."),
    Documented("the `ledger` fixture", Ledger, "ledger."),
    Documented("the `producer` fixture of a stack whose producer is an `HttpProducer`", HttpSender, "producer."),
    Documented("the `producer` fixture of a stack whose producer is a `DirectProducer`", DirectSender, "producer."),
    Documented("the `broker` and `owned_broker` fixtures (every family and provider)", Broker, "broker."),
    Documented("the `broker` fixture on RabbitMQ, beyond `Broker`", RabbitMQBroker, "broker.", Broker),
    Documented("the `broker` fixture on Redis, beyond `Broker`", RedisBroker, "broker.", Broker),
    Documented(
        "the `broker` fixture with `--harness-broker local` on RabbitMQ, beyond `RabbitMQBroker`",
        LocalBroker,
        "broker.",
        RabbitMQBroker,
    ),
    Documented(
        "the `broker` fixture with `--harness-broker warm`, beyond `LocalBroker`", WarmBroker, "broker.", LocalBroker
    ),
    Documented("what `producer.send()` returns (`send_many()`: a list of them)", Sent, "sent."),
    Documented("what `vhost.depth(queue)` returns", Depth, "depth."),
    Documented("what `stack.verdict()` returns", Verdict, "verdict."),
    Documented("what `ledger.history(task)` returns (and `verdict.histories[task_id]`)", TaskHistory, "history."),
    Documented("a step of a `TaskHistory` (`history.events`)", TaskEvent, "step."),
)


@dataclass(frozen=True)
class Member:
    name: str
    kind: str  # "method", "property", "classmethod", "context manager"
    signature: str
    doc: str


def _is_harness(owner: type) -> bool:
    return owner.__module__.split(".")[0] == "harness"


def _annotation(value: Any) -> str:
    """An annotation as written in the source (they are strings: ``from __future__ import annotations``)."""
    return value if isinstance(value, str) else getattr(value, "__name__", repr(value))


def signature(function: Callable, skip_first: bool = True) -> str:
    """``(name: str, timeout: float = 10.0) -> None``, as the source writes it."""
    parameters = list(inspect.signature(function).parameters.values())[1 if skip_first else 0 :]
    shown = []
    for parameter in parameters:
        text = ("*" if parameter.kind is parameter.VAR_POSITIONAL else "**" if parameter.kind is parameter.VAR_KEYWORD
                else "") + parameter.name  # fmt: skip
        if parameter.annotation is not parameter.empty:
            text += f": {_annotation(parameter.annotation)}"
        if parameter.default is not parameter.empty:
            text += f" = {parameter.default!r}"
        shown.append(text)
    returned = inspect.signature(function).return_annotation
    tail = "" if returned is inspect.Signature.empty else f" -> {_annotation(returned)}"
    return f"({', '.join(shown)}){tail}"


def members(cls: type, beyond: type | None = None) -> Iterator[Member]:
    """The public methods and properties of ``cls`` that the harness defines (its own or inherited from a
    harness class), in source order; with ``beyond``, only those that class does not have."""
    seen: set[str] = set(dir(beyond)) if beyond is not None else set()
    for owner in cls.__mro__:
        if not _is_harness(owner):
            continue
        for name in vars(owner):
            if name.startswith("_") or name in seen:
                continue
            seen.add(name)
            found = _member(name, inspect.getattr_static(cls, name))
            if found is not None:
                yield found


def _member(name: str, raw: Any) -> Member | None:
    if isinstance(raw, property):
        returned = inspect.signature(raw.fget).return_annotation if raw.fget else inspect.Signature.empty
        tail = "" if returned is inspect.Signature.empty else f": {_annotation(returned)}"
        return Member(name, "property", tail, inspect.getdoc(raw) or "")
    if isinstance(raw, classmethod | staticmethod):
        function = raw.__func__
        return Member(name, type(raw).__name__, signature(function, isinstance(raw, classmethod)), _doc(function))
    if inspect.isfunction(raw):
        wrapped = getattr(raw, "__wrapped__", None)  # @contextmanager
        kind = "context manager" if wrapped is not None else "method"
        return Member(name, kind, signature(wrapped or raw), _doc(raw))
    return None


def _doc(function: Callable) -> str:
    return inspect.getdoc(function) or ""


def fields_of(cls: type) -> list[str]:
    """A dataclass's fields, as ``name: type``."""
    if not dataclasses.is_dataclass(cls):
        return []
    return [f"`{f.name}: {_annotation(f.type)}`" for f in dataclasses.fields(cls)]


def undocumented() -> list[str]:
    """``Class.member`` for every public member of the reference without a docstring."""
    return [f"{o.cls.__name__}.{m.name}" for o in OBJECTS for m in members(o.cls, o.beyond) if not m.doc.strip()]


def _anchor(documented: Documented) -> str:
    return documented.cls.__name__.lower()


def page() -> str:
    lines = [
        "# The scenario API",
        "",
        "Generated by `python -m harness.apidocs` from the harness's docstrings; do not edit by hand.",
        "Every public method and property of the objects the fixtures give a scenario, and of what they return.",
        "Whatever takes task ids also takes what `producer.send()` / `send_many()` return (`harness.sent.ids_of`).",
        "",
        *(f"- [`{o.cls.__name__}`](#{_anchor(o)}): {o.reached_as}" for o in OBJECTS),
        "",
    ]
    for documented in OBJECTS:
        cls = documented.cls
        lines += [f"## {cls.__name__}", "", f"{documented.reached_as[0].upper()}{documented.reached_as[1:]}: "
                  f"`{cls.__module__}.{cls.__name__}`.", ""]  # fmt: skip
        doc = inspect.cleandoc(vars(cls).get("__doc__") or "")  # its own: a provider's is not Broker's
        if doc and not doc.startswith(f"{cls.__name__}("):  # a dataclass without a docstring gets its signature
            lines += [doc, ""]
        if fields := fields_of(cls):
            lines += [f"Fields: {', '.join(fields)}.", ""]
        for member in members(cls, documented.beyond):
            kind = "" if member.kind == "method" else f" ({member.kind})"
            lines += [f"### `{documented.prefix}{member.name}{member.signature}`{kind}", "", member.doc, ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.apidocs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if docs/api.md is out of date; write nothing")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="the checkout (default: the working directory)")
    args = parser.parse_args(argv)
    missing = undocumented()
    if missing:
        print(f"no docstring (say what each does and returns): {', '.join(missing)}", file=sys.stderr)
        return 1
    path, text = args.root / PATH, page()
    if args.check:
        if not path.exists() or path.read_text() != text:
            print(f"{PATH} is out of date: run python -m harness.apidocs", file=sys.stderr)
            return 1
        return 0
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
