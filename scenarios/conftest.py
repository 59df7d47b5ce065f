"""The demo app is the stack of every scenario here (``harness_stack`` in pyproject.toml), unless a scenario
gives its own; see ``app_under_test/stack.py``.

The catalogue is written per broker family: the stories at the top level are RabbitMQ's (marker ``rabbitmq``),
those in ``redis/`` are Redis's (marker ``redis``); a run on one family skips the other's, saying so.
"""

from pathlib import Path

import pytest

from app_under_test.stack import HELLO_QUEUE


@pytest.fixture
def dead_letter_queue(dead_letters):
    """hello_queue's dead letters; request it before ``stack``, so the policy is there when the queue is made."""
    return dead_letters(HELLO_QUEUE)


REDIS_STORIES = Path(__file__).parent / "redis"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(REDIS_STORIES):
            item.add_marker(pytest.mark.redis)
        elif item.path.is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.rabbitmq)
