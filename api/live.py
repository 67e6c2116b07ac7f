"""Live fan-out of one API process: a single Redis pub/sub subscription to every live
channel (connectors/live_log.py), delivered to each WebSocket client subscribed to it —
filtered by the client's scope, without contract money for roles that may not see it, and
coalesced for a client that falls far behind (it gets the newest state of each thing; it
never stalls the others).

Channels a client can subscribe to, and the key updates are coalesced by:

    fleet          every site snapshot the client may see      by site
    site:<id>      one site's snapshots                         (one key)
    asset:<id>     newest values and status of an asset         by asset
                   (its battery unit's channel, filtered)
    alarms         breaches raised / cleared, and handling      by breach id
    alerts         early warnings raised / cleared              by alert id

A client that asked for batches gets its updates once per `BATCH_TICK_S`, all that came in
the tick in one message (contracts/live.py `BatchFrame`); any other client gets each update
as soon as its send task runs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict, defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import Counter

from api.auth.principal import ANY, Principal
from api.views import redact
from connectors import metrics
from connectors.live_log import LIVE_PATTERN, channel_of, split
from contracts.fleet import Fleet
from contracts.live import (
    ALARM_MESSAGE,
    BreachMessage,
    HandlingMessage,
    UnitLatest,
    alarm_key,
    update_frame,
)

log = logging.getLogger(__name__)
COALESCE_AT = 1_000  # frames waiting for one client before its updates are coalesced
OUTBOX_LIMIT = 5_000  # distinct things waiting for one client; beyond: disconnected
BATCH_TICK_S = 0.1  # a batching client's updates go out together this often


class Message:
    """One published message, parsed at most once however many clients get it."""

    __slots__ = ("_alarm", "_data", "_frames", "_latest", "_redacted", "_site_id", "channel",
                 "payload", "seq")

    def __init__(self, channel: str, seq: int, payload: bytes) -> None:
        self.channel = channel
        self.seq = seq
        self.payload = payload
        self._data: Any = None
        self._alarm: BreachMessage | HandlingMessage | None = None
        self._latest: UnitLatest | None = None
        self._redacted: str | None = None
        self._frames: dict[tuple[str, bool], str] = {}  # one frame text for all alike
        self._site_id: str | bool | None = False  # False: not looked up yet

    @property
    def data(self) -> Any:
        if self._data is None:
            self._data = json.loads(self.payload)
        return self._data

    def alarm(self) -> BreachMessage | HandlingMessage:
        """The message of the `alarms` channel (contracts/live.py)."""
        if self._alarm is None:
            self._alarm = ALARM_MESSAGE.validate_json(self.payload)
        return self._alarm

    def latest(self) -> UnitLatest:
        """The message of an `asset:<unit>` channel (contracts/live.py)."""
        if self._latest is None:
            self._latest = UnitLatest.model_validate_json(self.payload)
        return self._latest

    def site_id(self) -> str | None:
        if self._site_id is False:
            if self.channel == "alarms":
                self._site_id = alarm_key(self.alarm())[0]
            elif self.channel.startswith("asset:"):
                self._site_id = self.latest().site_id
            else:
                self._site_id = self.data.get("site_id")
        return self._site_id  # type: ignore[return-value]

    def frame(self, name: str, money: bool) -> str:
        """The update frame for a subscription `name`: built once per message, shared by
        every client that gets the same (a thousand fleet clients, one string)."""
        key = (name, money)
        frame = self._frames.get(key)
        if frame is None:
            frame = self._frames[key] = update_frame(name, self.seq, self.text(money))
        return frame

    def text(self, money: bool) -> str:
        snapshots = self.channel == "fleet" or self.channel.startswith("site:")
        if money or not snapshots:
            return self.payload.decode()
        if self._redacted is None:
            self._redacted = json.dumps(redact(self.data), separators=(",", ":"))
        return self._redacted


@dataclass(eq=False)  # identity: held in sets
class Subscription:
    """What a client asked for (`name`) and where it comes from (`source`)."""

    name: str
    source: str
    asset_id: str | None = None  # asset:<id>: only this asset's part of its unit's message
    last_seq: int = 0
    starting: bool = True  # snapshot or replay under way: live messages are held
    held: list[Message] = field(default_factory=list)
    updates: Counter = field(init=False, repr=False)  # bessmon_ws_updates_total, its kind's
    uncounted: int = 0  # updates queued since the counter was last told (told in bulk)

    def __post_init__(self) -> None:
        self.updates = metrics.WS_UPDATES.labels(self.name.partition(":")[0])


class Subscriber:
    """One client: its subscriptions and its outbox of frames to send, in order. A client
    that lets more than `COALESCE_AT` frames pile up (slow, or replaying a long absence) has
    them coalesced: only the newest frame of each thing (`slot`) stays, in the order of the
    newest; one with more than `OUTBOX_LIMIT` things waiting even so is dropped."""

    def __init__(self, principal: Principal, fleet: Fleet, money: bool, *,
                 batch: bool = False) -> None:
        self.principal = principal
        self.money = money
        self.batch = batch
        self.sites = principal.site_ids(fleet)
        self.everything = ANY in principal.scope.customers and ANY in principal.scope.regions
        self.subscriptions: dict[str, Subscription] = {}
        self.outbox: deque[tuple[tuple[str, str], str]] = deque()
        self.wake = asyncio.Event()
        self.due: set[Subscriber] | None = None  # the hub's batching clients with updates
        self.overflowed = False

    def sees(self, site_id: str | None) -> bool:
        return site_id in self.sites if site_id is not None else self.everything

    def offer(self, sub: Subscription, msg: Message) -> None:
        """A live message: held while the subscription's snapshot or replay is under way."""
        if sub.starting:
            sub.held.append(msg)
        else:
            self.deliver(sub, msg)

    def deliver(self, sub: Subscription, msg: Message) -> None:
        """Into the outbox, unless the client has it already or may not see it."""
        if msg.seq <= sub.last_seq:
            return  # in the snapshot or replay already
        sub.last_seq = msg.seq
        if not self.sees(msg.site_id()):
            return
        key, data = self._shape(sub, msg)
        if data is None:
            return
        if sub.asset_id is None:
            frame = msg.frame(sub.name, self.money)
        else:  # an asset's part of its unit's message: this client's own
            frame = update_frame(sub.name, msg.seq, data)
        self.outbox.append(((sub.name, key), frame))
        sub.uncounted += 1
        if len(self.outbox) > COALESCE_AT:
            self._coalesce()
        if self.due is None or not self.batch:
            self.wake.set()
        else:
            self.due.add(self)  # woken at the hub's next tick

    def _coalesce(self) -> None:
        newest: OrderedDict[tuple[str, str], str] = OrderedDict()
        for slot, frame in self.outbox:
            newest.pop(slot, None)
            newest[slot] = frame
        self.outbox = deque(newest.items())
        if len(self.outbox) > OUTBOX_LIMIT:
            self.overflowed = True

    def _shape(self, sub: Subscription, msg: Message) -> tuple[str, str | None]:
        if sub.source == "fleet":
            return str(msg.data["site_id"]), msg.text(self.money)
        if sub.source.startswith("site:"):
            return "", msg.text(self.money)
        if sub.source.startswith("asset:"):
            assert sub.asset_id is not None
            part = msg.latest().part(sub.asset_id)
            return sub.asset_id, None if part is None else part.model_dump_json()
        if sub.source == "alarms":
            return alarm_key(msg.alarm())[1], msg.text(self.money)
        return str(msg.data.get("alert_id", "")), msg.text(self.money)

    def start_live(self, sub: Subscription) -> None:
        """The snapshot or replay is sent: deliver what came meanwhile, then live."""
        sub.starting = False
        held, sub.held = sub.held, []
        for msg in held:
            self.deliver(sub, msg)

    def take(self) -> list[str]:
        frames = [frame for _, frame in self.outbox]
        self.outbox.clear()
        self.wake.clear()
        for sub in self.subscriptions.values():
            if sub.uncounted:
                sub.updates.inc(sub.uncounted)
                sub.uncounted = 0
        return frames


