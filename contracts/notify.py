"""Alarms that reach people: who is told of an alarm, an alert or a control action, through
which channel, how often, and who is told next when nobody answers — the pure rules only.

The senders and the persistent outbox (connectors/notify/) do the I/O; they consume what
this module decides:

- `route` turns one event into `Delivery` objects: every rule whose `when` matches, its
  targets expanded (channels as configured; users, groups and the on-call user of a
  rotation to the user's own address). A user is never told of a site outside their scope,
  whatever a rule says: the scope is checked here, per delivery, not trusted to the rule's
  author. Each delivery carries a stable `dedup_key`, so a replayed event, or one matched by
  several rules, is sent once per transition, recipient and channel.
- `Throttle` keeps an inbox readable during a storm: a few single messages per window and
  recipient, the rest in one digest at the window's end; an alarm that flaps is reported
  once as flapping, then held back until it settles.
- `Escalation` tells the next tier when a critical alarm stays unacknowledged.

Both state objects take every time as an argument (no clock, no I/O), so the outbox can
replay them, tests can inject a timeline, and they pickle as they are.

The configuration is a YAML file (`BESSMON_NOTIFY_RULES`, `bessmon up --notify-rules`),
refused whole when broken, naming the file, the key path, the line and the problem."""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal, NamedTuple, Self
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from contracts.events import SEVERITIES, SEVERITY_RANK, EpochMs, Severity
from contracts.yamltext import ID_PATTERN, YamlDocument, read_text, validate

EventKind = Literal["alarm", "alert", "control"]
Transition = Literal["raised", "acknowledged", "cleared", "escalated"]
ChannelType = Literal["email", "webhook", "slack", "teams"]
CHANNEL_TYPES: tuple[ChannelType, ...] = ("email", "webhook", "slack", "teams")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ANY = "*"  # in a user's customers or regions: every one (api/auth/principal.py)

Ident = Annotated[str, Field(pattern=ID_PATTERN)]
Target = Annotated[str, Field(min_length=1, max_length=200)]
NonEmptyStrings = Annotated[tuple[Annotated[str, Field(min_length=1)], ...],
                            Field(min_length=1)]
_EMAIL = re.compile(r"^[^@\s<>,;\"']+@[^@\s<>,;\"']+\.[^@\s<>,;\"'.]+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_WINDOW = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")


# --- value checks ---------------------------------------------------------------------------


def _email(value: object) -> object:
    if isinstance(value, str) and not _EMAIL.fullmatch(value):
        raise ValueError(f"{value!r} is not an email address")
    return value


def _url(value: object) -> object:
    if isinstance(value, str):
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"{value!r} is not an http or https URL")
        if not parts.hostname:
            raise ValueError(f"{value!r} names no host")
    return value


def _window(value: object) -> object:
    if isinstance(value, str):
        if not _WINDOW.fullmatch(value):
            raise ValueError(f"{value!r} is not a time window written HH:MM-HH:MM "
                             "(24-hour clock, e.g. 22:00-07:00)")
        start, end = parse_window(value)
        if start == end:
            raise ValueError(f"{value!r} starts where it ends: leave it out for all day")
    return value


def _zone(value: object) -> object:
    if isinstance(value, str):
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "Etc", a directory
            raise ValueError(f"unknown IANA time zone {value!r}") from None
    return value


def _one_or_many(value: object) -> object:
    return [value] if isinstance(value, str) else value


def _iso_datetime(value: object) -> object:
    if isinstance(value, dt.datetime):
        return value
    if not isinstance(value, str) or "T" not in value:
        raise ValueError(f"must be a date and time written YYYY-MM-DDTHH:MM (got {value!r})")
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO-8601 date and time") from None


Email = Annotated[str, BeforeValidator(_email)]
Url = Annotated[str, Field(max_length=2000), BeforeValidator(_url)]
Window = Annotated[str, BeforeValidator(_window)]
Zone = Annotated[str, BeforeValidator(_zone)]
IsoDateTime = Annotated[dt.datetime, BeforeValidator(_iso_datetime)]


