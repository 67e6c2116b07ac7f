"""`bessmon notify run`: alarms and alerts to people. Reads `bess.breaches` (the alarms) and
`bess.alerts` (early warnings, data quality, control actions) from their end, turns each
transition into a `NotifyEvent` (the site's customer and region from the fleet, a link to
its dashboard page), routes it through the rules (`BESSMON_NOTIFY_RULES`,
contracts/notify.py), throttles it (digests, flapping), watches unacknowledged critical
alarms for escalation (an acknowledgement is read from the API's alarm handling in Redis),
and puts every message into the persistent outbox, which the dispatcher sends
(connectors/notify/outbox.py, dispatcher.py): nothing is lost when this process dies, and
a message is never sent twice for one transition and recipient (the outbox's id).

Users are the API's users file (`<run dir>/users.yaml`): their role, scope and e-mail
address (the rules file's `preferences` may give another). Each user's own preferences
(`<run dir>/notify-preferences.yaml`, saved through the API) replace the rules file's for
that user, and are taken again whenever the file changes. A record that does not validate
goes to the dead-letter topic with its reason."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import redis
import yaml
from confluent_kafka import Consumer, Message, TopicPartition
from pydantic import ValidationError

from connectors import metrics
from connectors.ack_secret import ack_secret
from connectors.kafka import CheckedProducer, ensure_topics
from connectors.notify.dispatcher import Dispatcher, senders_config
from connectors.notify.outbox import NewMessage, Outbox
from connectors.redis_store import alarm_handling_key
from connectors.settings import Settings
from contracts.ack_links import ack_url
from contracts.alarm_sources import alert_alarm
from contracts.alarms import AlarmHandling
from contracts.errors import InvalidInput
from contracts.events import SEVERITY_RANK, Alert, BreachEvent, dead_letter
from contracts.fleet import Fleet, load_fleet
from contracts.monitoring import AlarmsConfig, load_monitoring
from contracts.notify import (
    Escalation,
    NotifyConfig,
    NotifyEvent,
    Outgoing,
    Preferences,
    Throttle,
    UserInfo,
    deliveries,
    load_notify,
    load_preferences,
    matching_rules,
    merged,
    route,
)

log = logging.getLogger(__name__)
SOURCE = "notify"
GAUGES_S = 5.0  # the outbox depths and consumer lag (metrics) this often
CONTROL_KINDS = frozenset({"control_action", "control_command_failed"})


def read_users(path: Path, config: NotifyConfig) -> dict[str, UserInfo]:
    """The users of the API's users file as routing needs them (the API validates the file;
    an entry this cannot read is left out with a warning). E-mail: `preferences.<user>` of
    `config` (give it the merged one: the user's own address, else the rules file's), else
    the users file's."""
    if not path.exists():
        return {}
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    out: dict[str, UserInfo] = {}
    for entry in data.get("users", []) if isinstance(data, dict) else []:
        try:
            name = str(entry["username"])
            prefs = config.preferences.get(name)
            email = (prefs.email if prefs else None) or entry.get("email")
            out[name] = UserInfo(name, str(email) if email else None, str(entry["role"]),
                                 tuple(map(str, entry["customers"])),
                                 tuple(map(str, entry["regions"])),
                                 bool(entry.get("disabled", False)))
        except (KeyError, TypeError):
            log.warning("%s: a user entry without username, role or scope: skipped", path)
    return out


def webhook_secrets(config: NotifyConfig, source: Path | None) -> dict[str, bytes]:
    """Each signed webhook channel's key, from the environment variable it names; a named
    variable that is not set is refused (an unsigned message would be rejected by the
    receiver, or worse, accepted)."""
    out = {}
    for name, channel in config.channels.items():
        if channel.secret_env is None:
            continue
        value = os.environ.get(channel.secret_env, "")
        if not value:
            raise InvalidInput(str(source), f"channels.{name}.secret_env",
                               f"the environment variable {channel.secret_env} is not set")
        out[name] = value.encode()
    return out


def _stamp(path: Path | None) -> tuple[int, int, int] | None:
    """A watched file's modification time, size and inode (None: no file). The inode tells
    apart two saves of one size within the file system's clock tick: each save through the
    API is a new file renamed over the old one."""
    try:
        st = path.stat() if path is not None else None
    except FileNotFoundError:
        return None
    return None if st is None else (st.st_mtime_ns, st.st_size, st.st_ino)


