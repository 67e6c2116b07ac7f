"""ServiceNow: incident records pushed by a business rule, their shared-secret check, and the
REST client (Table API: search, open an incident).

ServiceNow has no built-in signed webhooks, so this is the contract for the business rule
(table `incident`, after insert and update, advanced):

- `POST https://<bessmon>/api/v1/webhooks/servicenow`, `Content-Type: application/json`;
- body: the incident record as the Table API gives it — `number`, `sys_id`, `state`,
  `opened_at`, `sys_updated_on`, `resolved_at`, `closed_at`, `short_description`,
  `priority`, `category`, `cmdb_ci` — stored values (`getValue`: codes, and date-times in
  UTC as `YYYY-MM-DD HH:MM:SS`), a field possibly as `{"value", "display_value"}` (the CI is
  best sent so: its display value is what people name assets by); bare or as
  `{"result": {…}}`;
- authentication, one of: `X-Bessmon-Signature: sha256=<base64 HMAC-SHA256(secret, raw
  body)>` (preferred: the secret never travels), or `X-Bessmon-Token: <secret>` (simplest;
  relies on TLS); the secret is `BESSMON_WEBHOOK_SECRET_SERVICENOW`;
- optional `X-Bessmon-Delivery: <sys_id>:<sys_mod_count>` — one id per record version, our
  idempotency key (without it: the ticket, its update time and content).

```javascript
(function executeRule(current, previous) {
  var body = JSON.stringify({
    number: current.getValue('number'), sys_id: current.getUniqueValue(),
    sys_class_name: current.getValue('sys_class_name'), state: current.getValue('state'),
    priority: current.getValue('priority'), category: current.getValue('category'),
    short_description: current.getValue('short_description'),
    opened_at: current.getValue('opened_at'),
    sys_updated_on: current.getValue('sys_updated_on'),
    resolved_at: current.getValue('resolved_at'), closed_at: current.getValue('closed_at'),
    cmdb_ci: {value: current.getValue('cmdb_ci'),
              display_value: current.getDisplayValue('cmdb_ci')}});
  var secret = gs.getProperty('x_bessmon.webhook_secret');   // a password2 property
  var mac = new GlideCertificateEncryption().generateMac(
      GlideStringUtil.base64Encode(secret), 'HmacSHA256', body);
  var request = new sn_ws.RESTMessageV2();
  request.setEndpoint('https://bessmon.example/api/v1/webhooks/servicenow');
  request.setHttpMethod('POST');
  request.setRequestHeader('Content-Type', 'application/json');
  request.setRequestHeader('X-Bessmon-Signature', 'sha256=' + mac);
  request.setRequestHeader('X-Bessmon-Delivery',
      current.getUniqueValue() + ':' + current.getValue('sys_mod_count'));
  request.setRequestBody(body);
  request.executeAsync();
})(current, previous);
```

A record of another class (`sys_class_name` other than `incident`) is ignored. The ticket id
is the incident number; its URL the record's form on the instance (`base_url`)."""

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
    required_text,
    text,
    ticket_event,
    utc_ms,
)
from connectors.ticketing.rest import Poll, VendorClient, checked_marker, vendor_priority
from connectors.ticketing.signing import Unverified, b64_digest, hmac_sha256, same
from contracts.events import TicketEvent, TicketRef

PROVIDER = "servicenow"
SIGNATURE_HEADER = "x-bessmon-signature"
TOKEN_HEADER = "x-bessmon-token"
DELIVERY_HEADER = "x-bessmon-delivery"
FIELDS = ("number", "sys_id", "sys_class_name", "state", "priority", "category",
          "short_description", "opened_at", "sys_created_on", "sys_updated_on", "resolved_at",
          "closed_at")
