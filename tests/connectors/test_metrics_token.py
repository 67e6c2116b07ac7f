"""The metrics token (connectors/metrics.py): BESSMON_METRICS_TOKEN when set (a placeholder or
a short one refused as a setting), else one key file per machine, made owner-only once and
shared by every part — a part racing another reads the winner's."""

from __future__ import annotations

import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from pydantic import ValidationError

from connectors.metrics import bearer_ok, metrics_token, metrics_token_path
from connectors.settings import Settings


def test_one_token_file_per_machine_made_once_and_private(tmp_path: Path) -> None:
    settings = Settings(run_dir=tmp_path / "run")
    with ThreadPoolExecutor(8) as pool:
        tokens = set(pool.map(lambda _: metrics_token(settings), range(16)))
    assert len(tokens) == 1
    token = tokens.pop()
    path = metrics_token_path(settings)
    assert path.read_text() == token and len(token) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no leftovers
    assert metrics_token(settings) == token  # reused
    path.write_text("short")
    with pytest.raises(ValueError, match="not a metrics token"):
        metrics_token(settings)


@pytest.mark.parametrize("value", ["secret", "changeme", "x" * 31, " " * 40])
def test_a_placeholder_or_short_token_is_refused(value: str) -> None:
    with pytest.raises(ValidationError, match="BESSMON_METRICS_TOKEN"):
        Settings(metrics_token=value)


def test_the_variable_replaces_the_file(tmp_path: Path) -> None:
    settings = Settings(run_dir=tmp_path, metrics_token="t" * 32)
    assert metrics_token(settings) == "t" * 32
    assert not metrics_token_path(settings).exists()


def test_only_the_bearer_scheme_with_the_exact_token_passes() -> None:
    token = "a" * 43
    assert bearer_ok(f"Bearer {token}", token) and bearer_ok(f"bearer {token}", token)
    for header in (None, "", token, f"Basic {token}", f"Bearer {token}x", "Bearer ",
                   f"Bearer {token[:-1]}", "Bearer ä" + token):
        assert not bearer_ok(header, token), header
