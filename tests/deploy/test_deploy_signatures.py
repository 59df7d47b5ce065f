"""The calls a producer makes and what a worker of another version does with each (pure logic)."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import pytest

from harness.deploy.signatures import (
    CONVENTIONS,
    EXTRA_FIELD,
    FAILS,
    KEYWORD,
    MISBINDS,
    POSITIONAL,
    RUNS,
    Call,
    Signature,
    bind,
    calls,
    differences,
    tolerant,
)
from harness.introspect import KINDS


def sig(function: Callable) -> Signature:
    """A function's parameters, as harness.introspect reports them."""
    return Signature.from_introspection(
        {"name": p.name, "kind": KINDS[p.kind], "has_default": p.default is not p.empty,
         "default": None if p.default is p.empty else repr(p.default)}
        for p in inspect.signature(function).parameters.values()
    )  # fmt: skip


def shapes(made: list[Call]) -> set[tuple[str, tuple[str, ...], tuple[str, ...]]]:
    return {(c.convention, c.args, c.kwargs) for c in made}


def test_a_producer_sends_the_required_and_the_full_call_in_each_convention():
    def resize(path, width, height=0, *, fit=False): ...

    assert shapes(calls("resize", sig(resize), CONVENTIONS)) == {
        (POSITIONAL, ("path", "width"), ()),
        (POSITIONAL, ("path", "width", "height"), ("fit",)),
        (KEYWORD, (), ("path", "width")),
        (KEYWORD, (), ("path", "width", "height", "fit")),
    }


def test_positional_only_parameters_stay_positional_and_extra_calls_are_asked_for():
    def log(event, /, **fields): ...

    assert shapes(calls("log", sig(log), (KEYWORD,))) == {(KEYWORD, ("event",), ())}
    assert shapes(calls("log", sig(log), (KEYWORD,), extra=True)) == {
        (KEYWORD, ("event",), ()),
        (KEYWORD, ("event",), (EXTRA_FIELD,)),
    }


def outcome(producer: Callable, worker: Callable, convention: str = POSITIONAL):
    """What the worker does with the producer's full call (every named parameter)."""
    call = calls("t", sig(producer), (convention,))[-1]
    return bind(call, sig(worker), sig(producer))


def test_arguments_that_do_not_bind_fail_with_pythons_own_type_error():
    def v1(name): ...

    def v2(name, greeting): ...

    assert (
        outcome(v1, v2).kind == FAILS and outcome(v1, v2).reason == "TypeError: missing a required argument: 'greeting'"
    )
    assert outcome(v2, v1).reason == "TypeError: too many positional arguments"
    assert outcome(v2, v1, KEYWORD).reason == "TypeError: got an unexpected keyword argument 'greeting'"


def test_reordered_positionals_misbind_positional_calls_and_not_keyword_ones():
    def before(src, dst): ...

    def after(dst, src): ...

    swapped = outcome(before, after)
    assert swapped.kind == MISBINDS and "the value of `src` lands in `dst`" in swapped.reason
    assert outcome(before, after, KEYWORD).kind == RUNS


def test_a_renamed_parameter_takes_positional_calls_and_refuses_keyword_ones():
    def before(user_id): ...

    def after(account_id): ...

    assert outcome(before, after).kind == RUNS
    assert outcome(before, after).notes == ("the value of `user_id` lands in `account_id` (a renamed parameter?)",)
    assert outcome(before, after, KEYWORD).kind == FAILS


def test_fields_a_worker_does_not_name_are_taken_by_its_kwargs():
    def new(name, greeting="hello"): ...

    def old(name="world", **_newer_fields): ...

    ran = outcome(new, old, KEYWORD)
    assert ran.kind == RUNS and ran.notes == ("`greeting` taken by `**_newer_fields`",)


def v1(name): ...
def v2(name, greeting): ...
def send_v1(to, subject): ...
def send_v2(to, subject, body): ...
def move_v1(src, dst): ...
def move_v2(dst, src): ...
def charge_v1(order_id, amount, currency): ...
def charge_v2(order_id, amount): ...
def log_v1(event, **fields): ...
def log_v2(event): ...
def kw_v1(a, *, b): ...
def kw_v2(a, b=2, *, c): ...


@pytest.mark.parametrize(
    ("before", "after"),
    [(v1, v2), (send_v1, send_v2), (move_v1, move_v2), (charge_v1, charge_v2), (log_v1, log_v2), (kw_v1, kw_v2)],
    ids=lambda f: f.__name__,
)
@pytest.mark.parametrize("convention", [KEYWORD, POSITIONAL])
def test_the_tolerant_form_takes_every_old_call_and_every_new_keyword_call(before, after, convention):
    """Written on the new version, it runs what old producers and queued messages carry, in the convention
    they use, and what new producers send by keyword (positionally, a reordering cannot be taken both ways)."""
    form = tolerant(sig(before), sig(after), (convention,))
    sent = calls("t", sig(before), (convention,), extra=True) + calls("t", sig(after), (KEYWORD,))
    for call in sent:
        producer = sig(before) if call in calls("t", sig(before), (convention,), extra=True) else sig(after)
        assert bind(call, form, producer).kind == RUNS, (form.render("t"), call.describe())


def test_the_tolerant_form_keeps_old_positions_and_defaults_what_one_version_lacks():
    assert tolerant(sig(v1), sig(v2), CONVENTIONS).render("say_hello", bound=True) == (
        "say_hello(self, name, greeting=None, **_newer_fields)"
    )
    assert tolerant(sig(move_v1), sig(move_v2), CONVENTIONS).render("move") == "move(src, dst, **_newer_fields)"


def test_differences_in_words():
    def before(a, b, c=1, *args, d, **kw): ...

    def after(b, a, c=2, *, d=3, e): ...

    assert differences(sig(before), sig(after)) == [
        "added `e` (required, keyword-only)",
        "reordered positionals (a, b, c) → (b, a, c)",
        "default of `c` 1 → 2",
        "`d` gained a default 3",
        "`*args` removed",
        "`**kw` removed",
    ]
