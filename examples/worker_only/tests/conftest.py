import pytest

from harness.producers import DirectProducer

# Another service asks for a charge: the app's own task, sent from the test process with its routing.
CHARGE = DirectProducer("billing.charge", args=("customer-{n}", 1999))


@pytest.fixture
def stack_spec(stack_spec):
    """The worker from pytest.ini (no web app), the gateway at a real pace, charges sent directly."""
    return stack_spec.replace(producer=CHARGE).with_env(BILLING_GATEWAY_SECONDS="1")
