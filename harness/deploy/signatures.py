"""A task's parameters as producers see them, the calls a producer makes, and what a worker does with each.

Celery sends a task as a name, a list of positional values and a dict of keyword values; the worker
calls the function with them (``fun(*args, **kwargs)``, after the task itself for a bound task). Whether
a message from one version runs on another is therefore exactly whether Python binds those arguments to
the other version's parameters, and to which ones. ``inspect.Signature.bind`` is that binding: the
checker builds the worker's signature from the introspected parameters and binds each call to it,
rather than re-implementing Python's rules (its TypeError messages are the worker's, less the name).

How a producer calls a task cannot be read from the task: ``add.delay(2, 3)`` sends positional values,
``add.delay(x=2, y=3)`` keywords, ``send_task("add", args=..., kwargs=...)`` whatever its author wrote.
The convention is an input (``positional``, ``keyword``, or both). For each convention, a producer of a
version is assumed to make these calls, built from its own version's signature:

- the *required* call: a value for every parameter without a default;
- the *full* call: a value for every named parameter (a new producer passes the parameter it added);
- the *extra* call, for a producer of the running (base) version only, where that version takes
  ``**kwargs`` (or ``*args``): the full call and one field (or value) more. Producers may already use
  what the running version accepts, so taking it away breaks them; the new version's ``**kwargs`` is
  taken as tolerance for producers yet to come (the tolerant form adds it), not as something the new
  producers send to old workers.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

POSITIONAL, KEYWORD = "positional", "keyword"
CONVENTIONS = (POSITIONAL, KEYWORD)
REQUIRED, FULL, EXTRA = "required", "full", "extra"

POSITIONAL_ONLY = "positional_only"
POSITIONAL_OR_KEYWORD = "positional_or_keyword"
VAR_POSITIONAL = "var_positional"
KEYWORD_ONLY = "keyword_only"
VAR_KEYWORD = "var_keyword"
_KINDS = {
    POSITIONAL_ONLY: inspect.Parameter.POSITIONAL_ONLY,
    POSITIONAL_OR_KEYWORD: inspect.Parameter.POSITIONAL_OR_KEYWORD,
    VAR_POSITIONAL: inspect.Parameter.VAR_POSITIONAL,
    KEYWORD_ONLY: inspect.Parameter.KEYWORD_ONLY,
    VAR_KEYWORD: inspect.Parameter.VAR_KEYWORD,
}

# The field (and positional value) an *extra* call adds; a name no task is likely to have.
EXTRA_FIELD = "deploy_check_extra"
EXTRA_VALUE = "<extra positional value>"
# The default the tolerant form gives a parameter that had none in the version that has it.
NO_DEFAULT = "None"


@dataclass(frozen=True)
class Param:
    name: str
    kind: str = POSITIONAL_OR_KEYWORD
    has_default: bool = False
    default: str | None = None  # its repr, as introspected
    annotation: str | None = field(default=None, compare=False)  # "int", "list[str]": for the proof's values

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Param:
        return cls(
            data["name"], data["kind"], bool(data.get("has_default")), data.get("default"), data.get("annotation")
        )

    @property
    def positional(self) -> bool:
        return self.kind in (POSITIONAL_ONLY, POSITIONAL_OR_KEYWORD)

    @property
    def named(self) -> bool:
        return self.kind not in (VAR_POSITIONAL, VAR_KEYWORD)

    @property
    def required(self) -> bool:
        return self.named and not self.has_default

    def render(self) -> str:
        if self.kind == VAR_POSITIONAL:
            return f"*{self.name}"
        if self.kind == VAR_KEYWORD:
            return f"**{self.name}"
        return f"{self.name}={self.default}" if self.has_default else self.name


_UNSET = object()


@dataclass(frozen=True)
class Signature:
    """The parameters a producer fills (a bound task's own first parameter is not one of them)."""

    params: tuple[Param, ...] = ()

    @classmethod
    def from_introspection(cls, params: Iterable[Mapping[str, Any]]) -> Signature:
        return cls(tuple(Param.from_dict(p) for p in params))

    def __getitem__(self, name: str) -> Param:
        for param in self.params:
            if param.name == name:
                return param
        raise KeyError(name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params if p.named)

    @property
    def positional_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params if p.positional)

    @property
    def var_positional(self) -> Param | None:
        return next((p for p in self.params if p.kind == VAR_POSITIONAL), None)

    @property
    def var_keyword(self) -> Param | None:
        return next((p for p in self.params if p.kind == VAR_KEYWORD), None)

    def inspect(self) -> inspect.Signature:
        return inspect.Signature(
            [inspect.Parameter(p.name, _KINDS[p.kind], default=_UNSET if p.has_default else inspect.Parameter.empty)
             for p in self.params]
        )  # fmt: skip

    def render(self, task: str, bound: bool = False) -> str:
        parts = ["self"] if bound else []
        previous = None
        for param in self.params:
            if param.kind == KEYWORD_ONLY and previous not in (KEYWORD_ONLY, VAR_POSITIONAL):
                parts.append("*")
            if previous == POSITIONAL_ONLY and param.kind != POSITIONAL_ONLY:
                parts.append("/")
            parts.append(param.render())
            previous = param.kind
        if previous == POSITIONAL_ONLY:
            parts.append("/")
        return f"{task.rsplit('.', 1)[-1]}({', '.join(parts)})"


