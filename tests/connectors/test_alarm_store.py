"""Active alarms in a real Redis: raised and cleared by the flows' sink, acknowledged and
shelved through the store the API uses; a clear takes the handling with it, a replayed raise
keeps it, and an action on an alarm cleared meanwhile is refused."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
import redis
import redis.asyncio as aioredis

from connectors.alarm_store import NoSuchAlarm, act_on_alarm, active_alarms
from connectors.live_log import live_channel, split
from connectors.redis_store import alarm_handling_key
from contracts.alarms import AlarmHandling, AlarmRefused
from contracts.events import BreachEvent
from flows.redis_sink import RedisSink
from flows.sink_errors import ListReporter

NOW = 1_800_000_000_000


def breach(site: str, asset: str, severity: str, raised_ms: int,
           state: str = "raised") -> BreachEvent:
    return BreachEvent(breach_id=f"r:{severity}:{asset}:{raised_ms}", rule_id="r", kind="limit",
                       asset_id=asset, site_id=site, tag="cell_temp_max_c",
                       severity=severity, state=state, raised_ms=raised_ms,  # type: ignore[arg-type]
                       ts_ms=raised_ms, value=50.0, threshold=45.0, message="hot")


def test_raise_acknowledge_shelve_clear(redis_url: str, redis_client: redis.Redis) -> None:
    site = f"s-{uuid.uuid4().hex[:6]}"
    sink = RedisSink(redis_url, ListReporter()).build("redis", 0, 1)
    minor = breach(site, "b1", "minor", NOW - 9_000)
    critical = breach(site, "b2", "critical", NOW - 5_000)
    sink.write_batch([minor, critical])

    async def scenario() -> None:
        client = aioredis.Redis.from_url(redis_url)
        pubsub = client.pubsub()
        await pubsub.subscribe(live_channel("alarms"))
        try:
            listed = await active_alarms(client, [site], NOW)
            assert [(a.breach.asset_id, a.state) for a in listed] == [
                ("b2", "active_unacknowledged"), ("b1", "active_unacknowledged")]
            acked = await act_on_alarm(client, site, critical.breach_id, "acknowledge",
                                       by="ana", now_ms=NOW, comment="crew called")
            assert acked.state == "active_acknowledged"
            shelved = await act_on_alarm(client, site, minor.breach_id, "shelve", by="bo",
                                         now_ms=NOW, comment="sensor swap",
                                         shelve_until_ms=NOW + 60_000)
            assert shelved.state == "shelved"
            with pytest.raises(AlarmRefused, match="was acknowledged by ana"):
                await act_on_alarm(client, site, critical.breach_id, "acknowledge", by="bo",
                                   now_ms=NOW + 1)
            assert {a.breach.asset_id: a.state for a in await active_alarms(
                client, [site], NOW + 1)} == {"b2": "active_acknowledged", "b1": "shelved"}
            assert {a.breach.asset_id: a.state for a in await active_alarms(
                client, [site], NOW + 60_000)} == {"b2": "active_acknowledged",
                                                   "b1": "active_unacknowledged"}
            published: list[AlarmHandling] = []
            while len(published) < 2:
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2)
                if msg is not None:
                    _, payload = split(msg["data"])
                    data = json.loads(payload)
                    assert (data["kind"], data["site_id"]) == ("handling", site)
                    published.append(AlarmHandling.model_validate(data["handling"]))
            assert [(h.breach_id, h.acknowledged_by, h.shelved_by) for h in published] == [
                (critical.breach_id, "ana", None), (minor.breach_id, None, "bo")]
        finally:
            await pubsub.aclose()
            await client.aclose()

    asyncio.run(scenario())
    # A replayed epoch re-raises the same breach: its acknowledgement stands.
    sink.write_batch([critical])
    assert redis_client.hexists(alarm_handling_key(site), critical.breach_id)
    # The flows clear it: the alarm and its handling are gone; acting on it is refused.
    sink.write_batch([breach(site, "b2", "critical", NOW - 5_000, state="cleared")])
    assert not redis_client.hexists(alarm_handling_key(site), critical.breach_id)

    async def after_clear() -> None:
        client = aioredis.Redis.from_url(redis_url)
        try:
            assert [a.breach.asset_id for a in await active_alarms(client, [site], NOW)] == ["b1"]
            with pytest.raises(NoSuchAlarm):
                await act_on_alarm(client, site, critical.breach_id, "acknowledge", by="ana",
                                   now_ms=NOW)
        finally:
            await client.aclose()

    asyncio.run(after_clear())
    sink.close()
