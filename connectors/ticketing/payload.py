"""Reading vendor JSON defensively: a webhook body is whatever the sender chose to send, so
every value is checked before anything is derived from it — its type (a number where text
is due is taken as its text only when it is a finite number within 64 bits), its text (no
control characters, no lone surrogates), and every time for its range: 2000-01-01 to
2100-01-01, not ahead of this server's clock by more than `MAX_AHEAD_MS`, and a ticket
neither updated nor resolved before it was opened. A missing or malformed value is named in
the error by the vendor's field (the webhook answers it with 400, or 422 for a value the
configuration does not map)."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from pydantic import ValidationError

from contracts.events import MAX_MS, MIN_DEVICE_MS, TicketEvent

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# A vendor's clock may be a little ahead of ours; a ticket time further ahead is no time the
# ticket can have (and one version from the future would hide every later one: consumers
# keep a ticket's newest `updated_ms`).
MAX_AHEAD_MS = 10 * 60_000
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_IN_PROSE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # tab and newlines allowed
_INT64 = (-(2**63), 2**64)  # signed or unsigned 64-bit: what vendors' numeric ids are


def _shown(value: Any, limit: int = 60) -> str:
    """A value for an error message: its repr, cut (a field may hold a megabyte)."""
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**60 else \
        f"a {len(str(abs(value)))}-digit integer"
    return text if len(text) <= limit else text[:limit] + "…"


class InvalidPayload(ValueError):
    """The payload is not the vendor's documented shape: a field is missing or malformed."""


class UnmappedValue(InvalidPayload):
    """The payload is well formed but names something the configuration does not map (a
    status nobody listed): fixed in the mapping, not by the sender."""


def dig(obj: Any, *path: str) -> Any:
    """`obj[path[0]][path[1]]…`, None as soon as a step is missing or not an object."""
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def raw(value: Any) -> Any:
    """A ServiceNow field as its stored value: the Table API gives a reference (and, with
    `sysparm_display_value=all`, every field) as `{"value": …, "display_value": …}`."""
    return value.get("value") if isinstance(value, dict) else value