# Where each TicketEvent field is read from (errors name the vendor's field).
SOURCES = {"ticket_id": "number", "asset_id": "the asset (CI field)", "priority": "priority",
           "category": "category", "opened_ms": "opened_at", "updated_ms": "sys_updated_on",
           "resolved_ms": "resolved_at", "summary": "short_description",
           "url": "sys_id (in the ticket's link)"}
# Priority (1 Critical … 5 Planning) is derived from impact × urgency by the default
# priority lookup; to open an incident at a priority, set the pair that yields it.
IMPACT_URGENCY = {"1": ("1", "1"), "2": ("1", "2"), "3": ("2", "2"), "4": ("2", "3"),
                  "5": ("3", "3")}


def verify(body: bytes, signature: str | None, token: str | None, secret: bytes) -> None:
    """The HMAC signature when there is one (then the token is not looked at), else the
    shared token; `Unverified` when neither proves the sender knows the secret."""
    if signature:
        method, _, digest = signature.strip().partition("=")
        if method.lower() != "sha256" or not digest:
            raise Unverified("X-Bessmon-Signature must be sha256=<base64 digest>")
        if not same(hmac_sha256(secret, body), b64_digest(digest)):
            raise Unverified("X-Bessmon-Signature does not match the body")
        return
    if token:
        if not same(secret, token.strip().encode()):
            raise Unverified("X-Bessmon-Token is wrong")
        return
    raise Unverified("neither X-Bessmon-Signature nor X-Bessmon-Token is present")


def verify_request(headers: Mapping[str, str], body: bytes, secret: bytes,
                   now_s: float) -> None:
    """The webhook route's uniform check (header names in lower case)."""
    verify(body, headers.get(SIGNATURE_HEADER), headers.get(TOKEN_HEADER), secret)


def normalize(payload: Any, mapping: TicketMapping = DEFAULTS[PROVIDER]) -> TicketEvent | None:
    """A business-rule (or Table API) incident record as a TicketEvent; None for a record
    of another table."""
    if not isinstance(payload, dict):
        raise InvalidPayload("a ServiceNow record is a JSON object")
    record = payload["result"] if isinstance(payload.get("result"), dict) else payload
    kind = text(record.get("sys_class_name"), "sys_class_name")
    if kind is not None and kind != "incident":
        return None
    return normalize_record(record, mapping)


def normalize_record(record: Any, mapping: TicketMapping = DEFAULTS[PROVIDER]) -> TicketEvent:
    mapping = mapping.merged_over(DEFAULTS[PROVIDER])
    if not isinstance(record, dict):
        raise InvalidPayload("an incident record is a JSON object")
    number = required_text(record.get("number"), "number")
    state = record.get("state")
    status = mapping.status(PROVIDER, [text(state, "state", required=True),
                                       text(dig(state, "display_value"), "state")])
    opened = (utc_ms(record.get("opened_at"), "opened_at")
              or utc_ms(record.get("sys_created_on"), "sys_created_on"))
    if opened is None:
        raise InvalidPayload("opened_at is missing")
    resolved = utc_ms(record.get("resolved_at"), "resolved_at")
    if resolved is None and status == "resolved":  # closed or canceled without resolving
        resolved = utc_ms(record.get("closed_at"), "closed_at")
    sys_id = text(record.get("sys_id"), "sys_id")
    return ticket_event(
        SOURCES, provider=PROVIDER, ticket_id=number, status=status,
        asset_id=asset_of(mapping, record, None),
        priority=text(record.get("priority"), "priority"),
        category=text(record.get("category"), "category"),
        opened_ms=opened,
        updated_ms=utc_ms(record.get("sys_updated_on"), "sys_updated_on") or opened,
        resolved_ms=resolved,
        summary=text(record.get("short_description"), "short_description", prose=True) or "",
        url=(mapping.ticket_url.format(sys_id=sys_id, number=number)
             if mapping.ticket_url and sys_id else None))


