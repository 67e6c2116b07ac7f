"""What the API shows of the hot state, shaped for a caller: contract money left out for
roles that may not see it, staleness judged on the wall clock, refused records tallied by
device and reason (the data-quality view)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from api.auth.permissions import Permission
from api.auth.principal import ANY, Principal
from contracts.events import Alert, DeadLetterTally

STALE_AFTER_MS = 30_000  # a site snapshot older than this is shown as stale
MONEY = ("ld_year_to_date", "projected_ld")
log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)


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


# -- data quality: who sends bad records, and why ------------------------------------------

# The alert kinds about the data rather than the contract (contracts/events.py AlertKind).
DATA_QUALITY_KINDS = frozenset({"telemetry_gap", "frozen_value", "clock_skew", "dlq_rate",
                                "data_instability", "unwritable", "store_outage"})
_SEVERITY_RANK = {"critical": 0, "major": 1, "minor": 2, "warning": 3}


class DeadLetterRow(BaseModel):
    """One device's refused records of one reason (a `DeadLetterTally` as shown)."""

    device: str  # the record's key: its device id ("" for a record without one)
    reason: str  # malformed_json, schema, out_of_range, unknown_asset, key_mismatch, …
    count: int  # refused records, since the flows started
    first_ms: int  # event time of the first and the last of them
    last_ms: int
    last_detail: str  # what was wrong with the last one
    asset_id: str | None  # the fleet's asset of that id (a battery unit), for a link


class QualityTotals(BaseModel):
    records: int  # refused records of every device and reason
    pairs: int  # (device, reason) tallies in all; `tallies` holds the first `limit`
    tallies: list[DeadLetterRow]  # most frequent first, then the most recent
    alerts: list[Alert]  # active data-quality alerts, most severe first, then newest


class SiteQuality(QualityTotals):
    site_id: str
    name: str | None
    customer: str
    region: str


class DataQuality(BaseModel):
    sites: list[SiteQuality]  # the caller's sites (or the one asked for), in fleet order
    # Records that named no site of the fleet, and data-quality alerts of no site: null
    # unless the caller has `data_quality.unrouted` and sees the whole fleet, or when
    # `site=` narrows the answer to one site.
    unrouted: QualityTotals | None


def sees_unrouted(principal: Principal) -> bool:
    """Unrouted records may come from anyone's device: only a caller with the permission
    whose scope is the whole fleet sees them (the live feed's rule for alerts of no site)."""
    scope = principal.scope
    return principal.can(Permission.DATA_QUALITY_UNROUTED) and ANY in scope.customers \
        and ANY in scope.regions


def quality(tallies: Iterable[bytes | str], alerts: Iterable[bytes | str], limit: int,
            is_asset: Callable[[str], bool]) -> QualityTotals:
    """One site's (or the unrouted) dead-letter tallies and alerts from their Redis hashes'
    values; `is_asset(device)`: the device is an asset the caller may open. A value that does
    not decode is left out (logged), not a 500: this view exists for when data is bad."""
    rows = [DeadLetterRow(device=t.device, reason=t.reason, count=t.count,
                          first_ms=t.first_ms, last_ms=t.last_ms, last_detail=t.last_detail,
                          asset_id=t.device if is_asset(t.device) else None)
            for t in _decoded(DeadLetterTally, tallies)]
    rows.sort(key=lambda r: (-r.count, -r.last_ms, r.device, r.reason))
    active = [a for a in _decoded(Alert, alerts)
              if a.kind in DATA_QUALITY_KINDS and a.state == "raised"]
    active.sort(key=lambda a: (_SEVERITY_RANK.get(a.severity, 9), -a.raised_ms, a.alert_id))
    return QualityTotals(records=sum(r.count for r in rows), pairs=len(rows),
                         tallies=rows[:limit], alerts=active)


def _decoded(model: type[M], values: Iterable[bytes | str]) -> Iterator[M]:
    for value in values:
        try:
            yield model.model_validate_json(value)
        except ValidationError as exc:
            log.warning("left out an undecodable %s in the hot state: %s", model.__name__,
                        exc.errors()[0]["msg"])