@dataclass(frozen=True)
class Call:
    """One message a producer sends: the task's name, and which of its own parameters go where."""

    task: str
    convention: str
    shape: str
    args: tuple[str, ...]  # the producer's parameter names, in the positions it sends them
    kwargs: tuple[str, ...]

    def describe(self) -> str:
        short = self.task.rsplit(".", 1)[-1]
        values = [*self.args, *(f"{k}=…" for k in self.kwargs)]
        return f"{short}({', '.join(values)})"

    @property
    def style(self) -> str:
        """What the message carries, whatever the convention asked: a call of a keyword-only task under the
        positional convention is a keyword call."""
        if self.kwargs and not self.args:
            return KEYWORD
        return POSITIONAL if not self.kwargs else "positional and keyword"

    def key(self) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
        return self.task, self.args, self.kwargs


def calls(task: str, signature: Signature, conventions: Iterable[str], extra: bool = False) -> list[Call]:
    """The calls a producer of this signature makes, per convention (the same message once); ``extra``:
    also the extra call, where the signature takes ``*args`` or ``**kwargs``."""
    made: dict[tuple, Call] = {}
    for convention in conventions:
        for shape in (REQUIRED, FULL, EXTRA):
            if shape == EXTRA and (not extra or (signature.var_keyword is None and signature.var_positional is None)):
                continue
            chosen = [p for p in signature.params if p.named and (shape != REQUIRED or p.required)]
            if convention == POSITIONAL:
                args = [p.name for p in chosen if p.positional]
                kwargs = [p.name for p in chosen if not p.positional]
            else:
                args = [p.name for p in chosen if p.kind == POSITIONAL_ONLY]
                kwargs = [p.name for p in chosen if p.kind != POSITIONAL_ONLY]
            if shape == EXTRA:
                if signature.var_positional is not None and convention == POSITIONAL:
                    args.append(EXTRA_VALUE)
                if signature.var_keyword is not None:
                    kwargs.append(EXTRA_FIELD)
            call = Call(task, convention, shape, tuple(args), tuple(kwargs))
            made.setdefault(call.key(), call)
    return list(made.values())


RUNS, FAILS, MISBINDS = "runs", "fails", "misbinds"


@dataclass(frozen=True)
class Outcome:
    """What a worker does with a call: it ``runs`` it, it ``fails`` (``error``: the exception type), or it
    ``misbinds`` (runs it with a value in another parameter than the producer meant). ``notes`` say what
    a run leaves aside (a field taken by ``**kwargs``, a parameter that looks renamed)."""

    kind: str
    reason: str = ""
    error: str | None = None
    notes: tuple[str, ...] = ()
    renamed: tuple[tuple[str, str], ...] = ()  # (the producer's parameter, the worker's) a value moved between

    @property
    def breaks(self) -> bool:
        return self.kind != RUNS


@dataclass(frozen=True)
class _Sent:
    """The value a producer put in for one of its parameters (a stand-in: only its origin matters)."""

    name: str


def bind(call: Call, worker: Signature, producer: Signature) -> Outcome:
    """Bind the call to the worker's parameters as Python will when the worker runs the task."""
    args = [_Sent(name) for name in call.args]
    kwargs = {name: _Sent(name) for name in call.kwargs}
    try:
        bound = worker.inspect().bind(*args, **kwargs)
    except TypeError as error:
        return Outcome(FAILS, f"TypeError: {error}", "TypeError")
    notes: list[str] = []
    swaps: list[str] = []
    renamed: list[tuple[str, str]] = []
    known = set(producer.names)
    for name, value in bound.arguments.items():
        kind = worker[name].kind
        if kind == VAR_KEYWORD:
            fields = ", ".join(f"`{k}`" for k in value)
            notes.append(f"{fields} taken by `**{name}`")
        elif kind == VAR_POSITIONAL:
            notes.append(f"{len(value)} value(s) taken by `*{name}`")
        elif value.name != name:
            landed = f"the value of `{value.name}` lands in `{name}`"
            if value.name in known and name in known:
                swaps.append(landed)
            else:
                notes.append(f"{landed} (a renamed parameter?)")
                renamed.append((value.name, name))
    if swaps:
        return Outcome(MISBINDS, "; ".join(swaps) + ": the task runs with the wrong values", None, tuple(notes))
    return Outcome(RUNS, "; ".join(notes), None, tuple(notes), tuple(renamed))


