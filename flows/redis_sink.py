"""Bytewax sink writing site snapshots to Redis: latest value plus a pub/sub message, in one
pipeline per batch."""

from __future__ import annotations

import redis
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from connectors.redis_store import site_channel, site_key
from contracts.events import SiteAvailability


class _Partition(StatelessSinkPartition[SiteAvailability]):
    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    def write_batch(self, items: list[SiteAvailability]) -> None:
        pipe = self._client.pipeline(transaction=False)
        for snap in items:
            payload = snap.model_dump_json()
            pipe.set(site_key(snap.site_id), payload)
            pipe.publish(site_channel(snap.site_id), payload)
        pipe.execute()

    def close(self) -> None:
        self._client.close()


class RedisSnapshotSink(DynamicSink[SiteAvailability]):
    def __init__(self, redis_url: str) -> None:
        self._url = redis_url

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Partition:
        return _Partition(redis.Redis.from_url(self._url))