def _when(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class Notifier:
    def __init__(self, settings: Settings, *, base_url: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings, self.clock = settings, clock
        self.fleet: Fleet = load_fleet(settings.fleet_file)
        self.alarms: AlarmsConfig = load_monitoring(settings.monitoring_file).alarms
        self.rules_path = settings.notify_rules
        self.rules_stamp = _stamp(self.rules_path)
        self.rules = self._load_rules() if self.rules_stamp else NotifyConfig()
        self.preferences_path = settings.notify_preferences_path
        self.preferences_stamp = _stamp(self.preferences_path)
        self.own: dict[str, Preferences] = {}
        if self.preferences_stamp:
            try:
                self.own = load_preferences(self.preferences_path)
            except InvalidInput as exc:
                # Not fatal, unlike broken rules: preferences only narrow, and nobody should
                # miss an alarm because one hand edit broke the file.
                log.error("users' own notification preferences not taken: %s", exc)
        self.config = merged(self.rules, self.own)
        self.users = read_users(settings.users_path, self.config)
        self.base_url = (base_url or f"http://{settings.api_host}:{settings.api_port}/")
        self.ack_secret = ack_secret(settings)
        self.outbox = Outbox(settings.notify_db_path)
        self.dispatcher = Dispatcher(self.outbox, senders_config(
            settings, webhook_secrets=webhook_secrets(self.config, self.rules_path)),
            workers=settings.notify_workers)
        self.throttle = Throttle.of(self.config)
        self.escalation = Escalation()
        self.events: dict[str, NotifyEvent] = {}  # watched for escalation, by id
        bootstrap = settings.require_kafka()
        self.topics: dict[str, Callable[[bytes, int], list[NotifyEvent]]] = {
            settings.topic_breaches: self._breach, settings.topic_alerts: self._alert}
        ensure_topics(bootstrap, [*self.topics, settings.topic_dlq], settings.topic_partitions)
        self.consumer = Consumer({"bootstrap.servers": bootstrap,
                                  "group.id": f"bessmon-notify-{uuid.uuid4().hex}",
                                  "enable.auto.commit": False, "fetch.wait.max.ms": 50,
                                  "auto.offset.reset": "latest"})
        self.producer = CheckedProducer(bootstrap)
        self.redis = redis.Redis.from_url(settings.require_redis())
        self.ready = threading.Event()
        self.enqueued = 0
        self._pending: list[NewMessage] | None = None  # while a batch is being read
        self._read: dict[tuple[str, int], int] = {}  # next offsets read, not yet saved
        self._read_saved = 0.0

    # -- the rules file ------------------------------------------------------------------

    def _load_rules(self) -> NotifyConfig:
        assert self.rules_path is not None
        names = set(read_users(self.settings.users_path, NotifyConfig()))
        return load_notify(self.rules_path, usernames=names or None)

    def reload_rules(self) -> bool:
        """Take the rules file again when it changed (an admin saved rules through the API,
        or edited the file). A file that no longer validates is not taken: the rules in use
        stay, and the problem is logged with its file, line and key. True when new rules
        were taken."""
        stamp = _stamp(self.rules_path)
        if stamp == self.rules_stamp:
            return False
        self.rules_stamp = stamp
        try:
            config = self._load_rules() if stamp else NotifyConfig()
            secrets = webhook_secrets(config, self.rules_path)
        except InvalidInput as exc:
            log.error("notification rules not reloaded, the previous ones stay: %s", exc)
            return False
        if (config.digest, config.flapping) != (self.config.digest, self.config.flapping):
            # held back under the old windows: sent now, not lost with them
            self._enqueue(self.throttle.flush(2**62), int(self.clock() * 1000))
            self.throttle = Throttle.of(config)
        self.rules = config
        self.config = merged(config, self.own)
        self.users = read_users(self.settings.users_path, self.config)
        self.dispatcher.config = senders_config(self.settings, webhook_secrets=secrets)
        log.info("notification rules reloaded from %s: %d rules, %d channels",
                 self.rules_path, len(config.rules), len(config.channels))
        return True

    def reload_preferences(self) -> bool:
        """Take users' own preferences again when their file changed (a user saved theirs
        through the API). As with the rules: a file that no longer validates is not taken,
        the preferences in use stay, and the problem is logged with its file, line and key;
        no file is no own preferences. True when new preferences were taken."""
        stamp = _stamp(self.preferences_path)
        if stamp == self.preferences_stamp:
            return False
        self.preferences_stamp = stamp
        try:
            own = load_preferences(self.preferences_path) if stamp else {}
        except InvalidInput as exc:
            log.error("users' own notification preferences not reloaded, the previous ones "
                      "stay: %s", exc)
            return False
        self.own = own
        self.config = merged(self.rules, own)
        self.users = read_users(self.settings.users_path, self.config)
        log.info("users' own notification preferences reloaded from %s: %d users",
                 self.preferences_path, len(own))
        return True

    # -- events --------------------------------------------------------------------------

    def _site(self, site_id: str | None) -> tuple[str | None, str | None]:
        try:
            site = self.fleet.site(site_id) if site_id else None
        except KeyError:
            site = None
        return (site.customer, site.region) if site else (None, None)

    def _link(self, site_id: str | None, asset_id: str | None) -> str:
        if asset_id and asset_id in self.fleet.assets and \
                self.fleet.assets[asset_id].kind != "site" and site_id:
            return f"{self.base_url}#/site/{site_id}"
        return f"{self.base_url}#/site/{site_id}" if site_id else self.base_url

    def _breach(self, value: bytes, now_ms: int) -> list[NotifyEvent]:
        b = BreachEvent.model_validate_json(value)
        customer, region = self._site(b.site_id)
        verb = "cleared" if b.state == "cleared" else "raised"
        if b.kind in ("limit", "trend"):
            what = (f"{b.tag} {b.value:g} (threshold {b.threshold:g}), {b.kind} {b.rule_id} "
                    f"{verb} at {_when(b.ts_ms)}")
        else:  # a status or an alert raised as an alarm (contracts/alarm_sources.py)
            what = f"{b.rule_id} {verb} at {_when(b.ts_ms)}"
            if b.state == "cleared":
                what += f" (raised at {_when(b.raised_ms)})"
        control = b.kind == "alert" and b.tag in CONTROL_KINDS
        return [NotifyEvent(
            event_id=b.breach_id, kind="control" if control else "alarm",
            transition=b.state, severity=b.severity,
            site_id=b.site_id, customer=customer, region=region, asset_id=b.asset_id,
            title=f"{b.severity.upper()} {b.asset_id}: {b.message}"[:500],
            text=f"{b.asset_id} ({b.site_id}): {b.message}\n{what}",
            cause=b.rule_id, ts_ms=b.ts_ms, link=self._link(b.site_id, b.asset_id))]

    def _alert(self, value: bytes, now_ms: int) -> list[NotifyEvent]:
        a = Alert.model_validate_json(value)
        if alert_alarm(self.alarms, a) is not None:
            return []  # an alarm too: told of once, as the alarm (on bess.breaches)
        customer, region = self._site(a.site_id)
        kind = "control" if a.kind in CONTROL_KINDS else "alert"
        return [NotifyEvent(
            event_id=a.alert_id, kind=kind, transition=a.state, severity=a.severity,
            site_id=a.site_id, customer=customer, region=region, asset_id=a.scope_id,
            title=f"{a.severity.upper()} {a.scope_id}: {a.message}"[:500],
            text=f"{a.kind} on {a.scope_id}: {a.message}\n{a.state} at {_when(a.ts_ms)}",
            cause=a.kind, ts_ms=a.ts_ms, link=self._link(a.site_id, a.scope_id))]

    # -- routing -------------------------------------------------------------------------

    def handle(self, event: NotifyEvent, now_ms: int) -> None:
        for d in route(self.config, event, self.users, now_ms):
            self._enqueue(self.throttle.offer(d, event, now_ms), now_ms)
        if event.transition == "raised":
            for rule in matching_rules(self.config, event, now_ms):
                if self.escalation.raised(event, rule, now_ms):
                    self.events[event.event_id] = event
        elif event.transition == "cleared":
            self.escalation.cleared(event.event_id)
            self.events.pop(event.event_id, None)

    def _enqueue(self, outgoing: list[Outgoing], now_ms: int) -> None:
        for o in outgoing:
            d = o.delivery
            subject, body = self._message(o)
            first = o.events[0]
            if d.channel_type == "email" and o.kind == "single" and first.kind == "alarm" \
                    and first.transition in ("raised", "escalated") and first.site_id:
                recipient = f"user:{d.recipient}" if d.channel.startswith("user:") \
                    else f"channel:{d.channel}"
                body += "\nAcknowledge: " + ack_url(
                    self.base_url, self.ack_secret, site_id=first.site_id,
                    alarm_id=first.event_id, recipient=recipient, now_ms=now_ms)
            payload: dict[str, Any] | None = None
            if d.channel_type == "webhook":
                payload = {"id": d.dedup_key, "kind": o.kind, "events": [
                    e.model_dump(mode="json") for e in o.events]}
            sites = [e.site_id for e in o.events if e.site_id]
            worst = min((e.severity for e in o.events), key=SEVERITY_RANK.__getitem__)
            message = NewMessage(d.dedup_key, channel=d.channel, channel_type=d.channel_type,
                                 address=d.address, subject=subject, body=body,
                                 recipient=d.recipient, payload=payload, sites=sites,
                                 severity=worst, event_ids=[e.event_id for e in o.events])
            if self._pending is not None:
                self._pending.append(message)
            else:
                self._enqueued(self.outbox.enqueue_many([message], now_ms))
        if outgoing and self._pending is None:
            self.dispatcher.wake()

    @contextlib.contextmanager
    def batched(self, now_ms: int) -> Iterator[None]:
        """Messages made inside go into the outbox together at the end: one commit (one
        fsync) for a batch of records read, not one per message. Nothing is read as done
        before they are in."""
        self._pending = []
        try:
            yield
        finally:
            pending, self._pending = self._pending, None
            # Where to go on after a restart, in the same commit as the batch's messages (on
            # its own at most once a second: re-reading records whose messages are in adds
            # nothing — the outbox keeps one message per id).
            read, now = self._read, self.clock()
            save = bool(read) and (bool(pending) or now - self._read_saved >= 1.0)
            if pending or save:
                self._enqueued(self.outbox.enqueue_many(pending, now_ms,
                                                        read if save else None))
            if save:
                self._read, self._read_saved = {}, now
            if pending:
                self.dispatcher.wake()

    def _enqueued(self, n: int) -> None:
        self.enqueued += n
        metrics.NOTIFY_ENQUEUED.inc(n)

    def _gauges(self) -> None:
        """The figures read rather than counted: the outbox per state (one indexed COUNT),
        the consumer's lag."""
        for state, n in self.outbox.counts().items():
            metrics.NOTIFY_OUTBOX.labels(state).set(n)
        metrics.record_lag(self.consumer, SOURCE)

    @staticmethod
    def _message(o: Outgoing) -> tuple[str, str]:
        first = o.events[0]
        if o.kind == "single":
            word = {"raised": "", "cleared": "cleared: ", "acknowledged": "acknowledged: ",
                    "escalated": "ESCALATED: "}[first.transition]
            body = first.text + (f"\n\nOpen: {first.link}" if first.link else "")
            return f"[bessmon] {word}{first.title}"[:300], body
        if o.kind == "digest":
            lines = [f"- {e.transition}: {e.title}" for e in o.events]
            return f"[bessmon] {len(o.events)} alarms and alerts", "\n".join(lines)
        if o.kind == "flapping":
            return f"[bessmon] flapping: {first.title}"[:300], \
                f"{first.title} changes too often; held back until it settles."
        return f"[bessmon] settled ({first.transition}): {first.title}"[:300], first.text

    def _acknowledged(self) -> None:
        """Stop escalating the alarms operators acknowledged (the API's alarm handling)."""
        for event_id, event in list(self.events.items()):
            if event.site_id is None:
                continue
            raw = self.redis.hget(alarm_handling_key(event.site_id), event_id)
            if raw and AlarmHandling.model_validate_json(raw).acknowledged_ms is not None:
                self.escalation.acknowledged(event_id)
                del self.events[event_id]

    def tick(self, now_ms: int) -> None:
        self.reload_rules()
        self.reload_preferences()
        self._enqueue(self.throttle.flush(now_ms), now_ms)
        if self.events:
            self._acknowledged()
        for due in self.escalation.due(now_ms):
            escalated = due.event.model_copy(update={"transition": "escalated"})
            for d in deliveries(self.config, escalated, due.targets, self.users, now_ms):
                self._enqueue([Outgoing("single", d, (escalated,))], now_ms)

    # -- the loop ------------------------------------------------------------------------

    def _assign(self) -> None:
        """Read on from where the last run's messages were committed (`Outbox.consumed`):
        alarms raised while the notifier was down are told when it is back. The first run
        (nothing saved) starts at the end of the topics — the world's history is not mailed —
        and saves that place at once; a partition whose saved place is out of its range
        (another broker's) starts at its end (the consumer's `auto.offset.reset`; `bessmon
        up` forgets the places when it starts a broker of its own)."""
        metadata = self.consumer.list_topics(timeout=10)
        saved = self.outbox.consumed()
        first: dict[tuple[str, int], int] = {}
        for t in self.topics:
            for p in metadata.topics[t].partitions:
                if (t, p) not in saved:  # the end now, saved at once: a notifier killed
                    # before it read anything still goes on from here, losing nothing
                    _, high = self.consumer.get_watermark_offsets(TopicPartition(t, p),
                                                                  timeout=10)
                    first[(t, p)] = high
        if first:
            self.outbox.enqueue_many([], int(self.clock() * 1000), first)
        self.consumer.assign([TopicPartition(t, p, at)
                              for (t, p), at in {**saved, **first}.items()
                              if t in self.topics])
        self.ready.set()

    def _dead(self, msg: Message, problem: str, now_ms: int) -> None:
        key = msg.key()
        letter = dead_letter(source=SOURCE, reason="invalid", detail=problem, ts_ms=now_ms,
                             payload=(msg.value() or b"").decode("utf-8", "replace"),
                             key=key.decode("utf-8", "replace") if key else None,
                             topic=msg.topic(), partition=msg.partition(), offset=msg.offset())
        self.producer.produce(self.settings.topic_dlq, SOURCE, letter.model_dump_json().encode())

    def run(self, stop: threading.Event) -> None:
        self._assign()
        sender = threading.Thread(target=self.dispatcher.run, args=(stop,), daemon=True)
        sender.start()
        rules = len(self.config.rules)
        log.info("notifier: %d rules, %d channels, %d users; outbox %s", rules,
                 len(self.config.channels), len(self.users), self.settings.notify_db_path)
        last_tick = last_gauges = 0.0
        read = {t: metrics.CONSUMER_RECORDS.labels(SOURCE, t) for t in self.topics}
        self._gauges()
        try:
            while not stop.is_set():
                batch = self.consumer.consume(200, timeout=0.2)
                with self.batched(int(self.clock() * 1000)):
                    for msg in batch:
                        if msg.error() is not None:
                            continue
                        if (counter := read.get(msg.topic() or "")) is not None:
                            counter.inc()
                        self._read[(msg.topic() or "", msg.partition() or 0)] = \
                            (msg.offset() or 0) + 1
                        now_ms = int(self.clock() * 1000)
                        try:
                            events = self.topics[msg.topic() or ""](msg.value() or b"", now_ms)
                        except ValidationError as exc:
                            self._dead(msg, json.dumps(exc.errors()[:3], default=str)[:1500],
                                       now_ms)
                            continue
                        for event in events:
                            self.handle(event, now_ms)
                    now = self.clock()
                    if now - last_tick >= 1.0:
                        last_tick = now
                        self.tick(int(now * 1000))
                    if now - last_gauges >= GAUGES_S:
                        last_gauges = now
                        self._gauges()
        finally:
            stop.set()
            sender.join(15)
            self.consumer.close()
            self.producer.flush(10)
            self.producer.close()
            self.dispatcher.close()


def run_notifier(settings: Settings, base_url: str | None = None) -> int:
    """`bessmon notify run`: until SIGINT or SIGTERM."""
    import signal

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    Notifier(settings, base_url=base_url).run(stop)
    return 0