def tolerant(base: Signature, new: Signature, conventions: Iterable[str]) -> Signature:
    """A signature that takes both versions' calls: every parameter either version names, those of the
    old version in their old positions, a default for each that one version lacks, and ``**kwargs`` for
    fields a newer producer adds (``*args`` too if either version had it and producers call positionally).
    """
    order = list(base.positional_names)
    order += [n for n in new.positional_names if n not in order]
    keyword_only = [n for n in (*new.names, *base.names) if n not in order]
    keyword_only = list(dict.fromkeys(keyword_only))

    def param(name: str, kind: str, defaulted_before: bool) -> Param:
        old, fresh = _find(base, name), _find(new, name)
        required = old is not None and fresh is not None and old.required and fresh.required
        if required and not (defaulted_before and kind != KEYWORD_ONLY):
            return Param(name, kind)
        for version in (fresh, old):
            if version is not None and version.has_default:
                return Param(name, kind, True, version.default)
        return Param(name, kind, True, NO_DEFAULT)

    params: list[Param] = []
    defaulted = False
    for name in order:
        made = param(name, POSITIONAL_OR_KEYWORD, defaulted)
        defaulted = defaulted or made.has_default
        params.append(made)
    var_positional = new.var_positional or base.var_positional
    if var_positional is not None and POSITIONAL in conventions:
        params.append(var_positional)
    params += [param(name, KEYWORD_ONLY, False) for name in keyword_only]
    var_keyword = new.var_keyword or base.var_keyword or Param("_newer_fields", VAR_KEYWORD)
    params.append(var_keyword)
    return Signature(tuple(params))


def _find(signature: Signature, name: str) -> Param | None:
    try:
        return signature[name]
    except KeyError:
        return None


def renamed_in_place(base: Signature, new: Signature) -> dict[int, tuple[str, str]]:
    """Position → (old name, new name), where a positional parameter only one version has stands at the same
    position as one only the other has: a value sent there by position lands in the other name."""
    old, fresh = base.positional_names, new.positional_names
    return {
        i: (a, b) for i, (a, b) in enumerate(zip(old, fresh, strict=False))
        if a != b and a not in new.names and b not in base.names
    }  # fmt: skip


def differences(base: Signature, new: Signature) -> list[str]:
    """What changed, in words: added, removed, reordered, kind and default changes, ``*args``/``**kwargs``."""
    found: list[str] = []
    in_place = renamed_in_place(base, new)
    found += [f"`{old}` renamed `{fresh}` in place (position {i + 1})" for i, (old, fresh) in in_place.items()]
    moved = {n for pair in in_place.values() for n in pair}
    for name in new.names:
        if name in moved:
            continue
        if name not in base.names:
            param = new[name]
            how = f"default {param.default}" if param.has_default else "required"
            keyword = ", keyword-only" if param.kind == KEYWORD_ONLY else ""
            found.append(f"added `{name}` ({how}{keyword})")
    found += [f"removed `{name}`" for name in base.names if name not in new.names and name not in moved]
    common_old = [n for n in base.positional_names if n in new.positional_names]
    common_new = [n for n in new.positional_names if n in base.positional_names]
    if common_old != common_new:
        found.append(f"reordered positionals ({', '.join(common_old)}) → ({', '.join(common_new)})")
    for name in new.names:
        if name not in base.names:
            continue
        old, fresh = base[name], new[name]
        if old.kind != fresh.kind:
            found.append(f"`{name}` became {fresh.kind.replace('_', '-')} (was {old.kind.replace('_', '-')})")
        if old.has_default and not fresh.has_default:
            found.append(f"`{name}` lost its default {old.default}")
        elif fresh.has_default and not old.has_default:
            found.append(f"`{name}` gained a default {fresh.default}")
        elif old.has_default and old.default != fresh.default:
            found.append(f"default of `{name}` {old.default} → {fresh.default}")
    for label, old_var, new_var in (
        ("*", base.var_positional, new.var_positional),
        ("**", base.var_keyword, new.var_keyword),
    ):
        if old_var is None and new_var is not None:
            found.append(f"`{label}{new_var.name}` added")
        elif old_var is not None and new_var is None:
            found.append(f"`{label}{old_var.name}` removed")
    return found
