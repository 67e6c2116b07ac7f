"""What the three REST clients share: one httpx client per vendor connection, every transport
or HTTP error turned into one of two errors of ours, and the shape of a poll's result.

The clients are synchronous (httpx.Client): the callers — a polling loop, the alerting that
opens a ticket for a sustained outage — are plain threads, and one request at a time per
vendor is what rate limits allow anyway. Credentials come from the environment variables the
configuration names (config.Auth); they never appear in errors, logs or reprs."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
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


def _excerpt(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


def vendor_priority(config: ProviderConfig, priority: str | None) -> str | None:
    """Our word for a priority (e.g. an alert severity) as the vendor's, via
    `create.priorities`; a word not listed passes as given."""
    if priority is None:
        return None
    return config.create.priorities.get(priority, priority)
