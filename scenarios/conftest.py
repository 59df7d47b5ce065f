"""The demo app is the stack of every scenario here (``harness_stack`` in pyproject.toml), unless a scenario
gives its own; see ``app_under_test/stack.py``."""

import pytest

from app_under_test.stack import HELLO_QUEUE


@pytest.fixture
def dead_letter_queue(dead_letters):
    """hello_queue's dead letters; request it before ``stack``, so the policy is there when the queue is made."""
    return dead_letters(HELLO_QUEUE)
