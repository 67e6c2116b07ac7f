"""Live fan-out: one Redis pub/sub subscription per API process, delivered to every
WebSocket client subscribed to the channel (`fleet` carries every site, `site:<id>` one)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict

import redis.asyncio as aioredis

from connectors.redis_store import SITE_CHANNEL_PATTERN, site_id_of_channel

log = logging.getLogger(__name__)
QUEUE_LIMIT = 256


class Subscriber:
    """One client's outbox. A client too slow to drain it is dropped, never waited for."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(QUEUE_LIMIT)
        self.channels: set[str] = set()
        self.overflowed = asyncio.Event()

    def offer(self, channel: str, payload: bytes) -> None:
        try:
            self.queue.put_nowait((channel, payload))
        except asyncio.QueueFull:
            self.overflowed.set()


class LiveHub:
    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._by_channel: dict[str, set[Subscriber]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        pubsub = self._client.pubsub()
        await pubsub.psubscribe(SITE_CHANNEL_PATTERN)
        self._task = asyncio.create_task(self._pump(pubsub))

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _pump(self, pubsub: aioredis.client.PubSub) -> None:
        try:
            while True:
                try:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                except aioredis.ConnectionError:
                    log.warning("Redis pub/sub connection lost; retrying")
                    await asyncio.sleep(1.0)
                    with contextlib.suppress(aioredis.ConnectionError):
                        await pubsub.psubscribe(SITE_CHANNEL_PATTERN)
                    continue
                if msg is None:
                    continue
                channel = msg["channel"]
                site_id = site_id_of_channel(channel.decode() if isinstance(channel, bytes)
                                             else channel)
                self.publish(f"site:{site_id}", msg["data"])
                self.publish("fleet", msg["data"])
        finally:
            await pubsub.aclose()

    def publish(self, channel: str, payload: bytes) -> None:
        for subscriber in list(self._by_channel.get(channel, ())):
            subscriber.offer(channel, payload)

    def subscribe(self, subscriber: Subscriber, channel: str) -> None:
        subscriber.channels.add(channel)
        self._by_channel[channel].add(subscriber)

    def unsubscribe(self, subscriber: Subscriber, channel: str | None = None) -> None:
        for name in [channel] if channel else list(subscriber.channels):
            subscriber.channels.discard(name)
            self._by_channel.get(name, set()).discard(subscriber)
