import pytest

from harness.producers import HttpProducer

# The signup form: a POST that redirects once the welcome email is queued.
SIGNUP = HttpProducer("/signup", form={"email": "user-{n}@example.com"}, accepted=(302,))


@pytest.fixture
def stack_spec(stack_spec):
    """The app from pytest.ini, its worker slowed to a real mail server's pace, tasks sent by the form."""
    return stack_spec.replace(producer=SIGNUP).with_env(SHOP_SMTP_SECONDS="1")
