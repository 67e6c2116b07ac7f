"""What the API shows of the hot state, shaped for a caller: contract money left out for
roles that may not see it, staleness judged on the wall clock."""

from __future__ import annotations

import json
from typing import Any

from api.auth.permissions import Permission
from api.auth.principal import Principal

STALE_AFTER_MS = 30_000  # a site snapshot older than this is shown as stale
MONEY = ("ld_year_to_date", "projected_ld")


def shows_money(principal: Principal) -> bool:
    return principal.can(Permission.CONTRACTS_READ)


def redact(snapshot: dict[str, Any]) -> dict[str, Any]:
    """A site snapshot without contract money (a copy; the input stays whole)."""
    contract = snapshot.get("contract")
    if not contract:
        return snapshot
    return {**snapshot, "contract": {**contract, **dict.fromkeys(MONEY)}}


def redact_payload(payload: bytes) -> bytes:
    return json.dumps(redact(json.loads(payload)), separators=(",", ":")).encode()


def stale(ts_ms: int | None, now_ms: int) -> bool:
    return ts_ms is None or now_ms - ts_ms > STALE_AFTER_MS
