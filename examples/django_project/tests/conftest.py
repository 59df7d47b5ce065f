import pytest

from harness.producers import HttpProducer, JsonField

# Placing an order: a JSON POST answered 202 with the fulfilment task's id.
ORDER = HttpProducer("/orders/", json={"item": "book-{n}"}, accepted=(202,), task_id=JsonField("fulfilment"))


@pytest.fixture
def stack_spec(stack_spec):
    """The project from pytest.ini, the warehouse API at a real pace, orders placed over HTTP."""
    return stack_spec.replace(producer=ORDER).with_env(ORDERS_WAREHOUSE_SECONDS="1")
