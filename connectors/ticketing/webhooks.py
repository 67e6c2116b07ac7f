"""What the webhook route needs of each vendor: how to check a request, how to read its
payload, which header names the delivery."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from connectors.ticketing import jira, servicenow, zendesk
from connectors.ticketing.config import Provider
from connectors.ticketing.mapping import TicketMapping
from contracts.events import TicketEvent


@dataclass(frozen=True)
class WebhookSpec:
    provider: Provider
    # (headers with lower-case names, raw body, secret, now in epoch s) → None or Unverified
    verify: Callable[[Mapping[str, str], bytes, bytes, float], None]
    # (parsed JSON, mapping) → the ticket, None for an event that is no ticket change;
    # InvalidPayload / UnmappedValue when it cannot be read
    normalize: Callable[[Any, TicketMapping], TicketEvent | None]
    delivery_header: str


WEBHOOKS: dict[str, WebhookSpec] = {
    "jira": WebhookSpec("jira", jira.verify_request, jira.normalize, jira.DELIVERY_HEADER),
    "servicenow": WebhookSpec("servicenow", servicenow.verify_request, servicenow.normalize,
                              servicenow.DELIVERY_HEADER),
    "zendesk": WebhookSpec("zendesk", zendesk.verify_request, zendesk.normalize,
                           zendesk.DELIVERY_HEADER),
}
