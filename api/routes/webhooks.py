"""Ticket webhooks: `POST /api/v1/webhooks/{provider}`, provider jira | servicenow | zendesk.

Authenticated by the vendor's own signature or shared secret (see connectors/ticketing/<vendor>
.py for each contract and how to set the vendor side up), never by the user token. A delivery
is normalized to a `TicketEvent` and published to `settings.topic_tickets`, key
`provider:ticket_id`; the answer comes once the broker has acknowledged it.

    202 published   the ticket event is on the topic
    202 duplicate   this delivery was published before (remembered for the dedupe TTL)
    202 ignored     a genuine delivery that is no ticket change (a Jira comment event, a
                    record of another ServiceNow table): 2xx, so the vendor neither retries
                    nor counts a failure
    400             the body is not JSON, or not the vendor's payload shape, or a value in
                    it is impossible: a field of the wrong type, a number that is not
                    finite or beyond 64 bits, text with control characters or lone
                    surrogates, a time outside 2000..2100 or more than 10 min ahead of
                    this server's clock, a ticket updated or resolved before it was
                    opened, a link that is not http(s), an id or asset of more than 200
                    characters (the detail names the vendor's field and the problem);
                    also a Content-Length that is no number
    401             signature or shared secret missing or wrong; Zendesk timestamp > 5 min off
    403             no secret configured for the provider (BESSMON_WEBHOOK_SECRET_<PROVIDER>)
    404             no such provider
    409             the same delivery is being published at this moment: retry later
    413             the body is over BESSMON_WEBHOOK_MAX_BYTES (default 1 MiB)
    415             a Content-Type that is not JSON (application/json or */*+json; none
                    at all is taken as JSON)
    422             the ticket names no asset of the fleet (none, or an unknown one), or a
                    status the mapping does not know: fixed in the ticket or the mapping,
                    not by retrying
    503             Kafka or Redis unavailable: nothing was recorded, the vendor should retry

Idempotency: a delivery is identified by the vendor's delivery id (Jira
`X-Atlassian-Webhook-Identifier`, Zendesk `X-Zendesk-Webhook-Invocation-Id`, ServiceNow
`X-Bessmon-Delivery`), else by `provider:ticket_id:updated_ms` plus a digest of the normalized
event (vendors' update times are to the second: two real changes within one second differ in
content). Redis `SET NX` marks it `pending` (60 s) while it is published and `done` after
(TTL `BESSMON_WEBHOOK_DEDUPE_TTL_S`); a failed publish forgets the mark, so the vendor's retry
goes through. The topic can still see a ticket version twice (a publish acknowledged after
our timeout, a redelivery after the TTL): consumers keep the latest `updated_ms` per ticket
and ignore the rest (flows/episodes.py).

A published ticket whose category maps to an exclusion category (`exclusions:` in the
ticketing mapping) proposes an exclusion window, once per ticket (docs/exclusions.md)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import time
from typing import Any

from confluent_kafka import KafkaException
from fastapi import APIRouter, FastAPI, HTTPException, Request, status
from redis.exceptions import RedisError

from api.context import ApiContext
from api.deps import CtxDep, FleetDep, RedisDep
from api.routes.exclusions import propose_from_ticket
from api.views import WebhookAnswer
from connectors.kafka import CheckedProducer
from connectors.redis_store import PREFIX
from connectors.ticketing.config import TicketingSettings
from connectors.ticketing.mapping import TicketMapping
from connectors.ticketing.payload import InvalidPayload, UnmappedValue
from connectors.ticketing.signing import Unverified
from connectors.ticketing.webhooks import WEBHOOKS
from contracts.events import TicketEvent

log = logging.getLogger(__name__)
router = APIRouter(prefix="/webhooks", tags=["webhooks"])

PENDING_TTL_S = 60
PUBLISH_TIMEOUT_S = 15.0
_PUBLISH_LOCK = threading.Lock()  # one publish at a time: each flush reports its own record


def dedupe_key(provider: str, identity: str) -> str:
    """The Redis key remembering a delivery (hashed: vendor ids are of any length)."""
    return f"{PREFIX}:webhook:{provider}:{hashlib.sha256(identity.encode()).hexdigest()[:40]}"


def _ticketing(app: FastAPI) -> TicketingSettings:
    """Read from the environment on first use, then kept with the app."""
    ticketing: TicketingSettings | None = getattr(app.state, "ticketing", None)
    if ticketing is None:
        ticketing = app.state.ticketing = TicketingSettings()
    return ticketing


async def _body(request: Request, limit: int) -> bytes:
    """The raw body, refused (413) as soon as it is known to exceed `limit` — by its
    declared length, or while it streams in without one."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):  # "²".isdigit() is True
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "bad Content-Length")
        if len(declared) > 18 or int(declared) > limit:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE,
                                f"body over {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE,
                                f"body over {limit} bytes")
    return bytes(body)


def _json_type(content_type: str) -> bool:
    """application/json or a `+json` type, parameters (charset) aside."""
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/")
                                           and media.endswith("+json"))


