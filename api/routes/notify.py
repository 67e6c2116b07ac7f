"""Notifications through the API: the rules file (admins), each user's own preferences
(every local user, their own entry only) and the delivery log (everyone, scoped).

    GET    /notify/rules             the rules file: text, rule and channel counts
    PUT    /notify/rules             {"yaml"}: validated, then written atomically (audited)
    POST   /notify/rules/validate    {"yaml"}: validated only
    GET    /notify/preferences       the caller's own preferences, and where they come from
    PUT    /notify/preferences       the caller's own: validated, written (audited)
    DELETE /notify/preferences       back to the rules file's, or the defaults (audited)
    GET    /notify/deliveries        ?state=&site=&since_ms=&limit=&cursor=  newest first

The rules are the file the notifier reads (`settings.notify_rules_path`); it reloads it when
it changes. A text that does not validate is refused whole with its line, key and problem
(422), as at start, and the refusal is audited like a change. The delivery log is the
notifier's outbox: a caller sees a message only when they see every site it is of, and a
fleet-wide one (of no site) only with a scope of the whole fleet. Webhook, Slack and Teams
URLs are secrets: never shown whole. Users' own preferences are a file of their own
(`settings.notify_preferences_path`), which the notifier also reloads when it changes; a
user's entry there replaces the rules file's entry for them."""

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import threading
import time
import uuid
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.auth.permissions import Permission
from api.auth.principal import ANY, Principal
from api.context import ApiContext
from api.deps import MAX_EPOCH_MS, CtxDep, Reader, require, visible_site
from api.errors import ERRORS, BadInput, ErrorBody
from api.pagination import CursorQ, LimitQ, Page
from api.views import DeliveryOut, NotifyPreferences, NotifyRules, NotifyRulesCheck
from connectors.notify.outbox import Outbox, OutboxMessage
from connectors.notify.senders import redact_url
from contracts.errors import InvalidInput
from contracts.events import SEVERITIES, Severity
from contracts.notify import (
    CHANNEL_TYPES,
    ChannelType,
    NotifyConfig,
    Preferences,
    dump_preferences,
    parse_notify,
    parse_preferences,
)
from contracts.yamltext import describe

router = APIRouter(tags=["notifications"], responses=ERRORS)
RulesAdmin = Annotated[Principal, Depends(require(Permission.NOTIFY_MANAGE))]
MAX_RULES_CHARS = 200_000
# One writer at a time in this process, so that the audited old text is the replaced one.
_WRITE_LOCK = threading.Lock()


class RulesText(BaseModel):
    yaml: str = Field(max_length=MAX_RULES_CHARS, description="the whole rules file")


# --- the rules file -------------------------------------------------------------------------


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _usernames(ctx: ApiContext) -> set[str] | None:
    """The users the API knows (the users file), as the notifier checks them: None when
    there are none (users then come from an identity provider, unknown here)."""
    return {u.username for u in ctx.auth.users.all()} or None


def _parse(ctx: ApiContext, text: str) -> NotifyConfig:
    return parse_notify(text, str(ctx.settings.notify_rules_path), usernames=_usernames(ctx))


def _read(path: Path) -> tuple[str, int] | None:
    """The file's text and modification time (ms); None when there is none."""
    try:
        with path.open(encoding="utf-8") as f:
            text = f.read()
            return text, os.fstat(f.fileno()).st_mtime_ns // 1_000_000
    except (FileNotFoundError, NotADirectoryError):
        return None