def text(value: Any, name: str, *, required: bool = False, prose: bool = False
         ) -> str | None:
    """A string field; numbers are accepted as their text (ids often arrive as numbers) when
    finite and within 64 bits, an integral float as an integer (`35436.0` → "35436");
    empty strings count as missing. Control characters are refused (`prose`: tab and line
    breaks allowed, as in a summary), and so are lone surrogates (no UTF-8 for them)."""
    value = raw(value)
    if isinstance(value, bool):
        raise InvalidPayload(f"{name} must be a string, not {value!r}")
    if isinstance(value, int):
        if not _INT64[0] <= value < _INT64[1]:
            raise InvalidPayload(f"{name} {_shown(value)} is out of range (more than 64 bits)")
        value = str(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidPayload(f"{name} must be a finite number, not {value!r}")
        if value.is_integer() and abs(value) < 2**53:
            value = str(int(value))
        elif not _INT64[0] <= value < _INT64[1]:
            raise InvalidPayload(f"{name} {value!r} is out of range (more than 64 bits)")
        else:
            value = repr(value)
    if value is None or value == "":
        if required:
            raise InvalidPayload(f"{name} is missing")
        return None
    if not isinstance(value, str):
        raise InvalidPayload(f"{name} must be a string, not {type(value).__name__}")
    control = (_CONTROL_IN_PROSE if prose else _CONTROL).search(value)
    if control is not None:
        raise InvalidPayload(f"{name} contains a control character ({control.group()!r} at "
                             f"{control.start()})")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidPayload(f"{name} is not valid Unicode: a lone surrogate "
                             f"({value[exc.start]!r} at {exc.start})") from None
    return value


def required_text(value: Any, name: str) -> str:
    out = text(value, name, required=True)
    assert out is not None
    return out


def iso_ms(value: Any, name: str, *, required: bool = False) -> int | None:
    """An ISO 8601 time with an offset (Jira `2024-05-14T09:12:33.123+0200`, Zendesk
    `2024-05-14T07:12:33Z`) as epoch ms. A time without an offset is refused: guessing
    its zone would shift every ticket by hours without anyone noticing."""
    s = text(value, name, required=required)
    if s is None:
        return None
    try:
        parsed = datetime.fromisoformat(s)
    except ValueError:
        raise InvalidPayload(f"{name} is not an ISO 8601 time: {s!r}") from None
    if parsed.tzinfo is None:
        raise InvalidPayload(f"{name} has no UTC offset: {s!r}")
    return _ms(parsed, name, s)


def utc_ms(value: Any, name: str, *, required: bool = False) -> int | None:
    """ServiceNow's stored date-time, `YYYY-MM-DD HH:MM:SS` in UTC, as epoch ms."""
    s = text(value, name, required=required)
    if s is None:
        return None
    try:
        parsed = datetime.strptime(s, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        raise InvalidPayload(f"{name} is not a ServiceNow UTC time "
                             f"(YYYY-MM-DD HH:MM:SS): {s!r}") from None
    return _ms(parsed, name, s)


def _ms(moment: datetime, name: str, given: str) -> int:
    ms = (moment - EPOCH) // timedelta(milliseconds=1)  # exact, no float rounding
    if not MIN_DEVICE_MS <= ms <= MAX_MS:
        raise InvalidPayload(f"{name} {given!r} is outside 2000-01-01..2100-01-01 (no time "
                             "a ticket can have)")
    return ms


def _iso(ms: int) -> str:
    return f"{datetime.fromtimestamp(ms / 1000, UTC):%Y-%m-%dT%H:%M:%SZ}"


def web_url(value: str | None, name: str) -> str | None:
    """A link for people: an absolute http(s) URL with a host, or refused (a `javascript:`
    or relative link must not reach the dashboard)."""
    if value is None:
        return None
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, ValueError):
        raise InvalidPayload(f"{name} is not a URL: {_shown(value)}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise InvalidPayload(f"{name} is not an absolute http(s) URL: {_shown(value)}")
    return value


def ticket_event(sources: Mapping[str, str], /, *, now_ms: int | None = None,
                 **values: Any) -> TicketEvent:
    """A `TicketEvent`, a value it refuses reported as `InvalidPayload` naming the vendor's
    field (`sources`: event field → the vendor field it was read from); its times checked
    against each other and against the clock (`now_ms`, default now)."""
    def source(field: str) -> str:
        return sources.get(field, field)

    values["url"] = web_url(values.get("url"), source("url"))
    try:
        event = TicketEvent(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        where = ".".join(str(p) for p in first["loc"])
        named = source(field) if field in sources else where
        problem = ("contains a control character" if first["type"] == "string_pattern_mismatch"
                   else first["msg"])
        raise InvalidPayload(f"{named} {_shown(first.get('input'))}: {problem}") from None
    now = int(time.time() * 1000) if now_ms is None else now_ms
    for field in ("opened_ms", "updated_ms", "resolved_ms"):
        ms = getattr(event, field)
        if ms is not None and ms > now + MAX_AHEAD_MS:
            raise InvalidPayload(f"{source(field)} {_iso(ms)} is in the future: more than "
                                 f"{MAX_AHEAD_MS // 60_000} min ahead of this server's clock")
    if event.updated_ms < event.opened_ms:
        raise InvalidPayload(f"{source('updated_ms')} {_iso(event.updated_ms)} is before "
                             f"{source('opened_ms')} {_iso(event.opened_ms)}: a ticket is "
                             "not updated before it is opened")
    if event.resolved_ms is not None and event.resolved_ms < event.opened_ms:
        raise InvalidPayload(f"{source('resolved_ms')} {_iso(event.resolved_ms)} is before "
                             f"{source('opened_ms')} {_iso(event.opened_ms)}: a ticket is "
                             "not resolved before it is opened")
    return event