def _publish(ctx: ApiContext, key: str, value: bytes) -> None:
    """Produce and wait for the broker's acknowledgement (in a worker thread). The producer
    is created on first use (kept in the context), so the API starts without Kafka. Records
    expire before the flush gives up, so every flush ends with its own record settled."""
    settings = ctx.settings
    with _PUBLISH_LOCK:
        producer = ctx.ticket_producer
        if producer is None:
            config: dict[str, str | int | bool] = {"client.id": "bessmon-webhooks",
                                                   "message.timeout.ms": 10_000}
            producer = ctx.ticket_producer = CheckedProducer(settings.require_kafka(), **config)
        producer.produce(settings.topic_tickets, key, value)
        producer.flush(PUBLISH_TIMEOUT_S)


@router.post("/{provider}", status_code=status.HTTP_202_ACCEPTED, responses={
    400: {"description": "not JSON, or not the vendor's payload shape"},
    401: {"description": "signature / shared secret missing or wrong, or too old"},
    403: {"description": "no webhook secret configured for this provider"},
    404: {"description": "unknown provider"},
    409: {"description": "the same delivery is being processed; retry"},
    413: {"description": "body too large"},
    415: {"description": "a Content-Type that is not JSON"},
    422: {"description": "names no asset of the fleet, or an unmapped status"},
    503: {"description": "Kafka or Redis unavailable; retry"},
})
async def receive(provider: str, request: Request, ctx: CtxDep, fleet: FleetDep,
                  redis: RedisDep) -> WebhookAnswer:
    spec = WEBHOOKS.get(provider)
    if spec is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no webhook provider {provider!r}")
    ticketing = _ticketing(request.app)
    secret = ticketing.secret(spec.provider)
    if secret is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            f"{provider} webhooks are not enabled: "
                            f"BESSMON_WEBHOOK_SECRET_{provider.upper()} is not set")
    body = await _body(request, ticketing.webhook_max_bytes)
    try:
        spec.verify(request.headers, body, secret, time.time())
    except Unverified as exc:
        log.warning("%s webhook refused: %s", provider, exc)
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, str(exc)) from None
    content_type = request.headers.get("content-type")  # none at all: taken as JSON
    if content_type is not None and not _json_type(content_type):
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                            f"Content-Type {content_type[:100]!r} is not JSON: send "
                            "application/json (the vendor's JSON request format)")
    try:
        payload: Any = json.loads(body)
    except (ValueError, RecursionError):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "the body is not JSON") from None
    try:
        event = spec.normalize(payload, ticketing.config.provider(spec.provider))
    except UnmappedValue as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    except InvalidPayload as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    if event is None:
        return WebhookAnswer(status="ignored", reason="not a ticket change")
    key = f"{event.provider}:{event.ticket_id}"
    if event.asset_id is None or event.asset_id not in fleet.assets:
        named = "names no asset" if event.asset_id is None else \
            f"names asset {event.asset_id!r}, which is not in the fleet"
        log.warning("%s webhook: ticket %s %s", provider, key, named)
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"ticket {key} {named}")

    value = event.model_dump_json().encode()
    delivery = request.headers.get(spec.delivery_header, "").strip()
    identity = (f"delivery:{delivery}" if delivery else
                f"{key}:{event.updated_ms}:{hashlib.sha256(value).hexdigest()[:16]}")
    mark = dedupe_key(provider, identity)
    try:
        if not await redis.set(mark, b"pending", nx=True, ex=PENDING_TTL_S):
            if await redis.get(mark) == b"done":
                return WebhookAnswer(status="duplicate", key=key, asset_id=event.asset_id)
            raise HTTPException(status.HTTP_409_CONFLICT,
                                "this delivery is being processed; retry later")
        try:
            await asyncio.to_thread(_publish, ctx, key, value)
        except (RuntimeError, KafkaException) as exc:  # DeliveryFailed, Kafka unset
            await redis.delete(mark)
            log.error("%s webhook: ticket %s not published: %s", provider, key, exc)
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                                "the ticket could not be published; retry later") from None
        await redis.set(mark, b"done", ex=ticketing.webhook_dedupe_ttl_s)
    except RedisError as exc:
        log.error("%s webhook: Redis unavailable: %s", provider, exc)
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            "deliveries cannot be deduplicated now; retry later") from None
    log.info("%s webhook: ticket %s (%s, asset %s) published", provider, key, event.status,
             event.asset_id)
    await _propose_exclusion(ctx, event, ticketing.config.provider(spec.provider))
    return WebhookAnswer(status="published", key=key, asset_id=event.asset_id)


async def _propose_exclusion(ctx: ApiContext, event: TicketEvent, mapping: TicketMapping
                             ) -> None:
    """A ticket whose category maps to an exclusion category proposes a window (or gives its
    proposal its end), once per ticket (docs/exclusions.md, "Tickets"). The ticket is
    published whatever happens here: a failure is logged, not answered to the vendor."""
    if not mapping.exclusions or not event.category:
        return
    try:
        await asyncio.to_thread(propose_from_ticket, ctx, event, mapping,
                                int(time.time() * 1000))
    except Exception:
        log.exception("ticket %s:%s: the exclusion proposal failed", event.provider,
                      event.ticket_id)
