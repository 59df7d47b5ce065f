"""The plugin in someone else's test suite: markers, what makes a scenario, options, no cost without scenarios."""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]


def test_its_markers_are_registered_for_strict_runs(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.celery_config(task_acks_late=True)
        @pytest.mark.scenario
        def test_marked():
            pass
        """
    )
    pytester.runpytest("--strict-markers", "-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_a_test_is_a_scenario_because_it_uses_the_stack_not_because_of_its_folder(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture
        def stack():
            return "a stand-in: only the fixture's name matters here"
        """
    )
    pytester.mkpydir("unit")
    pytester.path.joinpath("unit", "test_mixed.py").write_text(
        "def test_uses_the_stack(stack):\n    pass\n\ndef test_plain():\n    pass\n"
    )
    result = pytester.runpytest("-m", "scenario", "-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=1, deselected=1)


def test_celery_config_markers_merge_the_closest_winning(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        pytestmark = pytest.mark.celery_config(task_acks_late=True, worker_prefetch_multiplier=4)

        @pytest.mark.celery_config(worker_prefetch_multiplier=1)
        def test_settings(celery_config):
            assert celery_config == {"task_acks_late": True, "worker_prefetch_multiplier": 1}
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


SHOW_BROKER = """
from harness import options

def test_show(pytestconfig):
    print("BROKER=" + options.get(pytestconfig, "harness_broker"))
"""


@pytest.mark.parametrize(
    ("cli", "ini", "env", "expected"),
    [
        ("local", "docker", "url", "local"),
        (None, "docker", "url", "docker"),
        (None, None, "url", "url"),
        (None, None, None, "auto"),
    ],
    ids=["cli-wins", "ini-over-env", "env-over-default", "default"],
)
def test_options_command_line_then_ini_then_environment_then_default(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, cli: str | None, ini: str | None, env: str | None,
    expected: str,
) -> None:  # fmt: skip
    pytester.makepyfile(SHOW_BROKER)
    if ini:
        pytester.makeini(f"[pytest]\nharness_broker = {ini}\n")
    monkeypatch.delenv("HARNESS_BROKER", raising=False)
    if env:
        monkeypatch.setenv("HARNESS_BROKER", env)
    args = ["-s", "-p", "no:cacheprovider"] + (["--harness-broker", cli] if cli else [])
    result = pytester.runpytest(*args)
    result.stdout.fnmatch_lines([f"*BROKER={expected}*"])


def test_a_run_without_scenarios_probes_no_docker_engine_and_starts_nothing(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``auto`` would ask a Docker engine (2 s) and look for rabbitmq-server: not on a run that collects
    no scenario. The engine here is a socket that records whether anyone connected."""
    folder = Path(tempfile.mkdtemp(prefix="probe-", dir="/tmp"))
    path = folder / "docker.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen()
    listener.setblocking(False)
    try:
        monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
        monkeypatch.delenv("HARNESS_BROKER", raising=False)
        pytester.makepyfile("def test_plain():\n    assert True\n")
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--harness-broker", "auto")
        result.assert_outcomes(passed=1)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody knocked
        assert not any(line.startswith("harness: broker") for line in result.outlines)
    finally:
        listener.close()
        path.unlink()
        os.rmdir(folder)


def test_an_app_named_on_the_command_line_replaces_the_stacks_own(tmp_path, monkeypatch) -> None:
    """A typo in --celery-app must not be ignored because an ini names a stack: the named app is used."""
    from harness.fixtures import spec_from

    (tmp_path / "team_stack.py").write_text(
        "from harness.spec import StackSpec, WebSpec\n"
        "def stack():\n    return StackSpec(celery_app='proj.celery:app', web=WebSpec(app='proj.web:app'))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert spec_from("team_stack:stack", None, None, tmp_path).celery_app == "proj.celery:app"
    spec = spec_from("team_stack:stack", "proj.celeri:app", "proj.web:application", tmp_path)
    assert (spec.celery_app, spec.web.app) == ("proj.celeri:app", "proj.web:application")


def test_a_parameter_a_redefined_stack_spec_undoes_is_said(pytester: pytest.Pytester) -> None:
    """A conftest's stack_spec(stack_spec) changes the spec after the default fixture applied the test's
    parameter: where both set the same thing, the parameter is silently lost, unless said."""
    pytester.makeini("[pytest]\ncelery_app = proj.celery:app\n")
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture
        def stack_spec(stack_spec):
            return stack_spec.with_env(STAGE="suite")
        """
    )
    pytester.makepyfile(
        """
        import pytest
        from harness.fixtures import parameter_undone

        @pytest.mark.parametrize("stack_spec", [lambda spec: spec.with_env(STAGE="test")], indirect=True)
        def test_undone(request, stack_spec):
            assert stack_spec.env["STAGE"] == "suite"
            said = parameter_undone(request, stack_spec)
            assert said.startswith("this test's stack_spec parameter is undone by the stack_spec fixture of "), said
            assert "conftest.py" in said

        @pytest.mark.parametrize("stack_spec", [lambda spec: spec.with_env(OTHER="test")], indirect=True)
        def test_kept(request, stack_spec):
            assert stack_spec.env == {"STAGE": "suite", "OTHER": "test"}
            assert parameter_undone(request, stack_spec) is None
        """
    )
    reading = pytester.mkpydir("reading")
    reading.joinpath("conftest.py").write_text(
        "import pytest\n\n@pytest.fixture\ndef stack_spec(request):\n    from harness.spec import StackSpec\n"
        "    return request.param(StackSpec(celery_app='proj.celery:app').with_env(STAGE='suite'))\n"
    )
    reading.joinpath("test_reads.py").write_text(
        "import pytest\nfrom harness.fixtures import parameter_undone\n\n"
        "@pytest.mark.parametrize('stack_spec', [lambda spec: spec.with_env(STAGE='test')], indirect=True)\n"
        "def test_read(request, stack_spec):\n"
        "    assert stack_spec.env['STAGE'] == 'test' and parameter_undone(request, stack_spec) is None\n"
    )
    pytester.runpytest("-p", "no:cacheprovider", "-q").assert_outcomes(passed=3)
