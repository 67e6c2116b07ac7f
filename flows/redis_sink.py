"""Bytewax sink for the hot state in Redis: each site's latest snapshot (plus a pub/sub
message for the API's live feeds) and each unit's newest tag values, one pipeline per batch.
Writes are idempotent (SET), so an epoch replayed after a recovery leaves nothing twice."""

from __future__ import annotations

import json

import redis
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from connectors.redis_store import latest_key, site_channel, site_key
from contracts.events import SiteAvailability
from flows.site_state import LatestValues

HotState = SiteAvailability | LatestValues


class _Partition(StatelessSinkPartition[HotState]):
    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    def write_batch(self, items: list[HotState]) -> None:
        pipe = self._client.pipeline(transaction=False)
        for item in items:
            if isinstance(item, SiteAvailability):
                payload = item.model_dump_json()
                pipe.set(site_key(item.site_id), payload)
                pipe.publish(site_channel(item.site_id), payload)
            else:
                pipe.set(latest_key(item.unit_id), json.dumps(
                    {"unit_id": item.unit_id, "site_id": item.site_id, "ts_ms": item.ts_ms,
                     "assets": {asset: tags for asset, tags in item.readings}}))
        pipe.execute()

    def close(self) -> None:
        self._client.close()


class RedisSink(DynamicSink[HotState]):
    def __init__(self, redis_url: str) -> None:
        self._url = redis_url

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Partition:
        return _Partition(redis.Redis.from_url(self._url))
