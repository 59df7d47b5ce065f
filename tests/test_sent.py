"""harness.sent: the task ids a wait or a check is given, from ids or from what a send returned."""

from __future__ import annotations

import pytest

from harness.errors import HarnessError
from harness.sent import Sent, id_of, ids_of

CLICK = Sent("a", True, 0.01, 202, None, ("a",))
FORM = Sent("b", True, 0.02, 302, None, ("b", "c"))  # one request that published two tasks


def test_ids_sends_and_mixes_of_both_name_the_same_tasks() -> None:
    assert ids_of([CLICK, FORM], "w") == ["a", "b", "c"], "every id each send produced, in order"
    assert ids_of(["a", "b"], "w") == ids_of(("a", "b"), "w") == ["a", "b"]
    assert ids_of([CLICK, "z"], "w") == ["a", "z"]
    assert ids_of(CLICK, "w") == ["a"] and ids_of("a", "w") == ["a"], "one send, or one id (not its characters)"
    assert ids_of(iter(["a"]), "w") == ["a"] and ids_of([], "w") == []
    assert ids_of([Sent("d", True, 0.0)], "w") == ["d"], "a Sent made without task_ids still names its task"


@pytest.mark.parametrize(
    ("given", "says"),
    [
        (42, r"ledger.wait_running takes task ids or what send\(\)/send_many\(\) return, not 42 \(int\)"),
        (None, r"not None \(NoneType\)"),
        ({"a": 1}, r"not \{'a': 1\} \(dict\)"),
        ([CLICK, 7], r"but one of those given is 7 \(int\)"),
        ([""], r"but one of those given is '' \(str\)"),
        ([Sent(None, False, 0.1, None, "ConnectionError")], r"was given a send that produced no task id"),
    ],
)
def test_anything_else_is_refused_in_one_sentence_naming_the_call(given: object, says: str) -> None:
    with pytest.raises(HarnessError, match=says):
        ids_of(given, "ledger.wait_running")  # type: ignore[arg-type]


def test_one_task_is_an_id_or_the_send_of_one_task() -> None:
    assert id_of(CLICK, "ledger.history") == id_of("a", "ledger.history") == "a"
    with pytest.raises(HarnessError, match=r"ledger\.history takes one task id, but was given 2: b, c"):
        id_of(FORM, "ledger.history")
