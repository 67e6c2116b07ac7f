"""`bessmon tickets poll`: tickets kept in sync without webhooks, and tickets opened for long
unavailability episodes.

**Polling.** Every provider with a REST connection in the ticketing file (`base_url` and
`auth`, config.py) is searched every `poll_s` for tickets updated since its cursor
(`search_updated`: Jira JQL, the ServiceNow Table API, Zendesk's incremental export). Each
ticket that names an asset of the fleet is published to `bess.tickets.raw` keyed
`provider:ticket_id` — as the webhooks publish them, so the flows link them to episodes — and
a ticket the client cannot read (a status nobody mapped, a malformed field) goes to `bess.dlq`
(source `connectors.ticketing`, reason `unreadable_ticket`, `key` `provider:ticket_id`) once per
version. Tickets naming no asset of the fleet are skipped (counted in the log), as the webhook
refuses them. The cursor is the newest `updated_ms` seen; each search starts `OVERLAP_MS`
before it (vendors' clocks, times to the second or minute, search indexes that trail), and
the versions already published within that overlap are remembered (a digest per ticket), so
each change is published once. Everything a poll publishes is acknowledged by the broker
before the cursor moves: a crash or a broker outage repeats a search, it never skips one.
The first search of a provider reaches back `lookback` (default 24 h).

**Rate limits and failures.** A 429 (or a 503 with Retry-After) waits what the vendor says
(`Retry-After`, `X-RateLimit-Reset`, Zendesk's `ratelimit-reset`), an answer saying the
window is used up (`X-RateLimit-Remaining: 0`) delays the next search until the reset, and any
other failure backs off exponentially (10 s doubling to 10 min). Each provider runs in a
thread of its own: one vendor failing or hanging never holds up another.

**Auto-open.** The provider marked `create.auto_open` also reads the open episodes of every
site from Redis (`episodes_key`, kept by flows/episodes.py) and opens a ticket for each
episode of an asset of `create.levels` that has lasted `create.open_after_min` with no ticket
linked, through that provider: summary "<asset> <state> (<cause>) since <time> UTC", the lost
hours and a link to the asset's dashboard page (`<public url>#/asset/<id>`) in the
description. The opened ticket is published at once (so the flows link it before the next
poll), as a version stamped just before it was opened: the vendor's own version, found by the
next poll, replaces it.

**One ticket per episode, never two.** In the state file, before the ticket is opened, the
episode gets an intent: its marker (`bessmon-` and a digest of the episode id), which the
ticket carries where its vendor can search for it — a Jira label, the ServiceNow incident's
`correlation_id`, the Zendesk ticket's `external_id` (`find_by_marker`). Then the ticket is
opened, then its key recorded. An intent without a key (a crash, or an answer lost after the
vendor created the ticket) is resolved before anything else: the vendor is searched for the
marker, and a ticket found is recorded (and published) instead of opening another; only when
none is found `search_grace_s` after the intent (Jira's index trails a creation by seconds) is
it opened again, with the same marker. An episode with a key is never opened for again, and
a lock file keeps a second poller off the same state.

**State** (`<run dir>/tickets/poller.json`, replaced atomically: written to a temporary file,
synced, renamed): per provider the cursor, the versions published in the overlap and the dead
letters sent; per episode its intent and ticket. An unreadable state file stops the poller
rather than be taken for an empty one (which could open a ticket twice).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol, cast

import redis
from pydantic import ValidationError

from connectors.kafka import CheckedProducer, ensure_topics
from connectors.redis_store import episodes_key
from connectors.settings import Settings
from connectors.ticketing.config import (
    CreateOptions,
    Provider,
    ProviderConfig,
    TicketingConfig,
    TicketingConfigError,
    TicketingSettings,
)
from connectors.ticketing.jira import JiraClient
from connectors.ticketing.rest import Poll, TicketingRateLimited, VendorClient
from connectors.ticketing.servicenow import ServiceNowClient
from connectors.ticketing.zendesk import ZendeskClient
from contracts.events import (
    MIN_DEVICE_MS,
    TicketEvent,
    TicketRef,
    UnavailabilityEpisode,
    dead_letter,
)
from contracts.fleet import Fleet, load_fleet

log = logging.getLogger(__name__)

SOURCE = "connectors.ticketing"
UNREADABLE = "unreadable_ticket"
OVERLAP_MS = 5 * 60_000  # each search starts this long before the newest update seen
BACKOFF_FIRST_S = 10.0
BACKOFF_MAX_S = 600.0
SEARCH_GRACE_S = 120.0  # an intent younger than this is not opened again when not found
DEAD_KEEP_MS = 24 * 3_600_000  # a dead letter sent is remembered this long
EPISODE_KEEP_MS = 7 * 24 * 3_600_000  # a closed episode's ticket is remembered this long
INTENT_KEEP_MS = 24 * 3_600_000  # an intent of an episode no longer due is kept this long
PUBLISH_TIMEOUT_S = 15.0
STATE_VERSION = 1
LEVEL_ORDER = {"unit": 0, "inverter": 1, "block": 2}
KIND_WORDS = {"unit": "Battery unit", "inverter": "Inverter", "block": "DC block"}
CLIENTS: dict[Provider, type[VendorClient]] = {
    "jira": JiraClient, "servicenow": ServiceNowClient, "zendesk": ZendeskClient}


class PollerError(RuntimeError):
    """The poller cannot start: another one runs, the state file is unreadable, no provider
    can be polled."""


class TicketClient(Protocol):
    """What the poller needs of a vendor client (jira.py, servicenow.py, zendesk.py)."""

    pause_s: float

    def search_updated(self, since_ms: int) -> Poll: ...

    def find_by_marker(self, marker: str) -> Poll: ...

    def open_ticket(self, asset_id: str, summary: str, description: str,
                    priority: str | None = None, *, marker: str | None = None) -> TicketRef: ...

    def close(self) -> None: ...


def marker_of(episode_id: str) -> str:
    """The marker an auto-opened ticket carries, found again by `find_by_marker`."""
    return "bessmon-" + hashlib.sha256(episode_id.encode()).hexdigest()[:24]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _utc(ms: int) -> str:
    return f"{datetime.fromtimestamp(ms / 1000, UTC):%Y-%m-%d %H:%M}"


def backoff_s(failures: int) -> float:
    """The wait after `failures` failures in a row: 10 s doubling, at most 10 min."""
    return min(BACKOFF_FIRST_S * 2.0 ** max(0, failures - 1), BACKOFF_MAX_S)


# -- the state file -------------------------------------------------------------------------

@dataclass
class ProviderState:
    cursor_ms: int | None = None  # the newest updated_ms seen
    seen: dict[str, tuple[int, str]] | None = None  # ticket id → (updated_ms, digest)
    dead: dict[str, tuple[str, int]] | None = None  # ticket id → (payload digest, sent ms)

    def __post_init__(self) -> None:
        self.seen = self.seen or {}
        self.dead = self.dead or {}


@dataclass
class EpisodeTicket:
    """An episode's auto-opened ticket: an intent until `ticket_id` is known."""

    provider: str
    asset_id: str
    marker: str
    intent_ms: int
    ticket_id: str | None = None
    url: str | None = None