def parse_window(text: str) -> tuple[int, int]:
    """`HH:MM-HH:MM` as minutes of the day (start, end); end before start wraps midnight."""
    m = _WINDOW.fullmatch(text)
    if m is None:
        raise ValueError(f"{text!r} is not a time window written HH:MM-HH:MM")
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    return h1 * 60 + m1, h2 * 60 + m2


def _local(now_ms: int, tz: str) -> dt.datetime:
    return dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC).astimezone(ZoneInfo(tz))


def in_window(window: str | None, days: Collection[str] | None, now_ms: int, tz: str) -> bool:
    """Whether `now_ms` falls in the daily window (None: all day) on one of `days` (None:
    every day), in `tz`. A window that wraps midnight belongs to the day it starts on:
    `fri` with `22:00-06:00` covers Friday 22:00 to Saturday 06:00."""
    local = _local(now_ms, tz)
    minute = local.hour * 60 + local.minute
    day = local.date()
    if window:
        start, end = parse_window(window)
        if start < end:
            if not start <= minute < end:
                return False
        elif minute < end:
            day -= dt.timedelta(days=1)  # the early hours of the window begun yesterday
        elif minute < start:
            return False
    return days is None or WEEKDAYS[day.weekday()] in days


# --- configuration --------------------------------------------------------------------------


class _Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Channel(_Config):
    """Where messages go: `email` (to: addresses), `webhook` (url; the HMAC secret in the
    environment variable `secret_env`, optional), `slack` or `teams` (an incoming-webhook
    url)."""

    type: ChannelType
    to: Annotated[tuple[Email, ...], Field(min_length=1)] | None = None
    url: Url | None = None
    secret_env: str | None = None

    @field_validator("secret_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not an environment variable name")
        return value

    @model_validator(mode="after")
    def _fields_of_type(self) -> Self:
        if self.type == "email":
            if self.to is None:
                raise ValueError("an email channel needs 'to': the addresses to write to")
            if self.url is not None or self.secret_env is not None:
                raise ValueError("an email channel takes 'to' only, no 'url' or 'secret_env'")
        else:
            if self.url is None:
                raise ValueError(f"a {self.type} channel needs 'url'")
            if self.to is not None:
                raise ValueError(f"'to' is for email channels; a {self.type} channel has 'url'")
            if self.secret_env is not None and self.type != "webhook":
                raise ValueError("'secret_env' is for webhook channels only")
        return self

    @property
    def addresses(self) -> tuple[str, ...]:
        """The email addresses, or the one URL."""
        return (self.to or ()) if self.type == "email" else (self.url or "",)


class When(_Config):
    """What a rule matches; every field given must hold (lists: any of their values)."""

    kind: Annotated[tuple[EventKind, ...], BeforeValidator(_one_or_many),
                    Field(min_length=1)] | None = None  # None: any
    severity_at_least: Severity | None = None
    sites: NonEmptyStrings | None = None
    customers: NonEmptyStrings | None = None
    regions: NonEmptyStrings | None = None
    hours: Window | None = None  # in `tz`; may wrap midnight
    days: Annotated[tuple[Weekday, ...], Field(min_length=1)] | None = None
    tz: Zone = "UTC"


class Tier(_Config):
    """One step of an escalation: `after_s` after the alarm was raised, unacknowledged, tell
    `notify`; again every `repeat_s` (optional) until it is acknowledged or cleared."""

    after_s: float = Field(gt=0, allow_inf_nan=False)
    notify: tuple[Target, ...] = Field(min_length=1)
    repeat_s: float | None = Field(None, gt=0, allow_inf_nan=False)


