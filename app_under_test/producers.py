"""How each version of the web app calls the task: ``HELLO_PRODUCER`` picks one per process.

The producer knows the task by name only (it does not import the worker's code), as a web app
deployed separately from its workers does; that is why signatures can drift apart.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class Call(NamedTuple):
    task: str
    args: list[Any]
    kwargs: dict[str, Any]


def v1(name: str) -> Call:
    return Call("say_hello", [name], {})


def v2(name: str) -> Call:
    """Version 2 passes a greeting as a new positional argument."""
    return Call("say_hello", [name, "bonjour"], {})


def tolerant_v1(name: str) -> Call:
    """Future-proof: keyword data only."""
    return Call("say_hello", [], {"name": name})


def tolerant_v2(name: str) -> Call:
    return Call("say_hello", [], {"name": name, "greeting": "bonjour"})


def renamed(name: str) -> Call:
    """Version 3 renamed the task; workers that have not been deployed do not know the new name."""
    return Call("send_greeting", [name], {})


PRODUCERS = {f.__name__: f for f in (v1, v2, tolerant_v1, tolerant_v2, renamed)}


def producer(version: str) -> Any:
    try:
        return PRODUCERS[version]
    except KeyError:
        raise RuntimeError(f"HELLO_PRODUCER={version!r} is not one of {', '.join(PRODUCERS)}") from None
