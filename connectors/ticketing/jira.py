"""Jira Cloud: issue webhooks, their signature, and the REST client (search, open an issue).

Webhook (Jira admin → System → WebHooks, or the REST registration of an admin webhook):
URL `https://<bessmon>/api/v1/webhooks/jira`, events "Issue: created, updated", optionally a
JQL filter (e.g. `labels in (asset:nordvik-u01, …)` or `cf[10042] is not EMPTY`), and a
**Secret** — the same value as `BESSMON_WEBHOOK_SECRET_JIRA`. Jira then signs each delivery:
`X-Hub-Signature: sha256=<hex HMAC-SHA256(secret, raw body)>`, and names it with
`X-Atlassian-Webhook-Identifier` (unchanged across retries: our idempotency key). Jira signs
nothing else (no timestamp): a replayed body republishes a ticket version consumers already
have, which they ignore. Webhooks without a secret are refused.

Payload (`jira:issue_created` / `jira:issue_updated`; others are ignored):
`issue.key`, `issue.self`, `issue.fields.{summary, status.name, status.statusCategory.key,
created, updated, resolutiondate, labels, priority.name, issuetype.name, <asset field>}`.
Times are ISO 8601 with an offset (`2024-05-14T09:12:33.123+0200`). The ticket id is the
issue key; its URL the issue's browse page."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from connectors.ticketing.config import TicketingConfigError
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
from connectors.ticketing.signing import Unverified, hex_digest, hmac_sha256, same
from contracts.events import TicketEvent, TicketRef

PROVIDER = "jira"
EVENTS = frozenset({"jira:issue_created", "jira:issue_updated"})
SIGNATURE_HEADER = "x-hub-signature"
DELIVERY_HEADER = "x-atlassian-webhook-identifier"
# Where each TicketEvent field is read from (errors name the vendor's field).
SOURCES = {"ticket_id": "issue.key", "asset_id": "the asset (labels or asset field)",
           "priority": "priority.name", "category": "issuetype.name",
           "opened_ms": "issue.fields.created", "updated_ms": "issue.fields.updated",
           "resolved_ms": "issue.fields.resolutiondate", "summary": "issue.fields.summary",
           "url": "issue.self"}
SEARCH_FIELDS = ("summary", "status", "created", "updated", "resolutiondate", "labels",
                 "priority", "issuetype")


def verify_signature(body: bytes, signature: str | None, secret: bytes) -> None:
    """`X-Hub-Signature: sha256=<hex>` over the raw body, or `Unverified`."""
    if not signature:
        raise Unverified("X-Hub-Signature is missing (set a secret on the Jira webhook)")
    method, _, digest = signature.strip().partition("=")
    if method.lower() != "sha256" or not digest:
        raise Unverified("X-Hub-Signature must be sha256=<hex digest>")
    if not same(hmac_sha256(secret, body), hex_digest(digest)):
        raise Unverified("X-Hub-Signature does not match the body")


def verify_request(headers: Mapping[str, str], body: bytes, secret: bytes,
                   now_s: float) -> None:
    """The webhook route's uniform check (header names in lower case)."""
    verify_signature(body, headers.get(SIGNATURE_HEADER), secret)


def normalize(payload: Any, mapping: TicketMapping = DEFAULTS[PROVIDER]) -> TicketEvent | None:
    """An issue webhook as a TicketEvent; None for the events that are no issue change."""
    if not isinstance(payload, dict):
        raise InvalidPayload("a Jira webhook is a JSON object")
    event = text(payload.get("webhookEvent"), "webhookEvent", required=True)
    if event not in EVENTS:
        return None
    return normalize_issue(payload.get("issue"), mapping)


def normalize_issue(issue: Any, mapping: TicketMapping = DEFAULTS[PROVIDER]) -> TicketEvent:
    """An issue as Jira's REST API and webhooks describe it."""
    mapping = mapping.merged_over(DEFAULTS[PROVIDER])
    fields = dig(issue, "fields")
    if not isinstance(fields, dict):
        raise InvalidPayload("issue.fields is missing")
    key = required_text(dig(issue, "key"), "issue.key")
    status = mapping.status(PROVIDER, [text(dig(fields, "status", "name"), "status.name")],
                            text(dig(fields, "status", "statusCategory", "key"),
                                 "status.statusCategory.key"))
    opened = iso_ms(fields.get("created"), "issue.fields.created", required=True)
    assert opened is not None
    return ticket_event(
        SOURCES, provider=PROVIDER, ticket_id=key, status=status,
        asset_id=asset_of(mapping, fields, fields.get("labels")),
        priority=text(dig(fields, "priority", "name"), "priority.name"),
        category=text(dig(fields, "issuetype", "name"), "issuetype.name"),
        opened_ms=opened,
        updated_ms=iso_ms(fields.get("updated"), "issue.fields.updated") or opened,
        resolved_ms=iso_ms(fields.get("resolutiondate"), "issue.fields.resolutiondate"),
        summary=text(fields.get("summary"), "issue.fields.summary", prose=True) or "",
        url=_page(mapping, issue, key))


