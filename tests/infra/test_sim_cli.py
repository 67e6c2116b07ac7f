"""`bessmon sim` refuses what it cannot run, before serving anything, with one clear line."""

from __future__ import annotations

import pytest

from infra.cli import main


def test_tickets_need_the_webhook_secret(monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("BESSMON_WEBHOOK_SECRET_JIRA", raising=False)
    assert main(["sim", "--tickets-url", "http://127.0.0.1:8000"]) == 2
    assert capsys.readouterr().err.strip() == (
        "bessmon sim: --tickets-url needs the Jira webhook secret in "
        "BESSMON_WEBHOOK_SECRET_JIRA (the API's)")


def test_the_opc_ua_site_must_be_in_the_fleet(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--opcua-site", "atlantis"]) == 2
    assert "--opcua-site: no site 'atlantis' in" in capsys.readouterr().err


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--fault-rate", "-1", "must be a number ≥ 0, got '-1'"),
    ("--fault-rate", "often", "must be a number ≥ 0, got 'often'"),
    ("--fault-durations", "0", "must be a number > 0, got '0'"),
    ("--speed", "0", "must be a number > 0, got '0'"),
    ("--ticket-delay", "soon", "not a duration: 'soon'"),
])
def test_bad_numbers_are_refused(flag: str, value: str, message: str,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["sim", flag, value])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
