"""Zendesk Support: ticket webhooks, their signature, and the REST client (incremental export,
create a ticket).

Webhook (Admin Center → Apps and integrations → Webhooks): endpoint
`https://<bessmon>/api/v1/webhooks/zendesk`, method POST, format JSON, "Trigger or
automation" as connection; its **signing secret** goes into
`BESSMON_WEBHOOK_SECRET_ZENDESK`. A trigger (ticket is created or updated, e.g. with "Tags
contain at least one of asset_…") notifies it with a body shaped like the API's ticket:

```json
{"ticket": {"id": {{ticket.id}}, "status": "{{ticket.status}}",
  "created_at": "{{ticket.created_at_with_timestamp}}",
  "updated_at": "{{ticket.updated_at_with_timestamp}}",
  "subject": "{{ticket.title}}", "priority": "{{ticket.priority}}",
  "type": "{{ticket.ticket_type}}", "tags": "{{ticket.tags}}",
  "custom_fields": [{"id": 360012345678, "value": "{{ticket.ticket_field_360012345678}}"}],
  "url": "{{ticket.url}}"}}
```

(the API's own shapes are read too: `tags` as a list, the API `url` of the ticket). Zendesk
signs each request: `X-Zendesk-Webhook-Signature = base64(HMAC-SHA256(secret, timestamp +
body))` with `X-Zendesk-Webhook-Signature-Timestamp` (ISO 8601); a timestamp more than five
minutes away from our clock is refused (replays). `X-Zendesk-Webhook-Invocation-Id` names the
delivery (our idempotency key). Zendesk has no resolution time on a ticket: a solved one is
resolved as of its last update."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import httpx

from connectors.ticketing.mapping import DEFAULTS, TicketMapping, asset_of
from connectors.ticketing.payload import (
    InvalidPayload,
    dig,
    iso_ms,
    required_text,
    text,
    ticket_event,
)
from connectors.ticketing.rest import Poll, VendorClient, checked_marker, vendor_priority
from connectors.ticketing.signing import Unverified, b64_digest, hmac_sha256, same
from contracts.events import TicketEvent, TicketRef

PROVIDER = "zendesk"
SIGNATURE_HEADER = "x-zendesk-webhook-signature"
TIMESTAMP_HEADER = "x-zendesk-webhook-signature-timestamp"
DELIVERY_HEADER = "x-zendesk-webhook-invocation-id"
MAX_AGE_S = 300.0
# Where each TicketEvent field is read from (errors name the vendor's field).
SOURCES = {"ticket_id": "ticket.id", "asset_id": "the asset (tags or asset field)",
           "priority": "ticket.priority", "category": "ticket.type",
           "opened_ms": "ticket.created_at", "updated_ms": "ticket.updated_at",
           "resolved_ms": "ticket.updated_at", "summary": "ticket.subject", "url": "ticket.url"}


def verify_signature(body: bytes, signature: str | None, timestamp: str | None,
                     secret: bytes, now_s: float, max_age_s: float = MAX_AGE_S) -> None:
    """Zendesk's signature over timestamp + body, the timestamp within `max_age_s` of
    `now_s` (either way: a clock ahead is as suspect as a replay)."""
    if not signature or not timestamp:
        raise Unverified("X-Zendesk-Webhook-Signature and -Timestamp are required")
    sent_s = _timestamp_s(timestamp.strip())
    if abs(now_s - sent_s) > max_age_s:
        raise Unverified(f"X-Zendesk-Webhook-Signature-Timestamp is more than {max_age_s:.0f}"
                         " s away from now (replayed or clock off)")
    expected = hmac_sha256(secret, timestamp.strip().encode() + body)
    if not same(expected, b64_digest(signature)):
        raise Unverified("X-Zendesk-Webhook-Signature does not match the body")


def _timestamp_s(value: str) -> float:
    try:
        if value.isdigit():
            return float(value)
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise Unverified("X-Zendesk-Webhook-Signature-Timestamp is no time") from None
    if parsed.tzinfo is None:
        raise Unverified("X-Zendesk-Webhook-Signature-Timestamp has no UTC offset")
    return parsed.timestamp()


def verify_request(headers: Mapping[str, str], body: bytes, secret: bytes,
                   now_s: float) -> None:
    """The webhook route's uniform check (header names in lower case)."""
    verify_signature(body, headers.get(SIGNATURE_HEADER), headers.get(TIMESTAMP_HEADER),
                     secret, now_s)


def normalize(payload: Any, mapping: TicketMapping = DEFAULTS[PROVIDER]) -> TicketEvent | None:
    """A ticket webhook (`{"ticket": {…}}`) as a TicketEvent; None for Zendesk's event
    webhooks (`{"type": "zen:event-type:…"}`), which are not subscribed to here."""
    if not isinstance(payload, dict):
        raise InvalidPayload("a Zendesk webhook is a JSON object")
    kind = payload.get("type")
    if "ticket" not in payload and isinstance(kind, str) and kind.startswith("zen:"):
        return None
    return normalize_ticket(payload.get("ticket"), mapping)


