"""Reading vendor JSON defensively: a webhook body is whatever the sender chose to send, so
every value is checked for its type and a missing or malformed one is named in the error
(the webhook answers it with 400, or 422 for a value the configuration does not map)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from contracts.events import TicketEvent

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


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


def text(value: Any, name: str, *, required: bool = False) -> str | None:
    """A string field; numbers are accepted as their text (ids often arrive as numbers);
    empty strings count as missing."""
    value = raw(value)
    if isinstance(value, bool):
        raise InvalidPayload(f"{name} must be a string, not {value!r}")
    if isinstance(value, int | float):
        value = str(value)
    if value is None or value == "":
        if required:
            raise InvalidPayload(f"{name} is missing")
        return None
    if not isinstance(value, str):
        raise InvalidPayload(f"{name} must be a string, not {type(value).__name__}")
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
    return _ms(parsed)


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
    return _ms(parsed)


def _ms(moment: datetime) -> int:
    ms = (moment - EPOCH) // timedelta(milliseconds=1)  # exact, no float rounding
    if ms < 0:
        raise InvalidPayload(f"time before 1970: {moment.isoformat()}")
    return ms


def ticket_event(**values: Any) -> TicketEvent:
    """A `TicketEvent`, a value it refuses reported as `InvalidPayload`."""
    try:
        return TicketEvent(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidPayload(f"{where}: {first['msg']}") from None