class Rule(_Config):
    name: Ident
    when: When = When()
    notify: tuple[Target, ...] = Field(min_length=1)
    escalate: tuple[Tier, ...] = ()  # parse_notify checks that each comes after the last


class Rotation(_Config):
    """An on-call rotation: `users[floor((now - start) / period) mod len(users)]` is on
    call. `start` without an offset is read in `tz`, and periods are counted on `tz`'s wall
    clock, so a daily hand-over stays at the same local hour across daylight-saving
    changes."""

    tz: Zone = "UTC"
    start: IsoDateTime
    period_h: float = Field(gt=0, allow_inf_nan=False)
    users: tuple[Ident, ...] = Field(min_length=1)


class Preferences(_Config):
    """A user's own choices. `quiet_hours` (in `tz`) silence everything but critical
    severities; `email`, when given, is used instead of the user directory's address."""

    severities: tuple[Severity, ...] = Field(SEVERITIES, min_length=1)
    channels: tuple[ChannelType, ...] = Field(CHANNEL_TYPES, min_length=1)
    quiet_hours: Window | None = None
    tz: Zone = "UTC"
    email: Email | None = None


class Digest(_Config):
    window_s: float = Field(60.0, gt=0, allow_inf_nan=False)
    max_per_window: int = Field(5, ge=1)


class Flapping(_Config):
    window_s: float = Field(600.0, gt=0, allow_inf_nan=False)
    max_transitions: int = Field(6, ge=1)


class NotifyConfig(_Config):
    """`BESSMON_NOTIFY_RULES` / `bessmon up --notify-rules FILE`."""

    channels: dict[Ident, Channel] = Field(default_factory=dict)
    rules: tuple[Rule, ...] = ()
    groups: dict[Ident, Annotated[tuple[Ident, ...], Field(min_length=1)]] = \
        Field(default_factory=dict)
    rotations: dict[Ident, Rotation] = Field(default_factory=dict)
    preferences: dict[Ident, Preferences] = Field(default_factory=dict)
    digest: Digest = Digest()
    flapping: Flapping = Flapping()


def _target_problem(cfg: NotifyConfig, target: str,
                    usernames: Collection[str] | None) -> str | None:
    """Why a rule's target names nothing, or None when it is fine."""
    prefix, sep, name = target.partition(":")
    if not sep:
        if target not in cfg.channels:
            known = ", ".join(sorted(cfg.channels)) or "none defined"
            return f"unknown channel {target!r} (channels: {known})"
        return None
    if prefix == "group":
        if name not in cfg.groups:
            return f"unknown group {name!r} (groups: {', '.join(sorted(cfg.groups)) or 'none'})"
    elif prefix == "rotation":
        if name not in cfg.rotations:
            known = ", ".join(sorted(cfg.rotations)) or "none"
            return f"unknown rotation {name!r} (rotations: {known})"
    elif prefix == "user":
        if not re.fullmatch(ID_PATTERN, name):
            return f"{name!r} is not a username"
        if usernames is not None and name not in usernames:
            return f"unknown user {name!r}"
    else:
        return (f"unknown target {target!r}: a channel name, user:<username>, "
                "group:<name> or rotation:<name>")
    return None