class PollerState:
    """`<run dir>/tickets/poller.json`, loaded once and saved whole, atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.providers: dict[str, ProviderState] = {}
        self.episodes: dict[str, EpisodeTicket] = {}
        if path.exists():
            self._load()

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if data.get("v") != STATE_VERSION:
                raise ValueError(f"version {data.get('v')!r}, expected {STATE_VERSION}")
            for name, p in data["providers"].items():
                self.providers[name] = ProviderState(
                    p["cursor_ms"], {k: (int(v[0]), str(v[1])) for k, v in p["seen"].items()},
                    {k: (str(v[0]), int(v[1])) for k, v in p["dead"].items()})
            for episode_id, e in data["episodes"].items():
                self.episodes[episode_id] = EpisodeTicket(**e)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise PollerError(f"{self.path}: the poller's state cannot be read ({exc}); "
                              "move it away to start over (tickets already opened may then "
                              "be opened again)") from None

    def provider(self, name: str) -> ProviderState:
        return self.providers.setdefault(name, ProviderState())

    def save(self) -> None:
        data = {"v": STATE_VERSION,
                "providers": {name: {"cursor_ms": p.cursor_ms, "seen": p.seen, "dead": p.dead}
                              for name, p in sorted(self.providers.items())},
                "episodes": {k: vars(e) for k, e in sorted(self.episodes.items())}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def _lock(path: Path) -> IO[str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a", encoding="utf-8")  # noqa: SIM115 - held while the poller runs
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise PollerError(f"another `bessmon tickets poll` is running ({path} is locked): "
                          "two would open the same tickets") from None
    return handle


# -- the poller -----------------------------------------------------------------------------

@dataclass
class _Runner:
    name: Provider
    config: ProviderConfig
    client: TicketClient
    next_due: float = 0.0
    failures: int = 0
    last_error: str | None = None


class TicketPoller:
    """Polls every configured provider; `run` (threads, until stopped) or `run_due` /
    `run_once` (one pass, in the caller's thread)."""

    def __init__(self, settings: Settings, config: TicketingConfig, fleet: Fleet, *,
                 base_url: str, environ: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.time,
                 search_grace_s: float = SEARCH_GRACE_S,
                 clients: Mapping[Provider, TicketClient] | None = None) -> None:
        self.settings = settings
        self.config = config
        self.fleet = fleet
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.clock = clock
        self.search_grace_s = search_grace_s
        self.opener = config.opener()
        self._lock_file = _lock(settings.run_dir / "tickets" / "poller.lock")
        self._state_lock = threading.Lock()
        self._publish_lock = threading.Lock()
        self.runners: dict[Provider, _Runner] = {}
        try:
            self.state = PollerState(settings.run_dir / "tickets" / "poller.json")
            for name in config.rest_providers():
                merged = config.provider(name)
                try:
                    client = (clients or {}).get(name) or cast(
                        TicketClient, CLIENTS[name](merged, environ=environ))
                except TicketingConfigError as exc:  # a credential unset: the others go on
                    log.error("%s: not polled: %s", name, exc)
                    continue
                self.runners[name] = _Runner(name, merged, client)
            if not self.runners:
                raise PollerError("no provider can be polled: none has a REST connection "
                                  "(base_url and auth) that could be set up")
            if self.opener is not None and self.opener not in self.runners:
                log.error("%s opens tickets (create.auto_open) but cannot be reached: no "
                          "tickets will be opened", self.opener)
                self.opener = None
            bootstrap = settings.require_kafka()
            ensure_topics(bootstrap, [settings.topic_tickets, settings.topic_dlq],
                          settings.topic_partitions)
            producer_config: dict[str, str | int | bool] = {
                "client.id": "bessmon-ticket-poller", "message.timeout.ms": 10_000}
            self.producer = CheckedProducer(bootstrap, **producer_config)
            self.redis: redis.Redis | None = (
                redis.Redis.from_url(settings.require_redis(), socket_timeout=10)
                if self.opener is not None else None)
        except BaseException:
            self._close_clients()
            self._lock_file.close()
            raise

    # -- running ----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Each provider in a thread of its own until `stop` is set."""
        threads = [threading.Thread(target=self._loop, args=(name, stop), daemon=True,
                                    name=f"tickets-{name}") for name in self.runners]
        for thread in threads:
            thread.start()
        log.info("polling %s every %s s%s", ", ".join(self.runners),
                 "/".join(f"{r.config.poll_s:g}" for r in self.runners.values()),
                 f"; {self.opener} opens tickets for episodes without one after "
                 f"{self.runners[self.opener].config.create.open_after_min:g} min"
                 if self.opener else "; auto-open off")
        while not stop.wait(0.5):
            pass
        for thread in threads:
            thread.join(timeout=PUBLISH_TIMEOUT_S + 20)

    def _loop(self, name: Provider, stop: threading.Event) -> None:
        runner = self.runners[name]
        while not stop.is_set():
            wait = runner.next_due - self.clock()
            if wait > 0:
                stop.wait(min(wait, 5.0))
                continue
            self.cycle(name)

    def run_due(self) -> None:
        """One pass over the providers whose next search is due, in this thread."""
        for name, runner in self.runners.items():
            if runner.next_due <= self.clock():
                self.cycle(name)

    def run_once(self) -> None:
        """One search (and auto-open) per provider, due or not."""
        for name in self.runners:
            self.cycle(name)

    def cycle(self, name: Provider) -> float:
        """One search of the provider, then (the opener) auto-open; never raises. Returns
        the seconds until its next cycle (also in `runners[name].next_due`)."""
        runner = self.runners[name]
        errors: list[str] = []
        waits: list[float] = []
        steps: list[Callable[[_Runner], None]] = [self._poll]
        if name == self.opener:
            steps.append(self._auto_open)
        for step in steps:
            try:
                step(runner)
            except TicketingRateLimited as exc:
                errors.append(str(exc))
                waits.append(exc.retry_after_s if exc.retry_after_s is not None
                             else backoff_s(runner.failures + 1))
                log.warning("%s: %s", name, exc)
                break  # the vendor asked for quiet: no further request this cycle
            except Exception as exc:  # one provider's failure stops no other
                errors.append(f"{type(exc).__name__}: {exc}")
                if isinstance(exc, (TicketingConfigError, ValidationError, KeyError,
                                    AttributeError, TypeError, AssertionError)):
                    log.exception("%s: %s failed", name, step.__name__.strip("_"))
                else:
                    log.error("%s: %s failed: %s: %s", name, step.__name__.strip("_"),
                              type(exc).__name__, exc)
        if errors:
            runner.failures += 1
            runner.last_error = errors[0]
            delay = max(waits) if waits else backoff_s(runner.failures)
            log.info("%s: next attempt in %.0f s (failure %d in a row)", name, delay,
                     runner.failures)
        else:
            if runner.failures:
                log.info("%s: working again after %d failures", name, runner.failures)
            runner.failures = 0
            runner.last_error = None
            delay = max(runner.config.poll_s, runner.client.pause_s)
        runner.next_due = self.clock() + delay
        return delay

    # -- polling ----------------------------------------------------------------------------

    def _poll(self, runner: _Runner) -> None:
        name = runner.name
        now_ms = int(self.clock() * 1000)
        with self._state_lock:
            cursor = self.state.provider(name).cursor_ms
        since = (cursor - OVERLAP_MS if cursor is not None
                 else now_ms - int(runner.config.lookback * 1000))
        poll = runner.client.search_updated(max(since, MIN_DEVICE_MS))
        with self._state_lock:
            state = self.state.provider(name)
            seen, dead = dict(state.seen or {}), dict(state.dead or {})
        newest = cursor
        fresh: list[tuple[TicketEvent, str]] = []
        skipped: list[str] = []
        for event in poll.events:
            newest = event.updated_ms if newest is None else max(newest, event.updated_ms)
            if event.asset_id is None or event.asset_id not in self.fleet.assets:
                skipped.append(event.ticket_id)
                continue
            digest = _digest(event.model_dump_json())
            known = seen.get(event.ticket_id)
            if known is not None and known[1] == digest:
                continue
            fresh.append((event, digest))
        letters: list[tuple[str, str, str, Any]] = []  # ticket id, reason, digest, payload
        for rejected in poll.rejected:
            payload = json.dumps(rejected.payload, sort_keys=True, default=str)
            digest = _digest(payload)
            if dead.get(rejected.ticket_id, ("", 0))[0] == digest:
                continue
            letters.append((rejected.ticket_id, rejected.reason, digest, payload))
        self._publish([(f"{name}:{e.ticket_id}", e) for e, _ in fresh], [
            (f"{name}:{ticket_id}", reason, payload)
            for ticket_id, reason, _, payload in letters], now_ms)
        with self._state_lock:
            state = self.state.provider(name)
            assert state.seen is not None and state.dead is not None
            for event, digest in fresh:
                state.seen[event.ticket_id] = (event.updated_ms, digest)
            for ticket_id, _, digest, _ in letters:
                state.dead[ticket_id] = (digest, now_ms)
            changed = bool(fresh or letters) or newest != state.cursor_ms
            state.cursor_ms = newest
            if newest is not None:  # what the next search cannot find again is forgotten
                for ticket_id, (updated, _) in list(state.seen.items()):
                    if updated < newest - OVERLAP_MS:
                        del state.seen[ticket_id]
                        changed = True
            for ticket_id, (_, sent) in list(state.dead.items()):
                if sent < now_ms - DEAD_KEEP_MS:
                    del state.dead[ticket_id]
                    changed = True
            if changed:
                self.state.save()
        if fresh or letters or skipped:
            log.info("%s: %d tickets published, %d unreadable (dead letters), %d found again "
                     "unchanged, %d naming no asset of the fleet skipped%s", name, len(fresh),
                     len(letters), len(poll.events) - len(fresh) - len(skipped), len(skipped),
                     f" ({', '.join(skipped[:5])}{'…' if len(skipped) > 5 else ''})"
                     if skipped else "")
        else:
            log.debug("%s: nothing new since %s UTC", name, _utc(max(since, MIN_DEVICE_MS)))

    def _publish(self, tickets: list[tuple[str, TicketEvent]],
                 letters: list[tuple[str, str, str]], now_ms: int) -> None:
        """Produce and wait for every acknowledgement (DeliveryFailed otherwise)."""
        if not tickets and not letters:
            return
        with self._publish_lock:
            for key, event in tickets:
                self.producer.produce(self.settings.topic_tickets, key,
                                      event.model_dump_json().encode())
            for key, reason, payload in letters:
                letter = dead_letter(source=SOURCE, reason=UNREADABLE, detail=f"{key}: {reason}",
                                     ts_ms=now_ms, payload=payload, key=key)
                self.producer.produce(self.settings.topic_dlq, SOURCE,
                                      letter.model_dump_json().encode())
            self.producer.flush(PUBLISH_TIMEOUT_S)

    # -- auto-open --------------------------------------------------------------------------

    def open_episodes(self) -> dict[str, UnavailabilityEpisode]:
        """Every site's open episodes as the flows keep them in Redis."""
        assert self.redis is not None
        pipe = self.redis.pipeline(transaction=False)
        for site in self.fleet.sites:
            pipe.hgetall(episodes_key(site.id))
        out: dict[str, UnavailabilityEpisode] = {}
        for answer in pipe.execute():
            for field, raw in answer.items():
                try:
                    episode = UnavailabilityEpisode.model_validate_json(raw)
                except ValidationError as exc:
                    log.warning("episode %r in Redis cannot be read: %s", field,
                                exc.errors()[0]["msg"])
                    continue
                if episode.end_ms is None:
                    out[episode.episode_id] = episode
        return out

    def _auto_open(self, runner: _Runner) -> None:
        create = runner.config.create
        now_ms = int(self.clock() * 1000)
        episodes = self.open_episodes()
        with self._state_lock:
            records = dict(self.state.episodes)
        for episode_id, record in records.items():
            if record.ticket_id is None and record.provider == runner.name:
                self._resolve_intent(runner, episode_id, record, episodes.get(episode_id),
                                     now_ms)
        self._forget_old(episodes, now_ms)
        with self._state_lock:
            records = dict(self.state.episodes)
        covered = {r.asset_id for r in records.values()}
        due = sorted((e for e in episodes.values()
                      if self._due(e, create, now_ms) and e.episode_id not in records),
                     key=lambda e: (LEVEL_ORDER[self.fleet.assets[e.asset_id].kind],
                                    e.start_ms, e.asset_id))
        for episode in due:
            ancestors = self._ancestors(episode.asset_id)
            if covered.intersection(ancestors):
                log.debug("episode %s: a ticket of ours covers %s already", episode.episode_id,
                          ", ".join(sorted(covered.intersection(ancestors))))
                continue
            record = EpisodeTicket(runner.name, episode.asset_id, marker_of(episode.episode_id),
                                   now_ms)
            with self._state_lock:
                self.state.episodes[episode.episode_id] = record
                self.state.save()  # the intent is on disk before the vendor hears of it
            covered.add(episode.asset_id)
            self._open(runner, episode, record)

    def _due(self, episode: UnavailabilityEpisode, create: CreateOptions, now_ms: int) -> bool:
        """Open, of an asset of `levels`, not of a skipped cause, with no ticket linked, for
        `open_after_min` at least."""
        asset = self.fleet.assets.get(episode.asset_id)
        return (asset is not None and asset.kind in create.levels and episode.end_ms is None
                and episode.cause not in create.skip_causes and not episode.tickets
                and now_ms - episode.start_ms >= create.open_after_min * 60_000)

    def _ancestors(self, asset_id: str) -> set[str]:
        out: set[str] = set()
        parent = self.fleet.assets[asset_id].parent_id
        while parent is not None:
            out.add(parent)
            parent = self.fleet.assets[parent].parent_id
        return out

    def _resolve_intent(self, runner: _Runner, episode_id: str, record: EpisodeTicket,
                        episode: UnavailabilityEpisode | None, now_ms: int) -> None:
        """An intent without a ticket: the ticket found by its marker, else opened again
        when the episode is still due and the vendor had time to index it."""
        found = runner.client.find_by_marker(record.marker)
        ids = [e.ticket_id for e in found.events] + [r.ticket_id for r in found.rejected]
        if ids:
            url = found.events[0].url if found.events else None
            log.info("episode %s: its ticket %s:%s was opened before (found by marker %s)",
                     episode_id, runner.name, ids[0], record.marker)
            self._record_opened(episode_id, ids[0], url)
            if found.events:
                self._publish_quietly(found.events[0], now_ms)
            return
        create = runner.config.create
        if episode is None or not self._due(episode, create, now_ms):
            if now_ms - record.intent_ms > INTENT_KEEP_MS:
                with self._state_lock:
                    self.state.episodes.pop(episode_id, None)
                    self.state.save()
            return
        if now_ms - record.intent_ms < self.search_grace_s * 1000:
            log.info("episode %s: no ticket with marker %s yet; searching again before "
                     "opening one", episode_id, record.marker)
            return
        log.warning("episode %s: its ticket was not opened (no ticket carries marker %s): "
                    "opening it now", episode_id, record.marker)
        self._open(runner, episode, record)

    def _open(self, runner: _Runner, episode: UnavailabilityEpisode,
              record: EpisodeTicket) -> None:
        stamped_ms = int(self.clock()) * 1000  # before the vendor's own time, to the second
        summary, description = self.describe(episode)
        ref = runner.client.open_ticket(episode.asset_id, summary, description,
                                        runner.config.create.auto_priority,
                                        marker=record.marker)
        self._record_opened(episode.episode_id, ref.ticket_id, ref.url)
        log.info("episode %s: opened %s ticket %s (%s)", episode.episode_id, runner.name,
                 ref.ticket_id, summary)
        self._publish_quietly(TicketEvent(
            provider=ref.provider, ticket_id=ref.ticket_id, asset_id=episode.asset_id,
            status=ref.status, opened_ms=stamped_ms, updated_ms=stamped_ms,
            summary=ref.summary[:10_000], url=ref.url), stamped_ms)

    def _record_opened(self, episode_id: str, ticket_id: str, url: str | None) -> None:
        with self._state_lock:
            record = self.state.episodes[episode_id]
            record.ticket_id, record.url = ticket_id, url
            self.state.save()

    def _publish_quietly(self, event: TicketEvent, now_ms: int) -> None:
        """Publish an opened ticket now; when that fails the next poll publishes it."""
        try:
            self._publish([(f"{event.provider}:{event.ticket_id}", event)], [], now_ms)
        except Exception as exc:  # the poll brings it later
            log.warning("ticket %s:%s not published now (%s): the next poll brings it",
                        event.provider, event.ticket_id, exc)

    def _forget_old(self, episodes: Mapping[str, UnavailabilityEpisode], now_ms: int) -> None:
        with self._state_lock:
            old = [k for k, r in self.state.episodes.items()
                   if r.ticket_id is not None and k not in episodes
                   and r.intent_ms < now_ms - EPISODE_KEEP_MS]
            for key in old:
                del self.state.episodes[key]
            if old:
                self.state.save()

    def describe(self, episode: UnavailabilityEpisode) -> tuple[str, str]:
        """The summary and description of an episode's ticket."""
        cause = episode.cause.replace("_", " ") if episode.cause else "cause unknown"
        since = _utc(episode.start_ms)
        summary = f"{episode.asset_id} {episode.state} ({cause}) since {since} UTC"
        kind = self.fleet.assets[episode.asset_id].kind
        link = f"{self.base_url}#/asset/{episode.asset_id}"
        description = (
            f"{KIND_WORDS.get(kind, kind)} {episode.asset_id} (site {episode.site_id}) has "
            f"been {episode.state} ({cause}) since {since} UTC with no ticket: "
            f"{episode.lost_hours:.2f} lost hours ({episode.lost_mwh:.2f} MWh) so far."
            f"\n\nDashboard: {link}"
            f"\n\nOpened by bessmon for unavailability episode {episode.episode_id} "
            f"(marker {marker_of(episode.episode_id)}).")
        return summary, description

    # -- closing ----------------------------------------------------------------------------

    def _close_clients(self) -> None:
        for runner in getattr(self, "runners", {}).values():
            runner.client.close()

    def close(self) -> None:
        """Close the clients, flush the producer, release the lock."""
        self._close_clients()
        try:
            self.producer.flush(PUBLISH_TIMEOUT_S)
        except Exception as exc:  # closing: say it, go on
            log.warning("closing: %s", exc)
        self.producer.close()
        if self.redis is not None:
            self.redis.close()
        self._lock_file.close()


def run_poller(settings: Settings, *, base_url: str | None = None, once: bool = False) -> int:
    """`bessmon tickets poll`: until SIGINT / SIGTERM (or one pass with `once`)."""
    ticketing = TicketingSettings()
    config = ticketing.config
    if not config.rest_providers():
        log.error("no provider has a REST connection (base_url and auth) in %s: nothing to "
                  "poll", ticketing.ticketing_file or "BESSMON_TICKETING_FILE (unset)")
        return 2
    base = base_url or ticketing.public_url or \
        f"http://{settings.api_host}:{settings.api_port}/"
    try:
        poller = TicketPoller(settings, config, load_fleet(settings.fleet_file), base_url=base)
    except PollerError as exc:
        log.error("%s", exc)
        return 2
    try:
        if once:
            poller.run_once()
            return 0 if all(r.failures == 0 for r in poller.runners.values()) else 1
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        poller.run(stop)
        return 0
    finally:
        poller.close()