class LiveHub:
    def __init__(self, client: aioredis.Redis, fleet: Fleet) -> None:
        self._client = client
        self.fleet = fleet
        self._by_source: dict[str, set[tuple[Subscriber, Subscription]]] = defaultdict(set)
        self._due: set[Subscriber] = set()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        pubsub = self._client.pubsub()
        await pubsub.psubscribe(LIVE_PATTERN)
        self._tasks = [asyncio.create_task(self._pump(pubsub)), asyncio.create_task(self._tick())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _tick(self) -> None:
        """Wake the batching clients with updates waiting, every `BATCH_TICK_S`."""
        while True:
            await asyncio.sleep(BATCH_TICK_S)
            due = list(self._due)
            self._due.clear()
            for subscriber in due:
                subscriber.wake.set()

    async def _pump(self, pubsub: aioredis.client.PubSub) -> None:
        try:
            while True:
                try:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                except aioredis.ConnectionError:
                    log.warning("Redis pub/sub connection lost; retrying")
                    await asyncio.sleep(1.0)
                    with contextlib.suppress(aioredis.ConnectionError):
                        await pubsub.psubscribe(LIVE_PATTERN)
                    continue
                if msg is None:
                    continue
                raw_channel = msg["channel"]
                channel = channel_of(raw_channel.decode() if isinstance(raw_channel, bytes)
                                     else raw_channel)
                try:
                    seq, payload = split(msg["data"])
                except ValueError:
                    log.error("live message on %s without a sequence number", channel)
                    continue
                self.dispatch(Message(channel, seq, payload))
        finally:
            await pubsub.aclose()

    def dispatch(self, msg: Message) -> None:
        for subscriber, sub in list(self._by_source.get(msg.channel, ())):
            try:
                subscriber.offer(sub, msg)
            except (KeyError, TypeError, ValueError):
                log.exception("cannot deliver a message of %s", msg.channel)

    def subscribe(self, subscriber: Subscriber, sub: Subscription) -> None:
        subscriber.due = self._due
        self.unsubscribe(subscriber, sub.name)
        subscriber.subscriptions[sub.name] = sub
        self._by_source[sub.source].add((subscriber, sub))

    def unsubscribe(self, subscriber: Subscriber, name: str | None = None) -> None:
        names = [name] if name else list(subscriber.subscriptions)
        for n in names:
            sub = subscriber.subscriptions.pop(n, None)
            if sub is not None:
                self._by_source[sub.source].discard((subscriber, sub))
