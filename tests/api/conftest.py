"""API test fixtures: the users of tests/api/accounts.py written once per session, and
settings of a test's own (run dir, API database) that use them."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from connectors.settings import Settings
from tests.api.accounts import write_users


@pytest.fixture(scope="session")
def accounts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(users file, JWT signing key) shared by the session (argon2 hashing is slow on
    purpose: once is enough)."""
    base = tmp_path_factory.mktemp("accounts")
    settings = Settings(users_file=base / "users.yaml", jwt_key_file=base / "jwt.pem",
                        run_dir=base)
    write_users(settings)
    return settings.users_path, settings.jwt_key_path


@pytest.fixture
def api_settings(redis_url: str, redis_client: redis.Redis, tmp_path: Path,
                 accounts: tuple[Path, Path]) -> Settings:
    """Settings for an API of the test's own, on a clean Redis (every bessmon key gone)."""
    for key in redis_client.scan_iter("bessmon:*"):
        redis_client.delete(key)
    users, key = accounts
    return Settings(REDIS_URL=redis_url, run_dir=tmp_path / "run", users_file=users,
                    jwt_key_file=key)
