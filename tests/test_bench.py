"""python -m harness.bench: its arguments (the figures themselves are measured by running it, not in tests)."""

import argparse

import pytest

from harness.bench import _counts


def test_workers_takes_one_count_or_a_list():
    assert _counts("3") == [3]
    assert _counts("4,3,6") == [4, 3, 6]


@pytest.mark.parametrize("text", ["", "three", "3,,4", "0", "4,-1"])
def test_a_bad_worker_count_is_one_sentence(text):
    with pytest.raises(argparse.ArgumentTypeError, match=r"worker count|1 or more"):
        _counts(text)