def _write_atomically(path: Path, text: str) -> None:
    """Whole or not at all: a temporary file beside it, synced, renamed over it, the
    directory synced — the notifier never reads half a file, a power cut loses neither."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    # 0600: the file names people's addresses and webhook URLs (secrets).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _rules_view(ctx: ApiContext) -> NotifyRules:
    path = ctx.settings.notify_rules_path
    found = _read(path)
    if found is None:
        return NotifyRules(path=str(path), yaml="", rules=0, channels=0, updated_ms=None,
                           sha256=None)
    text, mtime_ms = found
    rules = channels = 0
    problem = None
    try:
        config = _parse(ctx, text)
        rules, channels = len(config.rules), len(config.channels)
    except InvalidInput as exc:
        problem = str(exc)
    return NotifyRules(path=str(path), yaml=text, rules=rules, channels=channels,
                       updated_ms=mtime_ms, sha256=_sha256(text), problem=problem)


def refused(exc: InvalidInput) -> BadInput:
    """422 naming the file, the line, the key and the problem (`errors` has them apart)."""
    error = BadInput("body.yaml", str(exc))
    error.errors = [{"loc": "body.yaml", "msg": str(exc), "key": exc.location,
                     "problem": exc.problem,
                     **({"line": str(exc.line)} if exc.line is not None else {})}]
    return error


def _save(ctx: ApiContext, caller: Principal, text: str) -> NotifyRules:
    path = ctx.settings.notify_rules_path
    with _WRITE_LOCK:
        now_ms = int(time.time() * 1000)
        found = _read(path)
        old = {"old_sha256": _sha256(found[0]) if found else None}
        try:
            config = _parse(ctx, text)
        except InvalidInput as exc:
            ctx.audit.append(caller.subject, "notify.rules.update", target=str(path),
                             outcome="refused", now_ms=now_ms,
                             details={**old, "new_sha256": _sha256(text), "why": str(exc)})
            raise refused(exc) from None
        try:
            _write_atomically(path, text)
        except OSError as exc:  # a full disk, a read-only directory: said, and audited
            ctx.audit.append(caller.subject, "notify.rules.update", target=str(path),
                             outcome="failed", now_ms=now_ms,
                             details={**old, "new_sha256": _sha256(text), "why": str(exc)})
            raise HTTPException(status.HTTP_500_INTERNAL_SERVER_ERROR,
                                f"could not write {path}: {exc.strerror or exc}") from None
        ctx.audit.append(caller.subject, "notify.rules.update", target=str(path), now_ms=now_ms,
                         details={**old, "new_sha256": _sha256(text),
                                  "rules": len(config.rules), "channels": len(config.channels)})
        return _rules_view(ctx)


@router.get("/notify/rules")
async def get_rules(ctx: CtxDep, caller: RulesAdmin) -> NotifyRules:
    """The rules file as it is on disk (`yaml` is "" while there is none); `problem` says
    why the notifier would refuse it, when it was edited by hand into something broken."""
    return await run_in_threadpool(_rules_view, ctx)


@router.put("/notify/rules")
async def put_rules(body: RulesText, ctx: CtxDep, caller: RulesAdmin) -> NotifyRules:
    """Replace the rules file: validated whole (as at the notifier's start, users checked
    against the users file), then written atomically; the notifier reloads it. Accepted and
    refused changes are audited (`notify.rules.update`: counts, sha256 of old and new)."""
    return await run_in_threadpool(_save, ctx, caller, body.yaml)


def _check(ctx: ApiContext, text: str) -> NotifyRulesCheck:
    try:
        config = _parse(ctx, text)
    except InvalidInput as exc:
        raise refused(exc) from None
    return NotifyRulesCheck(rules=len(config.rules), channels=len(config.channels),
                            groups=len(config.groups), rotations=len(config.rotations))


@router.post("/notify/rules/validate")
async def validate_rules(body: RulesText, ctx: CtxDep, caller: RulesAdmin) -> NotifyRulesCheck:
    """Check a rules text without saving it (nothing written, nothing audited)."""
    return await run_in_threadpool(_check, ctx, body.yaml)


# --- the caller's own preferences ----------------------------------------------------------

# One read-modify-write of the preferences file at a time: this process's threads (the lock)
# and other API processes of this machine (a lock file beside it).
_PREFERENCES_LOCK = threading.Lock()
BROKEN: dict[int | str, dict[str, Any]] = {409: {
    "model": ErrorBody, "description": "the preferences file on disk does not validate "
    "(edited by hand): nothing read or changed until an admin mends it"}}


class PreferencesIn(BaseModel):
    """The caller's own preferences: what they are told of (as the rules file's
    `preferences`, which these replace for the caller)."""

    model_config = ConfigDict(extra="forbid")

    severities: list[Severity] = Field(default_factory=lambda: list(SEVERITIES),
                                       min_length=1, max_length=len(SEVERITIES),
                                       description="the severities to be told of")
    channels: list[ChannelType] = Field(
        default_factory=lambda: list(CHANNEL_TYPES), min_length=1, max_length=len(CHANNEL_TYPES),
        description="the channel types that may carry messages to the caller; the caller's "
                    "own address is e-mail, so without 'email' nothing reaches them")
    quiet_hours: str | None = Field(None, max_length=11, examples=["22:00-07:00"],
                                    description="HH:MM-HH:MM in `tz`, may wrap midnight: only "
                                                "critical alarms then; null: none")
    tz: str = Field("UTC", min_length=1, max_length=64, examples=["Europe/Stockholm"],
                    description="the IANA time zone of quiet_hours")
    email: str | None = Field(None, max_length=254,
                              description="the address to mail; null: the one the rules "
                                          "file or the users file gives")


class _Broken(Exception):
    """The preferences file on disk does not validate."""


def _owner(ctx: ApiContext, caller: Principal) -> str:
    """The caller's username, when the notifier knows them: a user of the users file."""
    if caller.via == "api_key":
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            "an API key has no notification preferences: they are a signed-in "
                            "user's own")
    if caller.via != "local" or ctx.auth.users.get(caller.subject) is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            f"{caller.subject!r} is not a user of the users file: the notifier "
                            "tells only those, so only they have notification preferences")
    return caller.subject