def _page(mapping: TicketMapping, issue: Any, key: str) -> str | None:
    if mapping.ticket_url:
        return mapping.ticket_url.format(key=key, id=text(dig(issue, "id"), "issue.id") or "")
    return browse_url(text(dig(issue, "self"), "issue.self"), key)


def browse_url(self_url: str | None, key: str) -> str | None:
    """`https://acme.atlassian.net/rest/api/2/issue/10042` → `…/browse/BESS-17` (a Server
    context path before /rest/ is kept)."""
    if not self_url or "/rest/" not in self_url:
        return None
    return f"{self_url.split('/rest/', 1)[0]}/browse/{key}"


def adf(textual: str) -> dict[str, Any]:
    """Plain text as an Atlassian Document Format document (API v3 wants descriptions so):
    one paragraph per blank-line-separated block."""
    blocks = [b.strip() for b in textual.split("\n\n") if b.strip()]
    return {"type": "doc", "version": 1, "content": [
        {"type": "paragraph", "content": [{"type": "text", "text": b}]} for b in blocks]}


class JiraClient(VendorClient):
    """Jira Cloud REST API v3, basic auth with an account's email and API token.

    Search uses `GET /rest/api/3/search/jql` (token paging): Atlassian removed the older
    `/rest/api/3/search` from Jira Cloud in 2025 (it answers 410)."""

    provider = "jira"

    def search_updated(self, since_ms: int) -> Poll:
        """Issues updated at or after `since_ms`, oldest first. JQL reads times to the
        minute in the API user's zone (`timezone`), so the query starts at that minute and
        what precedes `since_ms` is dropped here."""
        since = datetime.fromtimestamp(since_ms / 1000, ZoneInfo(self.config.timezone))
        jql = f'updated >= "{since:%Y-%m-%d %H:%M}" ORDER BY updated ASC'
        fields = ",".join(SEARCH_FIELDS + ((self.asset.field,) if self.asset.field else ()))
        poll = Poll()
        token: str | None = None

        def read(issue: Any) -> TicketEvent:
            return normalize_issue(issue, self.config)

        while True:
            params: dict[str, str | int] = {"jql": jql, "fields": fields,
                                            "maxResults": self.page_size}
            if token:
                params["nextPageToken"] = token
            page = self._call("GET", "/rest/api/3/search/jql", params=params)
            issues = dig(page, "issues")
            if not isinstance(issues, list):
                raise InvalidPayload("the search answer has no `issues` list")
            for issue in issues:
                self._collect(poll, issue, since_ms, read, str(dig(issue, "key")))
            token = dig(page, "nextPageToken")
            if not token or dig(page, "isLast") is True:
                return poll

    def find_by_marker(self, marker: str) -> Poll:
        """The issues labelled `marker` (what `open_ticket(marker=…)` sets), oldest first:
        one page, a marker names one issue. Jira's search index may trail a creation by
        a few seconds: callers wait a moment before taking "none" for an answer."""
        fields = ",".join(SEARCH_FIELDS + ((self.asset.field,) if self.asset.field else ()))
        page = self._call("GET", "/rest/api/3/search/jql", params={
            "jql": f'labels = "{checked_marker(marker)}" ORDER BY created ASC',
            "fields": fields, "maxResults": 10})
        issues = dig(page, "issues")
        if not isinstance(issues, list):
            raise InvalidPayload("the search answer has no `issues` list")
        poll = Poll()
        for issue in issues:
            self._collect(poll, issue, 0, lambda i: normalize_issue(i, self.config),
                          str(dig(issue, "key")))
        return poll

    def open_ticket(self, asset_id: str, summary: str, description: str,
                    priority: str | None = None, *, marker: str | None = None) -> TicketRef:
        """Open an issue about the asset in `create.project`, naming the asset the way the
        mapping reads it back: a label `<label_prefix><asset>` when a prefix is configured,
        else the asset field (as text). `marker` is added as a label (`find_by_marker`)."""
        create = self.config.create
        if not create.project:
            raise TicketingConfigError("jira.create.project is not configured")
        fields: dict[str, Any] = {
            "project": {"key": create.project}, "issuetype": {"name": create.issue_type},
            "summary": summary, "description": adf(description)}
        if self.asset.label_prefix is not None:
            label = asset_id if not self.asset.table_only else self.asset.vendor_value(asset_id)
            fields["labels"] = [self.asset.label_prefix + label]
        elif self.asset.field is not None:
            fields[self.asset.field] = self.asset.vendor_value(asset_id)
        if marker is not None:
            fields["labels"] = [*fields.get("labels", []), checked_marker(marker)]
        wanted = vendor_priority(self.config, priority)
        if wanted is not None:
            fields["priority"] = {"name": wanted}
        created = self._call("POST", "/rest/api/3/issue", json={"fields": fields})
        key = required_text(dig(created, "key"), "created issue key")
        url = (self.config.ticket_url.format(key=key, id=dig(created, "id") or "")
               if self.config.ticket_url else
               browse_url(text(dig(created, "self"), "self"), key))
        return TicketRef(provider=PROVIDER, ticket_id=key, status="open", summary=summary,
                         url=url)
