"""harness.screen: the web app's line says when its root path has no page (an API), and the problems show."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from http_server import serve

from harness.screen import render, root_note
from harness.state import StackState


class Api(BaseHTTPRequestHandler):
    """An API-only app: /health answers, / is 404 (as FastAPI without a root route)."""

    def do_GET(self) -> None:
        code = 200 if self.path == "/health" else 404
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


class Page(Api):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def api_url() -> Iterator[str]:
    yield from serve(Api)


@pytest.fixture
def page_url() -> Iterator[str]:
    yield from serve(Page)


def state_for(web_url: str, tmp_path: Path) -> StackState:
    return StackState(
        owner="up", pid=1, label="harness up", workdir=str(tmp_path), supervisor_conf=str(tmp_path / "s.conf"),
        supervisor_socket=str(tmp_path / "s.sock"), journal_dir=str(tmp_path),
        programs={"worker": "worker", "web": "web"},
        broker_kind="local", url="amqp://u:p@127.0.0.1:1/v", vhost="v", user="u", password="p",
        management_url=None, web_url=web_url,
    )  # fmt: skip


def test_an_api_without_a_page_at_its_root_is_said_to_be_one(api_url: str, tmp_path: Path) -> None:
    assert root_note(api_url) == " (no page at /: an API)"
    screen = render(state_for(api_url, tmp_path), tmp_path / "state.json")
    assert f"the web app    {api_url}/ (no page at /: an API)" in screen
    assert "the page" not in screen


def test_a_web_app_with_a_page_is_shown_plainly(page_url: str, tmp_path: Path) -> None:
    assert root_note(page_url) == ""
    assert f"the web app    {page_url}/\n" in render(state_for(page_url, tmp_path), tmp_path / "state.json")


def test_the_problems_of_the_first_status_read_are_on_the_screen(page_url: str, tmp_path: Path) -> None:
    screen = render(
        state_for(page_url, tmp_path), tmp_path / "s.json", problems=["queue notifications has no consumer"]
    )
    assert "problems:\n  queue notifications has no consumer" in screen


def test_a_redis_stack_says_where_its_database_is_and_offers_redis_broker_controls(tmp_path: Path) -> None:
    state = dataclasses.replace(
        state_for(None, tmp_path), transport="redis", url="redis://127.0.0.1:6390/7", vhost="db 7", user="",
        password=None, control_socket=str(tmp_path / "ctl.sock"),
    )  # fmt: skip
    screen = render(state, tmp_path / "s.json")
    assert "Redis          127.0.0.1:6390, database 7   redis-cli -p 6390 -n 7" in screen, screen
    assert "RabbitMQ UI" not in screen and "rabbitmqctl" not in screen and "alarm" not in screen
    assert " broker stop [crash|shutdown]" in screen and " broker persistence MODE" in screen, screen
    assert " broker kill-connections" in screen and " broker freeze" in screen


def test_a_password_and_another_host_are_on_the_redis_cli_line(tmp_path: Path) -> None:
    state = dataclasses.replace(state_for(None, tmp_path), transport="redis", url="redis://:s3cret@cache:6379/2")
    assert "redis-cli -h cache -p 6379 -a s3cret --no-auth-warning -n 2" in render(state, tmp_path / "s.json")


def test_a_rabbitmq_stack_offers_its_own_broker_controls_and_a_kept_scenario_none(tmp_path: Path) -> None:
    up = dataclasses.replace(state_for(None, tmp_path), control_socket=str(tmp_path / "ctl.sock"))
    screen = render(up, tmp_path / "s.json")
    assert "RabbitMQ UI" in screen and " broker stop [node|app]" in screen and " broker alarm" in screen
    assert "persistence" not in screen and "kill-connections" not in screen
    kept = render(dataclasses.replace(up, control_socket=None), tmp_path / "s.json")
    assert " broker stop" not in kept, "only harness up answers the broker controls"