def _own_entries(path: Path) -> dict[str, Preferences]:
    """Every user's own preferences on disk (none without a file); `_Broken` when the file
    does not validate."""
    try:
        data = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return {}
    except OSError as exc:  # a directory in its place, no permission
        raise _Broken(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        return parse_preferences(data.decode("utf-8"), str(path))
    except UnicodeDecodeError as exc:
        raise _Broken(f"{path}: not UTF-8 text (byte at offset {exc.start})") from None
    except InvalidInput as exc:
        raise _Broken(str(exc)) from None


def _conflict(problem: str) -> HTTPException:
    return HTTPException(status.HTTP_409_CONFLICT,
                         f"the preferences file is refused, nothing was read or changed: "
                         f"{problem} (an admin must mend or remove it)")


def _rules_entry(ctx: ApiContext, username: str) -> Preferences | None:
    """The rules file's `preferences` entry of the user (none while it does not validate)."""
    try:
        found = _read(ctx.settings.notify_rules_path)
        return _parse(ctx, found[0]).preferences.get(username) if found else None
    except (InvalidInput, UnicodeDecodeError):
        return None


def _preferences_view(p: Preferences, source: Literal["own", "rules", "default"]
                      ) -> NotifyPreferences:
    return NotifyPreferences(severities=list(p.severities), channels=list(p.channels),
                             quiet_hours=p.quiet_hours, tz=p.tz, email=p.email, source=source)


def _in_force(ctx: ApiContext, username: str, own: Preferences | None) -> NotifyPreferences:
    if own is not None:
        return _preferences_view(own, "own")
    rules = _rules_entry(ctx, username)
    return _preferences_view(rules, "rules") if rules else \
        _preferences_view(Preferences(), "default")


def _get_preferences(ctx: ApiContext, username: str) -> NotifyPreferences:
    try:
        own = _own_entries(ctx.settings.notify_preferences_path).get(username)
    except _Broken as exc:
        raise _conflict(str(exc)) from None
    return _in_force(ctx, username, own)


def _validated(body: PreferencesIn) -> Preferences:
    """The body as `Preferences` (the rules file's model): 422 naming each bad field."""
    try:
        return Preferences.model_validate({
            **body.model_dump(),
            "severities": list(dict.fromkeys(body.severities)),
            "channels": list(dict.fromkeys(body.channels))})
    except ValidationError as exc:
        errors = [{"loc": ".".join(["body", *(str(p) for p in e["loc"])]), "msg": describe(e)}
                  for e in exc.errors()]
        error = BadInput(errors[0]["loc"], errors[0]["msg"])
        error.errors = errors
        raise error from None


def _values(p: Preferences) -> dict[str, Any]:
    return p.model_dump(mode="json")


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with _PREFERENCES_LOCK:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # released when closed
            yield
        finally:
            os.close(fd)


def _change(ctx: ApiContext, caller: Principal, username: str,
            new: Preferences | None) -> NotifyPreferences:
    """Write the caller's own entry (None: remove it), the others' as they were: read,
    changed and written under the lock, atomically. Audited, also when refused or failed."""
    path = ctx.settings.notify_preferences_path
    action = "notify.preferences.update" if new is not None else "notify.preferences.reset"
    now_ms = int(time.time() * 1000)
    details: dict[str, Any] = _values(new) if new is not None else {}
    try:
        with _locked(path):
            entries = _own_entries(path)
            had = entries.pop(username, None)
            if new is not None:
                entries[username] = new
            if new is not None or had is not None:
                _write_atomically(path, dump_preferences(entries))
    except _Broken as exc:
        ctx.audit.append(caller.subject, action, target=str(path), outcome="refused",
                         now_ms=now_ms, details={**details, "why": str(exc)})
        raise _conflict(str(exc)) from None
    except OSError as exc:  # a full disk, a read-only directory: said, and audited
        ctx.audit.append(caller.subject, action, target=str(path), outcome="failed",
                         now_ms=now_ms, details={**details, "why": str(exc)})
        raise HTTPException(status.HTTP_500_INTERNAL_SERVER_ERROR,
                            f"could not write {path}: {exc.strerror or exc}") from None
    if new is None:
        details = {"removed": _values(had) if had is not None else None}
    ctx.audit.append(caller.subject, action, target=str(path), now_ms=now_ms, details=details)
    return _in_force(ctx, username, new)


@router.get("/notify/preferences", responses=BROKEN)
async def get_preferences(ctx: CtxDep, caller: Reader) -> NotifyPreferences:
    """The caller's own notification preferences as the notifier applies them: their own
    (`source` "own"), else the rules file's entry for them ("rules"), else the defaults
    ("default": every severity and channel, no quiet hours). Users of the users file only
    (an API key, or a user the notifier does not know, is 403)."""
    username = _owner(ctx, caller)
    return await run_in_threadpool(_get_preferences, ctx, username)


@router.put("/notify/preferences", responses=BROKEN)
async def put_preferences(body: PreferencesIn, ctx: CtxDep,
                          caller: Reader) -> NotifyPreferences:
    """Save the caller's own preferences (replacing the rules file's entry for them, whole):
    checked as the rules file's `preferences` are (422 naming the field), written atomically
    beside the other users' entries, which stay as they are; the notifier reloads the file.
    Audited (`notify.preferences.update`, with the new values)."""
    username = _owner(ctx, caller)
    new = _validated(body)
    return await run_in_threadpool(_change, ctx, caller, username, new)


@router.delete("/notify/preferences", responses=BROKEN)
async def delete_preferences(ctx: CtxDep, caller: Reader) -> NotifyPreferences:
    """Drop the caller's own preferences: the rules file's entry for them, or the defaults,
    apply again (the answer says which). Audited (`notify.preferences.reset`)."""
    username = _owner(ctx, caller)
    return await run_in_threadpool(_change, ctx, caller, username, None)


# --- the delivery log -----------------------------------------------------------------------

StateQ = Literal["pending", "sent", "failed"]
SiteQ = Annotated[str | None, Query(min_length=1, max_length=64,
                                    description="only messages about this site")]
SinceQ = Annotated[int, Query(ge=0, le=MAX_EPOCH_MS,
                              description="only messages enqueued at or after (epoch ms)")]


def _encode_cursor(created_ms: int, skip: int) -> str:
    return base64.urlsafe_b64encode(f"d{created_ms}.{skip}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> tuple[int | None, int]:
    """(until_ms, messages of that millisecond already shown); (None, 0) for the first
    page. Keyed on time, not on a position: messages enqueued meanwhile do not shift it."""
    if cursor is None:
        return None, 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        ms, _, skip = text.removeprefix("d").partition(".")
        if not text.startswith("d") or not ms.isdigit() or not skip.isdigit():
            raise ValueError
        until_ms, shown = int(ms), int(skip)
        if until_ms > MAX_EPOCH_MS or shown > 1_000_000:
            raise ValueError
        return until_ms, shown
    except ValueError:
        raise BadInput("query.cursor", "not a cursor this API gave out") from None


def sees_everything(caller: Principal) -> bool:
    return ANY in caller.scope.customers and ANY in caller.scope.regions


def _public_id(m: OutboxMessage) -> str:
    # The id is the routing dedup key, which holds the address: a URL's secret for webhooks.
    if m.channel_type == "email":
        return m.id
    return "sha256:" + hashlib.sha256(m.id.encode("utf-8")).hexdigest()[:32]


def _scrub(text: str | None, address: str, shown: str) -> str | None:
    return None if text is None else text.replace(address, shown)


def delivery_out(m: OutboxMessage) -> DeliveryOut:
    shown = m.address if m.channel_type == "email" else redact_url(m.address)
    return DeliveryOut(
        id=_public_id(m), created_ms=m.created_ms, sent_ms=m.sent_ms, updated_ms=m.updated_ms,
        channel=m.channel, channel_type=m.channel_type,
        recipient=_scrub(m.recipient, m.address, shown), address=shown,
        subject=_scrub(m.subject, m.address, shown) or "", state=m.state,
        attempts=m.attempts, last_error=_scrub(m.last_error, m.address, shown),
        detail=_scrub(m.detail, m.address, shown), sites=list(m.sites), severity=m.severity)


def _read_log(path: Path, limit: int, **filters: Any) -> list[OutboxMessage]:
    if not path.exists():  # no notifier has run: nothing sent (and no file made by reading)
        return []
    outbox = Outbox(path)
    try:
        return outbox.log(limit=limit, **filters)
    finally:
        outbox.close()


@router.get("/notify/deliveries")
async def deliveries(ctx: CtxDep, caller: Reader, state: StateQ | None = None,
                     site: SiteQ = None, since_ms: SinceQ = 0, limit: LimitQ = 100,
                     cursor: CursorQ = None) -> Page[DeliveryOut]:
    """The notifier's delivery log, newest first: who was told, on which channel, and what
    became of it (`state` pending / sent / failed, `last_error`). A caller sees the messages
    of their sites only (every site of a message in scope), fleet-wide ones with a scope of
    the whole fleet. `?site=` of a site the caller does not see is 404, as everywhere."""
    if site is not None:
        visible_site(ctx.fleet, caller, site)
    until_ms, shown = _decode_cursor(cursor)
    within: Collection[str] | None = None
    if not sees_everything(caller):
        within = caller.site_ids(ctx.fleet)
    messages = await run_in_threadpool(
        _read_log, ctx.settings.notify_db_path, limit, since_ms=since_ms, state=state,
        until_ms=until_ms, site=site, within_sites=within, fleet_wide=within is None,
        offset=shown)
    items = [delivery_out(m) for m in messages]
    next_cursor = None
    if len(messages) == limit:
        last_ms = messages[-1].created_ms
        same = sum(1 for m in messages if m.created_ms == last_ms)
        next_cursor = _encode_cursor(last_ms, same + (shown if last_ms == until_ms else 0))
    return Page(items=items, next_cursor=next_cursor)
