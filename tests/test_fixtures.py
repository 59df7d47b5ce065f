"""harness.fixtures: what the fixtures tell a person on the terminal."""

from __future__ import annotations

import pytest

from harness.brokers.base import Broker

pytest_plugins = ["pytester"]

SCENARIO = """
def test_a_scenario_on_its_vhost(vhost):
    assert vhost.name
"""


def inner_run(pytester: pytest.Pytester, broker: Broker, *args: str) -> pytest.RunResult:
    """The scenario in an inner pytest on this run's broker (as a url broker: no broker of its own to boot)."""
    endpoint = broker.endpoint
    if not endpoint.management_url:
        pytest.skip("the management UI's address needs a broker with the management API")
    pytester.makepyfile(test_inner=SCENARIO)
    return pytester.runpytest_subprocess(
        "test_inner.py", "--harness-no-report", "--harness-broker=url", f"--harness-broker-url={endpoint.amqp_url()}",
        f"--harness-management-url={endpoint.management_url}", *args, timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize("args", [("-s",), ("--keep-on-failure",)], ids=["-s", "keep-on-failure"])
def test_a_run_a_person_watches_says_where_each_scenarios_management_ui_is(
    pytester: pytest.Pytester, broker: Broker, args: tuple[str, ...]
) -> None:
    """``harness up`` printed the management UI's address, user, password and vhost; a pytest run did not, so
    a person following a scenario (``-s``) or kept up after a failure could not find its vhost."""
    result = inner_run(pytester, broker, *args)
    result.assert_outcomes(passed=1)
    endpoint = broker.endpoint
    result.stdout.re_match_lines(
        [rf"harness: test_a_scenario_on_its_vhost: RabbitMQ UI {endpoint.management_url}/#/queues   user "
         rf"{endpoint.user}, password {endpoint.password}, vhost harness-test_a_scenario_on_its_vhost-\w+"]
    )  # fmt: skip


def test_a_run_nobody_watches_does_not_say_it(pytester: pytest.Pytester, broker: Broker) -> None:
    result = inner_run(pytester, broker)
    result.assert_outcomes(passed=1)
    assert "RabbitMQ UI" not in result.stdout.str()
