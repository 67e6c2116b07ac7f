"""Bytewax sink for the hot state in Redis: each site's latest snapshot, each unit's newest
tag values, each site's active alarms and alerts (hashes by id; a cleared alarm takes its
operators' handling with it, contracts/alarms.py), open unavailability episodes (a hash by
episode id), each site's repair priority list (written whole, `repair_key`) and newest ticket
versions — and every change on the live channels the API's feeds serve
(connectors/live_log.py: `site:<id>`, `fleet`, `asset:<unit>`, `alarms`, `alerts`), one
pipeline per batch.
State writes are idempotent (SET, HSET, HDEL), so an epoch replayed after a recovery leaves
nothing twice; the live channels are a feed, at least once (a replayed epoch publishes again,
with new sequence numbers)."""

from __future__ import annotations

import json
from collections.abc import Sequence

import redis
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from pydantic_core import to_json

from connectors.alarm_store import write_alarm
from connectors.live_log import publish, publish_site
from connectors.redis_store import (
    PREFIX,
    alarms_key,
    alerts_key,
    comms_state_key,
    comms_stats_key,
    dead_letters_key,
    episodes_key,
    hot_state_marker,
    latest_key,
    repair_key,
    tickets_key,
)
from contracts.alarm_sources import ALERT_RULE
from contracts.events import (
    Alert,
    BreachEvent,
    DeadLetterTally,
    DeviceHealth,
    DeviceStats,
    SiteAvailability,
    UnavailabilityEpisode,
)
from contracts.live import LiveStatus, UnitLatest
from flows.outputs import LatestValues, Output, RepairList, SiteTicket
from flows.sink_errors import Reporter, SinkGuard, describe_json

HotState = (SiteAvailability | LatestValues | BreachEvent | Alert | UnavailabilityEpisode
            | SiteTicket | DeadLetterTally | RepairList | DeviceHealth | DeviceStats)


def hot_state(item: Output) -> HotState | None:
    return item if isinstance(item, SiteAvailability | LatestValues | BreachEvent | Alert
                              | UnavailabilityEpisode | SiteTicket | DeadLetterTally
                              | RepairList | DeviceHealth | DeviceStats) else None


def latest_payload(item: LatestValues) -> UnitLatest:
    """`latest:<unit>` and the `asset:<unit>` channel's message (contracts/live.py)."""
    return UnitLatest.model_construct(
        unit_id=item.unit_id, site_id=item.site_id, ts_ms=item.ts_ms,
        assets={asset: tags for asset, tags in item.readings},
        status={a: LiveStatus.model_construct(state=s.state, cause=s.cause,
                                              derate_fraction=s.derate_fraction,
                                              last_hour_pct=hour, today_pct=today)
                for a, s, hour, today in item.assets})


def latest_json(item: LatestValues) -> str:
    """`latest_payload(item).model_dump_json()`, the same text, without building a model per
    asset (a unit's 19: most of what its message cost). pydantic-core writes it either way;
    the dictionaries follow the models' field order (tests/flows/test_hot_state_payloads.py
    holds it to the models')."""
    return to_json({
        "unit_id": item.unit_id, "site_id": item.site_id, "ts_ms": item.ts_ms,
        "assets": {asset: tags for asset, tags in item.readings},
        "status": {a: {"state": s.state, "cause": s.cause, "derate_fraction": s.derate_fraction,
                       "last_hour_pct": hour, "today_pct": today}
                   for a, s, hour, today in item.assets}},
        inf_nan_mode="null").decode()