class ServiceNowClient(VendorClient):
    """The Table API on `incident`: basic auth (integration user) or an OAuth bearer token.

    Records are read with `sysparm_display_value=all`: every field as `{value,
    display_value}`, so times stay in UTC (`value`) while the CI brings its name."""

    provider = "servicenow"

    def search_updated(self, since_ms: int) -> Poll:
        """Incidents updated at or after `since_ms`, oldest first (offset paging). An
        encoded query's date-time is read in the API user's zone (`timezone`)."""
        since = datetime.fromtimestamp(since_ms / 1000, ZoneInfo(self.config.timezone))
        fields = FIELDS + ((self.asset.field,) if self.asset.field else ())
        poll = Poll()

        def read(record: Any) -> TicketEvent:
            return normalize_record(record, self.config)

        offset = 0
        while True:
            page = self._call("GET", "/api/now/table/incident", params={
                "sysparm_query": f"sys_updated_on>={since:%Y-%m-%d %H:%M:%S}"
                                 "^ORDERBYsys_updated_on",
                "sysparm_display_value": "all", "sysparm_exclude_reference_link": "true",
                "sysparm_fields": ",".join(dict.fromkeys(fields)),
                "sysparm_limit": self.page_size, "sysparm_offset": offset})
            records = dig(page, "result")
            if not isinstance(records, list):
                raise InvalidPayload("the Table API answer has no `result` list")
            for record in records:
                self._collect(poll, record, since_ms, read, str(text(
                    dig(record, "number"), "number")))
            if len(records) < self.page_size:
                return poll
            offset += len(records)

    def find_by_marker(self, marker: str) -> Poll:
        """The incidents whose `correlation_id` is `marker` (what `open_ticket(marker=…)`
        sets), oldest first."""
        fields = FIELDS + ((self.asset.field,) if self.asset.field else ())
        page = self._call("GET", "/api/now/table/incident", params={
            "sysparm_query": f"correlation_id={checked_marker(marker)}^ORDERBYsys_created_on",
            "sysparm_display_value": "all", "sysparm_exclude_reference_link": "true",
            "sysparm_fields": ",".join(dict.fromkeys(fields)), "sysparm_limit": 10})
        records = dig(page, "result")
        if not isinstance(records, list):
            raise InvalidPayload("the Table API answer has no `result` list")
        poll = Poll()
        for record in records:
            self._collect(poll, record, 0, lambda r: normalize_record(r, self.config),
                          str(text(dig(record, "number"), "number")))
        return poll

    def open_ticket(self, asset_id: str, summary: str, description: str,
                    priority: str | None = None, *, marker: str | None = None) -> TicketRef:
        """Open an incident on the asset's CI (the table's sys_id for it, else the asset id
        in the asset field). `priority` 1-5 (or a word `create.priorities` maps to one)
        becomes the impact and urgency that yield it. `marker` goes into the incident's
        `correlation_id` (`find_by_marker`)."""
        body: dict[str, str] = {"short_description": summary, "description": description}
        if marker is not None:
            body["correlation_id"] = checked_marker(marker)
            body["correlation_display"] = "bessmon"
        if self.asset.field is not None:
            body[self.asset.field] = self.asset.vendor_value(asset_id)
        if self.config.create.category:
            body["category"] = self.config.create.category
        wanted = vendor_priority(self.config, priority)
        if wanted is not None:
            if wanted not in IMPACT_URGENCY:
                raise TicketingConfigError(f"ServiceNow priority must be 1-5 (or mapped to one "
                                           f"in servicenow.create.priorities), not {wanted!r}")
            body["impact"], body["urgency"] = IMPACT_URGENCY[wanted]
        created = self._call("POST", "/api/now/table/incident", json=body, params={
            "sysparm_display_value": "all", "sysparm_exclude_reference_link": "true"})
        record = dig(created, "result")
        event = normalize_record(record, self.config)
        return TicketRef(provider=PROVIDER, ticket_id=event.ticket_id, status=event.status,
                         summary=event.summary, url=event.url)
