"""python -m harness.audit: exactly pytest --pyargs harness.audit, with the app as its first argument."""

from __future__ import annotations

from harness.audit.__main__ import ONE_PROCESS, command, main


def test_the_command_is_pytest_on_the_audit_package() -> None:
    args = command(["proj.celery:app", "--audit-like", "proj.tasks.send", "-x"])
    assert args[:4] == ["--pyargs", "harness.audit", "--celery-app", "proj.celery:app"]
    assert args[-3:] == ["--audit-like", "proj.tasks.send", "-x"]


def test_without_an_app_the_ini_or_the_stack_names_it() -> None:
    assert "--celery-app" not in command(["--audit-expect", "lost=0"])


def test_a_parallel_audit_is_refused_in_one_sentence(capsys) -> None:
    assert main(["proj.celery:app", "-n", "3"]) == 4
    assert capsys.readouterr().err.strip() == ONE_PROCESS
