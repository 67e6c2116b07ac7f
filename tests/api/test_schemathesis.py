"""Schemathesis against the app's own OpenAPI document (`/api/v1/openapi.json`), through its
ASGI integration (the app runs in-process, its lifespan once, on a real Redis): every
operation gets valid and invalid generated requests with an admin's bearer token, and no
answer may be a 5xx.

Hot state for the example fleet is in Redis (snapshots, active alarms, alerts), so requests
naming real sites, assets and alarms reach real code paths, not just 404s. The ticket
webhooks are kept in, with secrets configured: generated requests cannot carry a vendor
signature, so they exercise header and signature parsing (401s) but never publishing. The
control commands do publish (a valid emergency stop of the fleet is easy to generate): to a
broker's topics of this module's own, so a command is a 202 — a 503 would be a server
error, as it should be when the broker is away. Limits are raised so that generated requests are
judged by the routes, not turned away by the rate limiters.

The schema is read at collection time from an app built on a throwaway directory (no service
is contacted before the lifespan starts), so that each operation is a test of its own;
schemathesis' fixture-based lazy loading does not run under this pytest (9.x)."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, settings
from pydantic import SecretStr
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi

from api.main import create_app
from connectors.settings import Settings
from connectors.ticketing.config import TicketingSettings
from tests.api import hot_state
from tests.api.accounts import auth


def openapi_document() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as run_dir:
        app = create_app(Settings(run_dir=Path(run_dir), REDIS_URL="redis://127.0.0.1:1/0"))
        document = app.openapi()
        app.state.ctx.store.close()
        app.state.ctx.history.close()
    return document


schema = schemathesis.openapi.from_dict(openapi_document())


@pytest.fixture(scope="module")
def fuzzed(redis_url: str, kafka_bootstrap: str, accounts: tuple[Path, Path],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, dict[str, str]]]:
    """The app under test, reached in-process by schemathesis' ASGI client, and an admin's
    bearer header."""
    client_: redis.Redis = redis.Redis.from_url(redis_url)
    for key in client_.scan_iter("bessmon:*"):
        client_.delete(key)
    client_.close()
    users, key = accounts
    suffix = uuid.uuid4().hex[:8]
    settings_ = Settings(REDIS_URL=redis_url, run_dir=tmp_path_factory.mktemp("fuzz"),
                         users_file=users, jwt_key_file=key,
                         KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
                         topic_commands=f"t-{suffix}.commands",
                         topic_command_results=f"t-{suffix}.command.results",
                         rate_limit_per_minute=1_000_000, login_attempts_per_minute=1_000_000)
    sites = list(hot_state.SITES)
    hot_state.write(redis_url, *(hot_state.snapshot(s, 96.0, ld=10.0) for s in sites),
                    *(hot_state.breach(s, f"{s}-u01") for s in sites),
                    *(hot_state.alert(s, f"{s}-u02") for s in sites))
    app = create_app(settings_)
    app.state.ticketing = TicketingSettings(
        webhook_secret_jira=SecretStr("jira-secret-5d2c1f"),
        webhook_secret_servicenow=SecretStr("servicenow-secret-8a7b6c"),
        webhook_secret_zendesk=SecretStr("zendesk-secret-3e4f5a6b"))
    with asgi.get_client(app) as client:  # type: ignore[arg-type]  # starts its lifespan
        yield client, auth(settings_, "admin")
    asgi.shutdown_lifespans()  # Redis clients closed, the live hub stopped


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@schema.parametrize()
def test_no_operation_answers_with_a_server_error(
        case: Any, fuzzed: tuple[Any, dict[str, str]]) -> None:
    client, headers = fuzzed
    case.call_and_validate(session=client, base_url="http://testserver", headers=headers,
                           checks=[not_a_server_error])
