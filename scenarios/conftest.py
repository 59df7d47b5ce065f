"""The demo app is the stack of every scenario here, unless a scenario gives its own (``app_under_test.stack``)."""

import pytest

from app_under_test.stack import HELLO_QUEUE, demo


@pytest.fixture
def stack_spec(request):
    return getattr(request, "param", None) or demo()


@pytest.fixture
def dead_letter_queue(dead_letters):
    """hello_queue's dead letters; request it before ``stack``, so the policy is there when the queue is made."""
    return dead_letters(HELLO_QUEUE)
