"""Live channels in Redis, with sequence numbers so that a client can resume.

Every message of a live channel (`fleet`, `site:<id>`, `asset:<unit id>`, `alarms`,
`alerts`) is published by one Lua script, atomically: the channel's sequence number goes up
by one (`bessmon:seq:<channel>`), the message is appended to the channel's short log (a
stream whose entry ids are the sequence numbers, `bessmon:log:<channel>`, about
`log_length(channel)` entries kept) and published on `bessmon:live:<channel>` as `<seq> <payload>`.
Pub/sub fans messages out to every API process; the log lets any of them replay what a
reconnecting client missed. Writers: the flows (redis_sink.py) and the API (alarm handling)."""

from __future__ import annotations

from typing import Any

import orjson
import redis
import redis.asyncio as aioredis

from connectors.redis_store import PREFIX, site_key
from contracts.live import fleet_site

LIVE_PATTERN = f"{PREFIX}:live:*"
LOG_LENGTH = 2_000  # fleet, alarms, alerts: events a client must not miss (fleet: every site)
# A site's and a unit's channels carry their whole state once a second: a client away longer
# than this many messages gets a snapshot instead, which is all it needs. Keeping 2,000 of
# them cost 11 GB of Redis at fleet-30 (1,200 units × 2,000 × 4.5 kB); 60 — trimmed by
# Redis in whole nodes of 100 entries, so 60 to 160 — cost 0.3–0.9 GB.
STATE_LOG_LENGTH = 60


def log_length(channel: str) -> int:
    """How many messages of `channel` its log keeps for resuming clients (about)."""
    return STATE_LOG_LENGTH if channel.startswith(("site:", "asset:")) else LOG_LENGTH

_PUBLISH = """
local seq = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], seq .. '-0', 'd', ARGV[1])
redis.call('PUBLISH', KEYS[3], seq .. ' ' .. ARGV[1])
return seq
"""


def seq_key(channel: str) -> str:
    return f"{PREFIX}:seq:{channel}"


def log_key(channel: str) -> str:
    return f"{PREFIX}:log:{channel}"


def live_channel(channel: str) -> str:
    return f"{PREFIX}:live:{channel}"


def channel_of(redis_channel: str) -> str:
    return redis_channel.removeprefix(f"{PREFIX}:live:")


def publish(client: redis.client.Pipeline | redis.Redis | aioredis.Redis
            | aioredis.client.Pipeline, channel: str, payload: str | bytes,
            length: int | None = None) -> Any:
    """Queue (pipeline) or run the publish of one message; works on sync and async clients
    (await the result of an async client that is not a pipeline)."""
    return client.eval(_PUBLISH, 3, seq_key(channel), log_key(channel), live_channel(channel),
                       payload, length or log_length(channel))


def publish_site(client: redis.client.Pipeline | redis.Redis, site_id: str,
                 payload: str) -> None:
    """A site's snapshot (SiteAvailability's JSON) into the hot state and onto its channels:
    whole on `site:<id>`, as the fleet channel carries it (contracts/live.py FleetSite) on
    `fleet`."""
    client.set(site_key(site_id), payload)
    publish(client, f"site:{site_id}", payload)
    publish(client, "fleet", orjson.dumps(fleet_site(orjson.loads(payload))))


def split(message: bytes) -> tuple[int, bytes]:
    """A pub/sub message's `<seq> <payload>`."""
    seq, _, payload = message.partition(b" ")
    return int(seq), payload


async def current_seq(client: aioredis.Redis, channel: str) -> int:
    value = await client.get(seq_key(channel))
    return int(value) if value else 0


async def since(client: aioredis.Redis, channel: str, after_seq: int,
                count: int = LOG_LENGTH) -> list[tuple[int, bytes]] | None:
    """The channel's messages after `after_seq`, oldest first; None when the log no longer
    reaches back that far (or the sequence was reset): the client needs a snapshot."""
    last = await current_seq(client, channel)
    if after_seq > last:
        return None  # from before a reset of Redis
    if after_seq == last:
        return []
    entries: list[tuple[bytes, dict[bytes, bytes]]] = await client.xrange(
        log_key(channel), min=f"({after_seq}-0", max="+", count=count)  # type: ignore[assignment]
    out = [(int(entry_id.split(b"-")[0]), fields[b"d"]) for entry_id, fields in entries]
    if not out or out[0][0] != after_seq + 1 or out[-1][0] != last:
        return None
    return out
