"""Active alarms in Redis, with what operators did to them (contracts/alarms.py): read by the
API for lists and feeds, acted on by the API for acknowledge / shelve / unshelve.

An action is checked and stored atomically against the flows clearing the breach meanwhile
(WATCH on the site's active-breach hash): an alarm cleared between the read and the write
is refused as cleared, never left with a handling of a breach that is gone."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import redis
import redis.asyncio as aioredis
from redis.exceptions import WatchError

from connectors.live_log import publish
from connectors.redis_store import alarm_handling_key, alarms_key
from contracts.alarms import Action, AlarmHandling, AlarmState, alarm_state, handle
from contracts.events import SEVERITY_RANK, BreachEvent
from contracts.live import BreachMessage, HandlingMessage


@dataclass(frozen=True)
class Alarm:
    breach: BreachEvent
    handling: AlarmHandling | None
    state: AlarmState


def write_alarm(pipe: redis.client.Pipeline, event: BreachEvent) -> None:
    """Queue the hot-state writes of an alarm raised or cleared: the site's active-alarm
    hash (a cleared alarm takes its operators' handling with it) and the `alarms` channel.
    Idempotent but for the channel (a feed): the flows' Redis sink and the control loop
    both write alarms this way."""
    if event.state == "raised":
        pipe.hset(alarms_key(event.site_id), event.breach_id, event.model_dump_json())
    else:
        pipe.hdel(alarms_key(event.site_id), event.breach_id)
        pipe.hdel(alarm_handling_key(event.site_id), event.breach_id)
    publish(pipe, "alarms", BreachMessage(breach=event).model_dump_json())


class NoSuchAlarm(KeyError):
    """No active alarm of that id at that site (never raised, or cleared and gone)."""


async def active_alarms(client: aioredis.Redis, site_ids: Iterable[str],
                        now_ms: int) -> list[Alarm]:
    """Every active alarm of the sites, most severe and newest first."""
    sites = list(site_ids)
    pipe = client.pipeline(transaction=False)
    for site_id in sites:
        pipe.hgetall(alarms_key(site_id))
        pipe.hgetall(alarm_handling_key(site_id))
    replies = await pipe.execute()
    out: list[Alarm] = []
    for breaches, handlings in zip(replies[::2], replies[1::2], strict=True):
        for breach_id, raw in breaches.items():
            breach = BreachEvent.model_validate_json(raw)
            handled = handlings.get(breach_id)
            handling = AlarmHandling.model_validate_json(handled) if handled else None
            out.append(Alarm(breach, handling, alarm_state(breach, handling, now_ms)))
    out.sort(key=lambda a: (SEVERITY_RANK[a.breach.severity], -a.breach.raised_ms,
                            a.breach.breach_id))
    return out


async def act_on_alarm(client: aioredis.Redis, site_id: str, breach_id: str, action: Action,
                       *, by: str, now_ms: int, comment: str | None = None,
                       shelve_until_ms: int | None = None) -> Alarm:
    """Apply an operator's action; NoSuchAlarm when it is not active, AlarmRefused when the
    action does not apply (contracts/alarms.py `handle`)."""
    active, handled = alarms_key(site_id), alarm_handling_key(site_id)
    async with client.pipeline(transaction=True) as pipe:
        while True:
            try:
                await pipe.watch(active, handled)
                raw = await pipe.hget(active, breach_id)
                if raw is None:
                    raise NoSuchAlarm(breach_id)
                breach = BreachEvent.model_validate_json(raw)
                before = await pipe.hget(handled, breach_id)
                handling = handle(breach, AlarmHandling.model_validate_json(before)
                                  if before else None, action, by=by, now_ms=now_ms,
                                  comment=comment, shelve_until_ms=shelve_until_ms)
                pipe.multi()
                pipe.hset(handled, breach_id, handling.model_dump_json())
                publish(pipe, "alarms", HandlingMessage(site_id=site_id, handling=handling)
                        .model_dump_json())
                await pipe.execute()
                return Alarm(breach, handling, alarm_state(breach, handling, now_ms))
            except WatchError:
                continue
