"""How the API's tests check a refusal: its status, and what it names — the field of a 422
(`errors[].loc`, docs/api.md "Errors"), or the `detail` of another 4xx."""

from __future__ import annotations

from typing import Any

import httpx


def assert_refused(answer: httpx.Response, status: int, named: str) -> None:
    body: dict[str, Any] = answer.json()
    assert answer.status_code == status, body
    if status == 422:
        assert named in [e["loc"] for e in body["errors"]], body
    else:
        assert body["detail"] == named