def normalize_ticket(ticket: Any, mapping: TicketMapping = DEFAULTS[PROVIDER]) -> TicketEvent:
    """A ticket as the API gives it, or as the trigger body above renders it."""
    mapping = mapping.merged_over(DEFAULTS[PROVIDER])
    if not isinstance(ticket, dict):
        raise InvalidPayload("ticket is missing")
    ticket_id = required_text(ticket.get("id"), "ticket.id")
    status = mapping.status(PROVIDER, [text(ticket.get("status"), "ticket.status",
                                            required=True)])
    opened = iso_ms(ticket.get("created_at"), "ticket.created_at", required=True)
    assert opened is not None
    custom = ticket.get("custom_fields") or []
    if not isinstance(custom, list):
        raise InvalidPayload("ticket.custom_fields must be a list of {id, value}")
    fields = {str(f["id"]): f.get("value") for f in custom
              if isinstance(f, dict) and isinstance(f.get("id"), str | int)}
    return ticket_event(
        SOURCES, provider=PROVIDER, ticket_id=ticket_id, status=status,
        asset_id=asset_of(mapping, fields, ticket.get("tags")),
        priority=text(ticket.get("priority"), "ticket.priority"),
        category=text(ticket.get("type"), "ticket.type"),
        opened_ms=opened,
        updated_ms=iso_ms(ticket.get("updated_at"), "ticket.updated_at") or opened,
        summary=text(ticket.get("subject"), "ticket.subject", prose=True) or "",
        url=_page(mapping, ticket_id, text(ticket.get("url"), "ticket.url")))


def _page(mapping: TicketMapping, ticket_id: str, url: str | None) -> str | None:
    """The agent's page of the ticket: from the API URL (`…/api/v2/tickets/35436.json`) or
    the trigger's `{{ticket.url}}` (`acme.zendesk.com/agent/tickets/35436`, no scheme)."""
    if mapping.ticket_url:
        return mapping.ticket_url.format(id=ticket_id)
    if not url:
        return None
    try:
        parsed = httpx.URL(url if "://" in url else f"https://{url}")
    except (httpx.InvalidURL, ValueError):
        raise InvalidPayload(f"ticket.url is not a URL: {url[:60]!r}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidPayload(f"ticket.url is not an http(s) URL: {url[:60]!r}")
    return f"{parsed.scheme}://{parsed.netloc.decode()}/agent/tickets/{ticket_id}"


class ZendeskClient(VendorClient):
    """Zendesk Support API v2, basic auth with an agent's email and API token (sent as
    `email/token`), or an OAuth bearer token."""

    provider = "zendesk"
    username_suffix = "/token"  # API token authentication: `{email}/token:{token}`

    def search_updated(self, since_ms: int) -> Poll:
        """Tickets updated at or after `since_ms` through the cursor-based incremental
        export (to the second; an admin's token is needed)."""
        poll = Poll()

        def read(ticket: Any) -> TicketEvent:
            return normalize_ticket(ticket, self.config)

        params: dict[str, str | int] = {"start_time": since_ms // 1000,
                                        "per_page": self.page_size}
        while True:
            page = self._call("GET", "/api/v2/incremental/tickets/cursor.json", params=params)
            tickets = dig(page, "tickets")
            if not isinstance(tickets, list):
                raise InvalidPayload("the incremental export answer has no `tickets` list")
            for ticket in tickets:
                self._collect(poll, ticket, since_ms, read, str(dig(ticket, "id")))
            cursor = dig(page, "after_cursor")
            if dig(page, "end_of_stream") is not False or not cursor:
                return poll
            params = {"cursor": cursor, "per_page": self.page_size}

    def find_by_marker(self, marker: str) -> Poll:
        """The tickets whose `external_id` is `marker` (what `open_ticket(marker=…)` sets):
        `GET /api/v2/tickets?external_id=…`, read from the database (no search index lag)."""
        page = self._call("GET", "/api/v2/tickets",
                          params={"external_id": checked_marker(marker)})
        tickets = dig(page, "tickets")
        if not isinstance(tickets, list):
            raise InvalidPayload("the ticket list answer has no `tickets` list")
        poll = Poll()
        for ticket in tickets:
            self._collect(poll, ticket, 0, lambda t: normalize_ticket(t, self.config),
                          str(dig(ticket, "id")))
        return poll

    def open_ticket(self, asset_id: str, summary: str, description: str,
                    priority: str | None = None, *, marker: str | None = None) -> TicketRef:
        """Create a ticket naming the asset by tag (`<label_prefix><asset>`) and in the
        asset custom field, whichever the mapping has. `marker` becomes the ticket's
        `external_id` (`find_by_marker`)."""
        ticket: dict[str, Any] = {"subject": summary, "comment": {"body": description}}
        if marker is not None:
            ticket["external_id"] = checked_marker(marker)
        if self.asset.label_prefix is not None:
            tag = asset_id if not self.asset.table_only else self.asset.vendor_value(asset_id)
            ticket["tags"] = [self.asset.label_prefix + tag]
        if self.asset.field is not None:
            field_id: int | str = (int(self.asset.field) if self.asset.field.isdigit()
                                   else self.asset.field)
            ticket["custom_fields"] = [{"id": field_id,
                                        "value": self.asset.vendor_value(asset_id)}]
        wanted = vendor_priority(self.config, priority)
        if wanted is not None:
            ticket["priority"] = wanted
        created = self._call("POST", "/api/v2/tickets", json={"ticket": ticket})
        event = normalize_ticket(dig(created, "ticket"), self.config)
        return TicketRef(provider=PROVIDER, ticket_id=event.ticket_id, status=event.status,
                         summary=event.summary, url=event.url)