class _Partition(StatelessSinkPartition[HotState]):
    """One pipeline per batch, through the sink's guard: an item Redis refuses goes to the
    dead-letter topic, an outage is retried (flows/sink_errors.py).

    A Redis that restarted empty gets the hot state back at the next batch: what is written
    every second (site snapshots, units' newest values, repair lists) comes by itself; what
    is written only when it changes — active alarms and alerts, open episodes, tickets,
    dead-letter tallies, devices' comms states and last stats windows — the partition holds
    (`_held`, the hashes it wrote: small, only what is active) and writes again whole when
    its `marker` key is gone."""

    def __init__(self, client: redis.Redis, guard: SinkGuard, marker: str,
                 seeded: dict[tuple[str, str], str] | None = None, first: bool = False) -> None:
        self._client = client
        self._guard = guard
        self._marker = marker
        self._held: dict[tuple[str, str], str] = {}  # (hash, field) → value
        # What Redis held of the flows' hashes when this partition started (a restarted
        # flows process): held too, once this partition writes for the hash's site (the
        # site's state is computed on one worker) — fleet-wide hashes by the first worker.
        self._seeded = dict(seeded or {})
        self._sites: set[str] = {"fleet", "unrouted"} if first else set()

    def write_batch(self, items: list[HotState]) -> None:
        self._guard.write(items, self._write)

    def _hset(self, pipe: redis.client.Pipeline, key: str, field: str, value: str) -> None:
        pipe.hset(key, field, value)
        self._held[(key, field)] = value
        self._seeded.pop((key, field), None)

    def _hdel(self, pipe: redis.client.Pipeline, key: str, field: str) -> None:
        pipe.hdel(key, field)
        self._held.pop((key, field), None)
        self._seeded.pop((key, field), None)

    def _own(self, site_id: str) -> None:
        if site_id not in self._sites:
            self._sites.add(site_id)
            for (key, field), value in list(self._seeded.items()):
                if key.rsplit(":", 1)[1] == site_id:
                    self._held.setdefault((key, field), value)
                    del self._seeded[(key, field)]

    def _write(self, items: Sequence[HotState]) -> None:
        pipe = self._client.pipeline(transaction=False)
        pipe.exists(self._marker)
        for item in items:
            if isinstance(item, SiteAvailability):
                self._own(item.site_id)
                publish_site(pipe, item.site_id, item.model_dump_json())
            elif isinstance(item, BreachEvent):
                write_alarm(pipe, item)
                key = alarms_key(item.site_id)
                self._seeded.pop((key, item.breach_id), None)
                if item.state == "raised":
                    self._held[(key, item.breach_id)] = item.model_dump_json()
                else:
                    self._held.pop((key, item.breach_id), None)
            elif isinstance(item, Alert):
                payload = item.model_dump_json()
                key = alerts_key(item.site_id or "fleet")
                if item.state == "raised":
                    self._hset(pipe, key, item.alert_id, payload)
                else:
                    self._hdel(pipe, key, item.alert_id)
                publish(pipe, "alerts", payload)
            elif isinstance(item, SiteTicket):
                t = item.ticket
                self._hset(pipe, tickets_key(item.site_id), f"{t.provider}:{t.ticket_id}",
                           t.model_dump_json())
            elif isinstance(item, DeadLetterTally):
                self._hset(pipe, dead_letters_key(item.site_id),
                           json.dumps([item.device, item.reason]), item.model_dump_json())
            elif isinstance(item, RepairList):  # whole: what is not in it is not open
                pipe.set(repair_key(item.site_id), json.dumps(item.to_json()))
            elif isinstance(item, DeviceHealth | DeviceStats):  # placed: site_id is set
                key = (comms_state_key if isinstance(item, DeviceHealth) else
                       comms_stats_key)(item.site_id or "unrouted")
                self._hset(pipe, key, item.device_id, item.model_dump_json())
            elif isinstance(item, UnavailabilityEpisode):
                key = episodes_key(item.site_id)
                if item.end_ms is None:
                    self._hset(pipe, key, item.episode_id, item.model_dump_json())
                else:
                    self._hdel(pipe, key, item.episode_id)
            else:
                payload = latest_json(item)
                pipe.set(latest_key(item.unit_id), payload)
                publish(pipe, f"asset:{item.unit_id}", payload)
        if not pipe.execute()[0]:  # a Redis new to this partition: everything it holds
            again = self._client.pipeline(transaction=False)
            for (key, field), value in self._held.items():
                again.hset(key, field, value)
            again.set(self._marker, "1")
            again.execute()

    def close(self) -> None:
        self._client.close()


class RedisSink(DynamicSink[HotState]):
    def __init__(self, redis_url: str, reporter: Reporter) -> None:
        self._url = redis_url
        self._reporter = reporter

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Partition:
        client = redis.Redis.from_url(self._url, socket_timeout=30)
        try:
            seeded = flows_hashes(client)
        except redis.RedisError:  # not there yet: nothing to take over
            seeded = {}
        return _Partition(client, SinkGuard("redis", self._reporter, describe_json),
                          hot_state_marker(step_id, worker_index), seeded, worker_index == 0)


SEEDED_HASHES = ("alarms", "alerts", "episodes", "tickets", "dead-letters", "comms-state",
                 "comms-stats")
NOT_SEEDED = ("control_", "store_outage", "unwritable")  # written by others, or transient


def _not_seeded(kind: str, text: str) -> bool:
    """An alert (or an alert's alarm) of a kind the flows' hot-state outputs do not hold."""
    try:
        alert_kind = (Alert.model_validate_json(text).kind if kind == "alerts" else
                      BreachEvent.model_validate_json(text).rule_id.removeprefix(ALERT_RULE))
    except ValueError:
        return True
    return alert_kind.startswith(NOT_SEEDED)


def flows_hashes(client: redis.Redis) -> dict[tuple[str, str], str]:
    """The entries of the hashes the flows write that Redis holds now — but those the
    control loop writes into the same hashes (its alerts and their alarms) and the sinks'
    own outage alerts."""
    out: dict[tuple[str, str], str] = {}
    for kind in SEEDED_HASHES:
        for raw_key in client.scan_iter(f"{PREFIX}:{kind}:*", count=1000):
            key = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key)
            for field, value in client.hgetall(key).items():
                text = value.decode() if isinstance(value, bytes) else str(value)
                if kind in ("alarms", "alerts") and _not_seeded(kind, text):
                    continue
                out[(key, field.decode() if isinstance(field, bytes) else str(field))] = text
    return out