def parse_notify(text: str, source: str, *,
                 usernames: Collection[str] | None = None) -> NotifyConfig:
    """The notification rules, refused with file, key path, line and problem when broken.

    `usernames` (the users file's, when known) also checks that every user a rule, a group,
    a rotation or a preference names exists."""
    doc = YamlDocument(text, source)
    cfg = validate(doc, NotifyConfig, "'channels' and 'rules'")
    first: dict[str, int] = {}
    for i, rule in enumerate(cfg.rules):
        if rule.name in first:
            raise doc.error(["rules", i, "name"], f"rule name {rule.name!r} is used twice "
                                                  f"(first by rules[{first[rule.name]}])")
        first[rule.name] = i
        for k in range(1, len(rule.escalate)):
            before, after = rule.escalate[k - 1].after_s, rule.escalate[k].after_s
            if after <= before:
                raise doc.error(["rules", i, "escalate", k, "after_s"],
                                f"{after:g} is not later than the tier before ({before:g}): "
                                "tiers escalate one after another")
        lists: list[tuple[list[str | int], Sequence[str]]] = [(["rules", i, "notify"],
                                                                rule.notify)]
        lists += [(["rules", i, "escalate", k, "notify"], t.notify)
                  for k, t in enumerate(rule.escalate)]
        for path, targets in lists:
            for j, target in enumerate(targets):
                problem = _target_problem(cfg, target, usernames)
                if problem:
                    raise doc.error([*path, j], problem)
    if usernames is not None:
        named: list[tuple[list[str | int], str]] = [
            (["groups", g, k], u) for g, members in cfg.groups.items()
            for k, u in enumerate(members)]
        named += [(["rotations", r, "users", k], u) for r, rot in cfg.rotations.items()
                  for k, u in enumerate(rot.users)]
        named += [(["preferences", u], u) for u in cfg.preferences]
        for path, username in named:
            if username not in usernames:
                raise doc.error(path, f"unknown user {username!r}")
    return cfg


def load_notify(path: str | Path, *, usernames: Collection[str] | None = None) -> NotifyConfig:
    return parse_notify(read_text(Path(path)), str(path), usernames=usernames)


# --- events, users, deliveries --------------------------------------------------------------


