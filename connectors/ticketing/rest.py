"""What the three REST clients share: one httpx client per vendor connection, every transport
or HTTP error turned into one of two errors of ours, and the shape of a poll's result.

The clients are synchronous (httpx.Client): the callers — a polling loop, the alerting that
opens a ticket for a sustained outage — are plain threads, and one request at a time per
vendor is what rate limits allow anyway. Credentials come from the environment variables the
configuration names (config.Auth); they never appear in errors, logs or reprs."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, ClassVar, Self

import httpx

from connectors.ticketing.config import Provider, ProviderConfig, TicketingConfigError
from connectors.ticketing.payload import InvalidPayload
from contracts.events import TicketEvent

log = logging.getLogger(__name__)


class TicketingError(RuntimeError):
    """A call to the vendor failed: unreachable, refused, or an answer we cannot read."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class TicketingAuthError(TicketingError):
    """The vendor refused our credentials (401) or their rights (403)."""


class TicketingRateLimited(TicketingError):
    """The vendor asked us to slow down (429, or a 503 with Retry-After); `retry_after_s`
    is how long it asked us to wait, None when it did not say."""

    def __init__(self, message: str, status_code: int, retry_after_s: float | None) -> None:
        super().__init__(message, status_code)
        self.retry_after_s = retry_after_s


MAX_WAIT_S = 3600.0  # a vendor's wait longer than this is taken as this (a broken header)


def _seconds_until(value: str, now_s: float) -> float | None:
    """A header's time to wait: seconds (`120`), an epoch time in seconds (ServiceNow's
    `X-RateLimit-Reset: 1718000000`), an HTTP date (`Retry-After: Wed, 21 Oct 2026 07:28:00
    GMT`) or an ISO 8601 time (Jira's `X-RateLimit-Reset: 2026-10-21T07:28:00.000Z`)."""
    value = value.strip()
    try:
        number = float(value)
    except ValueError:
        when: datetime | None = None
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            try:
                when = datetime.fromisoformat(value)
            except ValueError:
                return None
        if when is None or when.tzinfo is None:
            return None
        return max(0.0, when.timestamp() - now_s)
    if number != number or number < 0:  # NaN or negative: no advice
        return None
    return max(0.0, number - now_s) if number > 1e9 else number


def retry_after_s(headers: Mapping[str, str], now_s: float | None = None) -> float | None:
    """How long the vendor asks us to wait, by its documented headers: `Retry-After` (all
    three), else `X-RateLimit-Reset` (Jira: ISO time; ServiceNow: epoch seconds), else
    `ratelimit-reset` (Zendesk: seconds); at most MAX_WAIT_S; None when none says."""
    now = time.time() if now_s is None else now_s
    lowered = {k.lower(): v for k, v in headers.items()}
    for name in ("retry-after", "x-ratelimit-reset", "ratelimit-reset"):
        if name in lowered:
            wait = _seconds_until(lowered[name], now)
            if wait is not None:
                return min(wait, MAX_WAIT_S)
    return None


def _exhausted(headers: Mapping[str, str]) -> bool:
    """The answer says no request is left in the current window (`X-RateLimit-Remaining:
    0`, Zendesk's `ratelimit-remaining: 0`)."""
    for name in ("x-ratelimit-remaining", "ratelimit-remaining"):
        value = headers.get(name)
        if value is not None and value.strip() == "0":
            return True
    return False


@dataclass(frozen=True)
class Rejected:
    """A ticket a poll found but could not normalize, and why (for the dead letters)."""

    ticket_id: str
    reason: str
    payload: Any


@dataclass
class Poll:
    """What a search for recently updated tickets found: the tickets, oldest update first,
    and the ones it could not read."""

    events: list[TicketEvent] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


class VendorClient:
    """Base of the vendor clients: owns the httpx client (a context manager)."""

    provider: ClassVar[Provider]
    username_suffix: ClassVar[str] = ""

    def __init__(self, config: ProviderConfig, *, environ: Mapping[str, str] | None = None,
                 timeout_s: float = 15.0, page_size: int = 100) -> None:
        if config.base_url is None:
            raise TicketingConfigError(f"{self.provider}.base_url is not configured")
        if config.auth is None:
            raise TicketingConfigError(f"{self.provider}.auth is not configured")
        if config.asset is None:
            raise TicketingConfigError("merge the mapping over the vendor default first "
                                       "(TicketingConfig.provider)")
        self.config = config
        self.asset = config.asset
        self.page_size = page_size
        # Seconds the vendor's last answer asked us to wait before the next request (its
        # rate-limit window is used up), 0 when it did not: the poller honours it.
        self.pause_s = 0.0
        self._http = httpx.Client(
            base_url=config.base_url, timeout=timeout_s, follow_redirects=False,
            auth=config.auth.build(environ, username_suffix=self.username_suffix),
            headers={"Accept": "application/json"})

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config.base_url})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _call(self, method: str, path: str, *, params: Mapping[str, str | int] | None = None,
              json: Any = None) -> Any:
        """The JSON answer of a request; every failure as TicketingError."""
        where = f"{self.provider} {method} {path}"
        try:
            response = self._http.request(method, path, params=params, json=json)
        except httpx.HTTPError as exc:
            raise TicketingError(f"{where}: {type(exc).__name__}: {exc}") from None
        wait = retry_after_s(response.headers)
        self.pause_s = (wait or 0.0) if _exhausted(response.headers) else 0.0
        if response.status_code == 429 or (response.status_code == 503 and wait is not None):
            self.pause_s = wait or 0.0
            said = f"retry after {wait:.0f} s" if wait is not None else "no Retry-After"
            raise TicketingRateLimited(f"{where}: {response.status_code} rate limited "
                                       f"({said})", response.status_code, wait)
        if response.status_code in (401, 403):
            raise TicketingAuthError(f"{where}: the credentials were refused "
                                     f"({response.status_code})", response.status_code)
        if response.status_code >= 400:
            raise TicketingError(f"{where}: {response.status_code} "
                                 f"{_excerpt(response.text)}", response.status_code)
        try:
            return response.json()
        except ValueError:
            raise TicketingError(f"{where}: the answer is not JSON: "
                                 f"{_excerpt(response.text)}", response.status_code) from None

    def _collect(self, poll: Poll, payload: Any, since_ms: int,
                 normalize: Callable[[Any], TicketEvent | None], ticket_id: str) -> None:
        """Add a found ticket to the poll (when updated since `since_ms`: vendor queries
        are coarser than milliseconds), or to its rejected ones."""
        try:
            event = normalize(payload)
        except InvalidPayload as exc:
            log.warning("%s ticket %s cannot be read: %s", self.provider, ticket_id, exc)
            poll.rejected.append(Rejected(ticket_id, str(exc), payload))
            return
        if event is not None and event.updated_ms >= since_ms:
            poll.events.append(event)


_MARKER = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


def checked_marker(marker: str) -> str:
    """A marker a ticket is found again by (a label, a correlation id, an external id): plain
    letters, digits, `-` and `_`, so it reads the same in a JQL string, an encoded query and
    a URL parameter."""
    if not _MARKER.match(marker):
        raise ValueError(f"not a ticket marker (8-64 of A-Z a-z 0-9 - _): {marker!r}")
    return marker


def _excerpt(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


def vendor_priority(config: ProviderConfig, priority: str | None) -> str | None:
    """Our word for a priority (e.g. an alert severity) as the vendor's, via
    `create.priorities`; a word not listed passes as given."""
    if priority is None:
        return None
    return config.create.priorities.get(priority, priority)
