"""GET /api/v1/stack: the parts `bessmon up` supervises, from its stack.json (written by the
supervisor in infra/up.py; the whole path, a part killed and restarted, is in
tests/infra/test_stack_lifecycle.py). Admins only (the role matrix in test_permissions.py)."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from api.main import create_app
from connectors.settings import Settings
from tests.api.accounts import auth


def stack_of(settings: Settings) -> dict[str, object]:
    with TestClient(create_app(settings)) as client:
        answer = client.get("/api/v1/stack", headers=auth(settings))
    assert answer.status_code == 200, answer.text
    body: dict[str, object] = answer.json()
    return body


def test_the_parts_as_the_supervisor_wrote_them(api_settings: Settings) -> None:
    api_settings.run_dir.mkdir(parents=True, exist_ok=True)
    (api_settings.run_dir / "stack.json").write_text(json.dumps({
        "api_url": "http://127.0.0.1:8000/", "sim_token": "not for the API's callers",
        "children": {"flows": 4242, "api": 4243},
        "parts": {"flows": {"pid": 4242, "restarts": 2, "state": "restarting",
                            "last_exit": -9},
                  "api": {"pid": 4243, "restarts": 0, "state": "running",
                          "last_exit": None}}}))
    body = stack_of(api_settings)
    assert body["supervised"] is True and isinstance(body["updated_ms"], int)
    assert body["parts"] == [
        {"name": "flows", "state": "restarting", "restarts": 2, "last_exit": -9},
        {"name": "api", "state": "running", "restarts": 0, "last_exit": None}]
    assert "sim_token" not in json.dumps(body) and "4242" not in json.dumps(body)


def test_an_api_on_its_own_knows_of_no_parts(api_settings: Settings) -> None:
    assert stack_of(api_settings) == {"supervised": False, "updated_ms": None, "parts": []}
    api_settings.run_dir.mkdir(parents=True, exist_ok=True)
    for broken in ("{not json", json.dumps({"parts": {"flows": {"state": "asleep"}}}),
                   json.dumps({"parts": ["flows"]})):
        (api_settings.run_dir / "stack.json").write_text(broken)
        assert stack_of(api_settings)["supervised"] is False, broken