class NotifyEvent(BaseModel):
    """What people are told about: one transition of an alarm (a breach), an alert or a
    control action. `event_id` is the alarm's stable id (breach id, alert id, command id),
    the same for all its transitions. `site_id` None: a fleet-wide event (only users who see
    every customer and region hear of it). `step` is set by `Escalation` only (rule, tier,
    repeat), to tell its repeated messages apart."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str = Field(min_length=1, max_length=500)
    kind: EventKind
    transition: Transition
    severity: Severity
    site_id: str | None = None
    customer: str | None = None
    region: str | None = None
    asset_id: str | None = None
    title: str = Field(max_length=500)
    text: str = Field("", max_length=10_000)
    cause: str | None = None
    ts_ms: EpochMs
    link: Url | None = None
    step: str | None = None


@dataclass(frozen=True)
class UserInfo:
    """A user as routing needs them (built from the users file or the identity provider by
    the caller: contracts/ does not import api/). Scope as in api/auth/principal.py: a site
    is seen when its customer and its region are both listed, `*` meaning any; an empty
    list sees nothing."""

    username: str
    email: str | None
    role: str
    customers: tuple[str, ...]
    regions: tuple[str, ...]
    disabled: bool = False

    def sees(self, customer: str | None, region: str | None) -> bool:
        if customer is None or region is None:  # a fleet-wide event: unrestricted users only
            return ANY in self.customers and ANY in self.regions
        return (ANY in self.customers or customer in self.customers) and \
            (ANY in self.regions or region in self.regions)


@dataclass(frozen=True)
class Delivery:
    """One message to send: through `channel` (a configured channel's name, or
    `user:<username>` for a user's own address) of `channel_type`, to `address` (an email
    address or a URL), for `recipient` (a username or the channel's name). The outbox sends
    each `dedup_key` once."""

    channel: str
    channel_type: ChannelType
    address: str
    recipient: str
    dedup_key: str


def dedup_key(event: NotifyEvent, channel_type: str, address: str) -> str:
    """Stable: one message per alarm transition, channel type and address (and per step of
    an escalation)."""
    transition = f"{event.transition}.{event.step}" if event.step else event.transition
    return f"{event.event_id}:{transition}:{channel_type}:{address}"


SiteVisible = Callable[[UserInfo, str], bool]


def rule_matches(when: When, event: NotifyEvent, now_ms: int) -> bool:
    if when.kind is not None and event.kind not in when.kind:
        return False
    if when.severity_at_least is not None and \
            SEVERITY_RANK[event.severity] > SEVERITY_RANK[when.severity_at_least]:
        return False
    for wanted, value in ((when.sites, event.site_id), (when.customers, event.customer),
                          (when.regions, event.region)):
        if wanted is not None and value not in wanted:
            return False
    if when.hours is None and when.days is None:
        return True
    return in_window(when.hours, when.days, now_ms, when.tz)


def on_call(rotation: Rotation, now_ms: int) -> str:
    """The rotation's user on call at `now_ms`."""
    tz = ZoneInfo(rotation.tz)
    start = rotation.start if rotation.start.tzinfo is not None \
        else rotation.start.replace(tzinfo=tz)
    # Wall-clock time in the rotation's zone on both sides: hand-overs keep their local hour.
    elapsed = _local(now_ms, rotation.tz).replace(tzinfo=None) - \
        start.astimezone(tz).replace(tzinfo=None)
    index = math.floor(elapsed / dt.timedelta(hours=rotation.period_h))
    return rotation.users[index % len(rotation.users)]


def _user_allows(prefs: Preferences | None, event: NotifyEvent, now_ms: int) -> bool:
    if prefs is None:
        return True
    if event.severity not in prefs.severities or "email" not in prefs.channels:
        return False
    return event.severity == "critical" or prefs.quiet_hours is None or \
        not in_window(prefs.quiet_hours, None, now_ms, prefs.tz)


def _usernames_of(config: NotifyConfig, target: str, now_ms: int) -> list[str]:
    prefix, _, name = target.partition(":")
    if prefix == "user":
        return [name]
    if prefix == "group":
        return list(config.groups.get(name, ()))
    if prefix == "rotation" and name in config.rotations:
        return [on_call(config.rotations[name], now_ms)]
    return []


def deliveries(config: NotifyConfig, event: NotifyEvent, targets: Iterable[str],
               users: Mapping[str, UserInfo], now_ms: int, *,
               site_visible: SiteVisible | None = None) -> list[Delivery]:
    """`targets` (a rule's or an escalation tier's) expanded into deliveries for `event`:
    channels as configured; users, groups' users and rotations' on-call user to the user's
    own email address — only a known, enabled user whose scope sees the event's site and
    whose preferences take it. `site_visible(user, site_id)` replaces the scope check on the
    event's customer and region (e.g. the fleet's sites through `Scope.sees`). In target
    order, duplicates removed."""
    out: dict[str, Delivery] = {}

    def add(d: Delivery) -> None:
        out.setdefault(d.dedup_key, d)

    for target in targets:
        if ":" not in target:
            channel = config.channels.get(target)
            if channel is None:
                continue
            for address in channel.addresses:
                add(Delivery(target, channel.type, address, target,
                             dedup_key(event, channel.type, address)))
            continue
        for username in _usernames_of(config, target, now_ms):
            user = users.get(username)
            if user is None or user.disabled:
                continue
            if event.site_id is None or site_visible is None:
                visible = user.sees(event.customer, event.region)
            else:
                visible = site_visible(user, event.site_id)
            prefs = config.preferences.get(username)
            mailbox = user.email or (prefs.email if prefs else None)
            if not visible or not mailbox or not _user_allows(prefs, event, now_ms):
                continue
            add(Delivery(f"user:{username}", "email", mailbox, username,
                         dedup_key(event, "email", mailbox)))
    return list(out.values())


def route(config: NotifyConfig, event: NotifyEvent, users: Mapping[str, UserInfo],
          now_ms: int, *, site_visible: SiteVisible | None = None) -> list[Delivery]:
    """Every delivery `event` calls for at `now_ms`: the targets of each rule whose `when`
    matches, in rule order, one per dedup key."""
    out: dict[str, Delivery] = {}
    for rule in matching_rules(config, event, now_ms):
        for d in deliveries(config, event, rule.notify, users, now_ms,
                            site_visible=site_visible):
            out.setdefault(d.dedup_key, d)
    return list(out.values())


def matching_rules(config: NotifyConfig, event: NotifyEvent, now_ms: int) -> list[Rule]:
    return [r for r in config.rules if rule_matches(r.when, event, now_ms)]


# --- throttle -------------------------------------------------------------------------------

OutgoingKind = Literal["single", "digest", "flapping", "settled"]


@dataclass(frozen=True)
class Outgoing:
    """A message the sender sends now. `single`: one event. `digest`: the events held back
    in a window, in order, as one message. `flapping`: the event flaps, its transitions are
    held back until it settles. `settled`: it has settled; `events` holds its last
    transition (its state now). `delivery.dedup_key` is the message's own stable key."""

    kind: OutgoingKind
    delivery: Delivery
    events: tuple[NotifyEvent, ...]


Inbox = tuple[str, str]  # (channel type, address)


@dataclass
class _Window:
    start_ms: int
    sent: int = 0
    held: list[tuple[Delivery, NotifyEvent]] = field(default_factory=list)


@dataclass
class _Flap:
    seen: dict[tuple[str, int], int] = field(default_factory=dict)  # transition → first seen
    flapping_since: int | None = None
    told: dict[Inbox, Delivery] = field(default_factory=dict)  # recipients told it flaps
    last: NotifyEvent | None = None


class Throttle:
    """Rate limits per inbox (channel type and address) and flapping per alarm.

    Per inbox, a window opens with its first message: at most `digest.max_per_window`
    single messages go out in it; the rest are held and go out as one digest at the window's
    end (`flush`, or the inbox's next `offer`). Per alarm (`event_id`), its raised and
    cleared transitions are counted over the last `flapping.window_s`: beyond
    `flapping.max_transitions` it flaps — each recipient gets one `flapping` notice, then
    nothing of it until no transition came for a whole window; then `settled` with its last
    transition. Flapping notices are not rate limited (one per alarm and recipient)."""

    def __init__(self, digest: Digest | None = None, flapping: Flapping | None = None) -> None:
        self.digest = digest or Digest()
        self.flapping = flapping or Flapping()
        self._windows: dict[Inbox, _Window] = {}
        self._flaps: dict[str, _Flap] = {}

    @classmethod
    def of(cls, config: NotifyConfig) -> Throttle:
        return cls(config.digest, config.flapping)

    def offer(self, delivery: Delivery, event: NotifyEvent, now_ms: int) -> list[Outgoing]:
        """What goes out now for one routed delivery (possibly nothing: held)."""
        out = self._flush_inbox((delivery.channel_type, delivery.address), now_ms)
        if self._flapping(delivery, event, now_ms, out):
            return out
        inbox = (delivery.channel_type, delivery.address)
        window = self._windows.get(inbox)
        if window is None:
            window = self._windows[inbox] = _Window(now_ms)
        if window.sent < self.digest.max_per_window:
            window.sent += 1
            out.append(Outgoing("single", delivery, (event,)))
        else:
            window.held.append((delivery, event))
        return out

    def flush(self, now_ms: int) -> list[Outgoing]:
        """The digests of windows ended by `now_ms` and the alarms settled by then."""
        out: list[Outgoing] = []
        for inbox in sorted(self._windows):
            out += self._flush_inbox(inbox, now_ms)
        window_ms = self.flapping.window_s * 1000
        for event_id in sorted(self._flaps):
            flap = self._flaps[event_id]
            recent = {k: t for k, t in flap.seen.items() if now_ms - t < window_ms}
            if flap.flapping_since is None:
                flap.seen = recent
                if not recent:
                    del self._flaps[event_id]
            elif not recent:
                last = flap.last
                assert last is not None  # set whenever flapping starts
                for inbox in sorted(flap.told):
                    d = flap.told[inbox]
                    key = f"{event_id}:settled.{flap.flapping_since}:{inbox[0]}:{inbox[1]}"
                    out.append(Outgoing("settled", _rekey(d, key), (last,)))
                del self._flaps[event_id]
        return out

    def next_due_ms(self) -> int | None:
        """When `flush` next has something to do (None: nothing pending)."""
        times = [w.start_ms + math.ceil(self.digest.window_s * 1000)
                 for w in self._windows.values() if w.held]
        times += [max(f.seen.values()) + math.ceil(self.flapping.window_s * 1000)
                  for f in self._flaps.values() if f.flapping_since is not None and f.seen]
        return min(times, default=None)

    def _flush_inbox(self, inbox: Inbox, now_ms: int) -> list[Outgoing]:
        window = self._windows.get(inbox)
        if window is None or now_ms - window.start_ms < self.digest.window_s * 1000:
            return []
        del self._windows[inbox]
        if not window.held:
            return []
        first = window.held[0][0]
        key = f"digest.{window.start_ms}:{inbox[0]}:{inbox[1]}"
        return [Outgoing("digest", _rekey(first, key), tuple(e for _, e in window.held))]

    def _flapping(self, delivery: Delivery, event: NotifyEvent, now_ms: int,
                  out: list[Outgoing]) -> bool:
        """Counts the event's transition; True when the delivery is held back (appending
        the recipient's flapping notice to `out` the first time)."""
        flap = self._flaps.setdefault(event.event_id, _Flap())
        window_ms = self.flapping.window_s * 1000
        if event.transition in ("raised", "cleared"):
            flap.seen.setdefault((event.transition, event.ts_ms), now_ms)
        flap.seen = {k: t for k, t in flap.seen.items() if now_ms - t < window_ms}
        if flap.flapping_since is None:
            if len(flap.seen) <= self.flapping.max_transitions:
                return False
            flap.flapping_since = now_ms
        if flap.last is None or (event.transition in ("raised", "cleared")
                                 and event.ts_ms >= flap.last.ts_ms):
            flap.last = event
        inbox = (delivery.channel_type, delivery.address)
        if inbox not in flap.told:
            flap.told[inbox] = delivery
            key = f"{event.event_id}:flapping.{flap.flapping_since}:{inbox[0]}:{inbox[1]}"
            out.append(Outgoing("flapping", _rekey(delivery, key), (event,)))
        return True


def _rekey(d: Delivery, key: str) -> Delivery:
    return Delivery(d.channel, d.channel_type, d.address, d.recipient, key)


# --- escalation -----------------------------------------------------------------------------


class Due(NamedTuple):
    """A tier due: tell `targets` of `event` (transition `escalated`, `step` set)."""

    event: NotifyEvent
    tier_index: int
    targets: tuple[str, ...]


@dataclass
class _Pending:
    event: NotifyEvent
    rule: Rule
    raised_ms: int
    done: dict[int, int] = field(default_factory=dict)  # tier → repeats sent (0: the first)


class Escalation:
    """Unacknowledged critical alarms and the tiers of their rules still to tell.

    `raised` starts the clock for a critical alarm (kind `alarm`) matched by a rule with
    tiers; tier i is due `after_s` later, then every `repeat_s` (if given) until
    `acknowledged` or `cleared` stops it. A tier whose repeats were missed (no `due` call
    for a while) is due once, not once per missed repeat. Raised again (a replay), the alarm
    keeps its first time."""

    def __init__(self) -> None:
        self._pending: dict[tuple[str, str], _Pending] = {}

    def raised(self, event: NotifyEvent, rule: Rule, now_ms: int) -> bool:
        """True when the alarm is now being watched for escalation."""
        if event.kind != "alarm" or event.severity != "critical" or not rule.escalate:
            return False
        self._pending.setdefault((event.event_id, rule.name), _Pending(event, rule, now_ms))
        return True

    def acknowledged(self, event_id: str) -> None:
        self._stop(event_id)

    def cleared(self, event_id: str) -> None:
        self._stop(event_id)

    def _stop(self, event_id: str) -> None:
        for key in [k for k in self._pending if k[0] == event_id]:
            del self._pending[key]

    @property
    def watching(self) -> set[str]:
        return {event_id for event_id, _ in self._pending}

    def due(self, now_ms: int) -> list[Due]:
        """The tiers due by `now_ms` and not yet told, oldest alarm first."""
        out: list[Due] = []
        for (_, rule_name), p in sorted(self._pending.items(),
                                        key=lambda kv: (kv[1].raised_ms, kv[0])):
            for i, tier in enumerate(p.rule.escalate):
                first_ms = p.raised_ms + tier.after_s * 1000
                if now_ms < first_ms:
                    continue
                repeat = 0 if tier.repeat_s is None else \
                    math.floor((now_ms - first_ms) / (tier.repeat_s * 1000))
                if p.done.get(i, -1) >= repeat:
                    continue
                p.done[i] = repeat
                step = f"{rule_name}.{i}.{repeat}"
                event = p.event.model_copy(update={"transition": "escalated", "step": step,
                                                   "ts_ms": now_ms})
                out.append(Due(event, i, tier.notify))
        return out

    def next_due_ms(self) -> int | None:
        """When `due` next has something to return (None: nothing watched)."""
        times: list[int] = []
        for p in self._pending.values():
            for i, tier in enumerate(p.rule.escalate):
                first_ms = p.raised_ms + tier.after_s * 1000
                done = p.done.get(i)
                if done is None:
                    times.append(math.ceil(first_ms))
                elif tier.repeat_s is not None:
                    times.append(math.ceil(first_ms + (done + 1) * tier.repeat_s * 1000))
        return min(times, default=None)



# --- users' own preferences -----------------------------------------------------------------


class PreferencesFile(_Config):
    """`<run dir>/notify-preferences.yaml` (`BESSMON_NOTIFY_PREFERENCES`): each user's own
    preferences, written by the API for the user who saves them."""

    preferences: dict[Ident, Preferences] = Field(default_factory=dict)


def parse_preferences(text: str, source: str) -> dict[str, Preferences]:
    """Users' own preferences by username, refused with file, key path, line and problem
    when broken, as the rules file is. An empty file holds none."""
    doc = YamlDocument(text, source)
    if doc.data is None:
        return {}
    return dict(validate(doc, PreferencesFile, "'preferences'").preferences)


def load_preferences(path: str | Path) -> dict[str, Preferences]:
    return parse_preferences(read_text(Path(path)), str(path))


def dump_preferences(preferences: Mapping[str, Preferences]) -> str:
    """The preferences file's text (what `parse_preferences` reads back), users sorted."""
    data = {"preferences": {name: preferences[name].model_dump(mode="json", exclude_none=True)
                            for name in sorted(preferences)}}
    return ("# Each user's own notification preferences (docs/notifications.md), written by\n"
            "# the API: PUT /api/v1/notify/preferences.\n"
            + yaml.safe_dump(data, sort_keys=False, default_flow_style=None,
                             allow_unicode=True))


def merged(config: NotifyConfig, own: Mapping[str, Preferences]) -> NotifyConfig:
    """The rules with the users' own preferences in force: a user's own entry replaces the
    rules file's entry for that user whole (severities, channels, quiet hours, time zone);
    only the address falls back to the rules file's when the user gave none. Users without
    an entry of their own keep the rules file's."""
    if not own:
        return config
    prefs = dict(config.preferences)
    for name, mine in own.items():
        theirs = prefs.get(name)
        if mine.email is None and theirs is not None and theirs.email is not None:
            mine = mine.model_copy(update={"email": theirs.email})
        prefs[name] = mine
    return config.model_copy(update={"preferences": prefs})
