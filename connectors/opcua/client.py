"""Subscribe to OPC UA servers and turn their data changes into `TelemetrySample`s.

One `EndpointCoordinator` per server connection owns connecting, subscribing, reconnecting
with backoff and the health of its devices, and turns every transport error into one of a
few errors of ours. What becomes a sample is decided by `SampleBuilder`, a plain class:

- the values of one device that arrive in the same publish cycle and carry the same
  timestamp (the source timestamp, else the server's, else the time of arrival) form one
  sample at that timestamp, in milliseconds;
- a node's value is taken only when its timestamp is newer than the last one taken from that
  node. A new subscription starts by repeating every node's current value; after a reconnect
  those repeats carry the timestamps already sent and are dropped. The builder outlives the
  connections, so this holds across reconnects and server restarts;
- a device with `snapshots: true` has each sample completed with the last good value of its
  other nodes (a node reporting a bad status or a refused value is left out until it is good
  again): a sample is then the device's whole state at that time, like a Modbus poll;
- a value that cannot be true (`convert`: not a number where one is due, not a number,
  string or boolean at all, not finite, outside the node's `min`..`max`, text with control
  characters) or stamped at an impossible time (outside 2000..2100, `DeviceMs`) is left out
  and dead-lettered (connectors/refusals.py); a refused time is not remembered as the node's
  last, so a clock that jumped to the far future does not block the values after it.

Health (`DeviceHealth`, connector "opcua"), published when a device's state changes:
online — session up, every mapped node monitored and reporting good values; degraded — session
up, but some nodes could not be monitored, report a bad/uncertain status or a refused value
(judged again at every publish cycle); offline — no session (unreachable, refused, lost).

Comms figures (`DeviceStats`, connector "opcua", one per device every `stats_every_s`, counted
by `contracts.comms.PollWindow` as the Modbus connector's are). A subscription has no polls:
the server sends changes when it has them, so a quiet device and a dead link look alike from
the data. What is counted instead is the session's liveness check — the read the coordinator
makes every `watchdog_s` (default 1 s) of the server's `Server_ServerStatus_State` node to
find a dead session (the check asyncua's own watchdog makes, taken over here so that it can
be timed; the library's is set to its longest interval):

- a "poll" is one such check; its latency is the read's round trip (request to answer, on
  this host's monotonic clock) — the server's and the network's responsiveness, not the age
  of the data, which the subscription's sampling and publishing intervals decide;
- a failed poll is a check that failed or timed out (`timeout_s`), which also ends the session
  as before (health offline, reason "connection lost"); while there is no session (the
  server unreachable, the coordinator waiting to reconnect or reconnecting) every check that
  falls due is a failed poll, so a dead endpoint shows a drop rate of 1, not no figures;
- a retry is one reconnect attempt (each attempt to open a session after a failed one or a
  lost one); the first connection of a run is not one, and no check counts while it is
  being made.

Every device of one session (same endpoint, security and user) therefore has the same
figures: what is measured is the session, not the device behind it. Unlike a Modbus poll, a
check carries no data, is one small request whatever the number of nodes, and runs at the
coordinator's pace, not at the devices' sampling intervals."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from asyncua import Client, ua
from asyncua.common.subscription import Subscription
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pydantic import ValidationError

from connectors import metrics
from connectors.opcua.config import NodeMapping, OpcUaDevice, parse_node_id
from connectors.refusals import (
    IMPOSSIBLE_TIMESTAMP,
    IMPOSSIBLE_VALUE,
    NOT_TEXT,
    Refusals,
    Refused,
    Rejection,
    device_time_problem,
)
from contracts.comms import PollWindow
from contracts.events import (
    AssetReading,
    DeadLetter,
    DeviceHealth,
    DeviceStats,
    TagValue,
    TelemetrySample,
)

log = logging.getLogger(__name__)
CONNECTOR = "opcua"
SOURCE = "connectors.opcua"  # of its dead letters
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
MS = dt.timedelta(milliseconds=1)
HealthState = Literal["online", "degraded", "offline"]
# asyncua's own watchdog reads the server's state every `watchdog_intervall` (at most every
# half session timeout: 30 min by default); the coordinator makes that check itself, timed.
LIBRARY_WATCHDOG_S = 3600.0


class OpcUaError(RuntimeError):
    """Connecting to or staying connected with an OPC UA endpoint failed; the message says
    what happened in words an operator can act on."""


class EndpointUnreachable(OpcUaError):
    """No answer: nothing listens, the network drops packets, or the server is starting."""


class AuthenticationRefused(OpcUaError):
    """The server refused the user name / password (or the identity token)."""


class SecurityRefused(OpcUaError):
    """The secure channel could not be set up: policy not offered, certificate refused."""


class ConnectionLost(OpcUaError):
    """An established session broke (server stopped, network gone, subscription expired)."""


_AUTH_CODES = {
    ua.StatusCodes.BadUserAccessDenied, ua.StatusCodes.BadIdentityTokenInvalid,
    ua.StatusCodes.BadIdentityTokenRejected, ua.StatusCodes.BadUserSignatureInvalid,
}
_SECURITY_CODES = {
    ua.StatusCodes.BadSecurityChecksFailed, ua.StatusCodes.BadSecurityPolicyRejected,
    ua.StatusCodes.BadSecurityModeRejected, ua.StatusCodes.BadCertificateInvalid,
    ua.StatusCodes.BadCertificateUntrusted, ua.StatusCodes.BadCertificateTimeInvalid,
    ua.StatusCodes.BadCertificateUriInvalid, ua.StatusCodes.BadCertificateUseNotAllowed,
    ua.StatusCodes.BadCertificateRevoked, ua.StatusCodes.BadApplicationSignatureInvalid,
    ua.StatusCodes.BadNonceInvalid,
}


def status_name(code: int) -> str:
    name: str = ua.StatusCode(code).name
    return name


def epoch_ms(when: dt.datetime) -> int:
    """OPC UA DateTime (UTC; naive means UTC) → integer ms since the epoch, exactly."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return (when - EPOCH) // MS


MAX_TEXT = 1000  # characters of a string value at most


def convert(value: Any, mapping: NodeMapping) -> TagValue | Refused:
    """A node's value as the canonical tag value (`value * scale + offset`), or why it cannot
    be one: not a number where one is due (the node is scaled or has a range), not a number,
    string or boolean at all (arrays, structures, null), not finite, outside the node's
    `min`..`max`, text with control characters or longer than MAX_TEXT."""
    number_due = mapping.scale != 1 or mapping.offset != 0 or mapping.min is not None \
        or mapping.max is not None
    if isinstance(value, bool | str) and number_due:
        return Refused(IMPOSSIBLE_VALUE, f"{_shown(value)} is not a number")
    if isinstance(value, str):
        if len(value) > MAX_TEXT:
            return Refused(IMPOSSIBLE_VALUE, f"text of {len(value)} characters (at most "
                                             f"{MAX_TEXT})")
        bad = NOT_TEXT.search(value)
        if bad is not None:
            what = "bytes that were not UTF-8" if bad.group() == "\ufffd" else \
                "control characters"
            return Refused(IMPOSSIBLE_VALUE, f"text {_shown(value)} holds {what}")
        return value
    if isinstance(value, bool):
        return value
    if not isinstance(value, int | float):
        return Refused(IMPOSSIBLE_VALUE, f"a value of type {type(value).__name__} is not a "
                                         "number, string or boolean")
    if isinstance(value, int) and not number_due:
        return value
    try:
        scaled = round(value * mapping.scale + mapping.offset, 6)
    except OverflowError:
        scaled = math.inf
    if not math.isfinite(value):
        return Refused(IMPOSSIBLE_VALUE, f"{_shown(value)} is not finite")
    if not math.isfinite(scaled):
        return Refused(IMPOSSIBLE_VALUE, f"{_shown(value)} × {mapping.scale:g} + "
                                         f"{mapping.offset:g} is not finite")
    if (mapping.min is not None and scaled < mapping.min) or \
            (mapping.max is not None and scaled > mapping.max):
        low = "…" if mapping.min is None else f"{mapping.min:g}"
        high = "…" if mapping.max is None else f"{mapping.max:g}"
        return Refused(IMPOSSIBLE_VALUE, f"{scaled!r} is outside [{low}, {high}]")
    return scaled


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "…"


@dataclass
class SampleBuilder:
    """Values of one publish cycle → samples (see the module docstring)."""

    devices: Sequence[OpcUaDevice]
    clock: Callable[[], float] = time.time
    last_ms: dict[tuple[str, str], int] = field(default_factory=dict)  # (device, node) → ms
    repeats_dropped: int = 0
    unusable: dict[tuple[str, str], str] = field(default_factory=dict)  # node → why not taken
    _pending: dict[tuple[str, int], dict[str, dict[str, TagValue]]] = field(
        default_factory=dict)
    # snapshot devices: the last good value of every node, by device, asset and tag; the
    # nodes turned bad since the last flush, by (device, ms)
    _held: dict[str, dict[str, dict[str, TagValue]]] = field(default_factory=dict)
    _gone: dict[tuple[str, int], list[NodeMapping]] = field(default_factory=dict)
    # values refused since the last flush, by device (`take_refused`)
    _refused: dict[str, list[Rejection]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._maps = {(d.id, key): node for d in self.devices for key, node in d.nodes.items()}
        self._snapshots = {d.id for d in self.devices if d.snapshots}

    def add(self, device_id: str, node_key: str, data: ua.DataValue) -> None:
        """One data change of one node (its DataValue as the server sent it). Never raises:
        what cannot be taken is left out (`unusable`) or refused (`take_refused`)."""
        key = (device_id, node_key)
        mapping = self._maps[key]
        stamp = data.SourceTimestamp or data.ServerTimestamp
        ts_ms = epoch_ms(stamp) if stamp is not None else int(self.clock() * 1000)
        problem = device_time_problem(ts_ms)
        if problem is not None:  # a clock reset to its epoch, or garbage: not a time
            which = "source" if data.SourceTimestamp else "server" if stamp else "arrival"
            self._refuse(device_id, node_key, mapping, Refused(
                IMPOSSIBLE_TIMESTAMP, f"{which} {problem}"), data, ts_ms)
            return  # and not remembered: a far-future time would block every later value
        last = self.last_ms.get(key)
        if last is not None and ts_ms <= last:
            self.repeats_dropped += 1
            return
        status = data.StatusCode_
        if status is not None and not status.is_good():
            self.unusable[key] = status.name
            self.last_ms[key] = ts_ms
            if device_id in self._snapshots:
                self._gone.setdefault((device_id, ts_ms), []).append(mapping)
            return
        value = convert(data.Value.Value if data.Value is not None else None, mapping)
        self.last_ms[key] = ts_ms
        if isinstance(value, Refused):
            self._refuse(device_id, node_key, mapping, value, data, ts_ms)
            if device_id in self._snapshots:  # its last good value is no longer its value
                self._gone.setdefault((device_id, ts_ms), []).append(mapping)
            return
        self.unusable.pop(key, None)
        assets = self._pending.setdefault((device_id, ts_ms), {})
        assets.setdefault(mapping.asset, {})[mapping.tag] = value

    def _refuse(self, device_id: str, node_key: str, mapping: NodeMapping, refused: Refused,
                data: ua.DataValue, ts_ms: int) -> None:
        self.unusable[(device_id, node_key)] = refused.problem
        value = data.Value.Value if data.Value is not None else None
        detail = f"{mapping.asset}.{mapping.tag} (node {node_key}): {refused.problem}"
        record: dict[str, object] = {
            "asset": mapping.asset, "tag": mapping.tag, "node": node_key,
            "value": _shown(value), "type": type(value).__name__,
            "source_timestamp": _iso(data.SourceTimestamp),
            "server_timestamp": _iso(data.ServerTimestamp), "problem": refused.problem}
        self._refused.setdefault(device_id, []).append(
            Rejection(refused.reason, detail, record, ts_ms))

    def take_refused(self, device_id: str | None = None) -> dict[str, list[Rejection]]:
        """The values refused since the last call (of one device, or all), by device."""
        if device_id is None:
            out, self._refused = self._refused, {}
            return out
        refused = self._refused.pop(device_id, None)
        return {} if refused is None else {device_id: refused}

    def flush(self, device_id: str | None = None) -> list[TelemetrySample]:
        """The samples of the values added since the last flush (of one device, or all)."""
        keys = sorted(k for k in {*self._pending, *self._gone}
                      if device_id is None or k[0] == device_id)
        out = []
        for key in keys:  # a device's in time order
            assets = self._pending.pop(key, {})
            if key[0] in self._snapshots:
                held = self._held.setdefault(key[0], {})
                for gone in self._gone.pop(key, ()):
                    held.get(gone.asset, {}).pop(gone.tag, None)
                if not assets:
                    continue  # only nodes gone bad: no new value, no sample
                for asset, tags in assets.items():
                    held.setdefault(asset, {}).update(tags)
                assets = {asset: dict(tags) for asset, tags in held.items() if tags}
            if not assets:
                continue
            try:
                out.append(TelemetrySample(
                    device_id=key[0], device_type=None, ts_ms=key[1],
                    assets=tuple(AssetReading(id=a, tags=tags) for a, tags in assets.items())))
            except ValidationError as exc:  # checked value by value; never expected here
                self._refused.setdefault(key[0], []).append(Rejection(
                    IMPOSSIBLE_VALUE, f"sample at {key[1]} refused: {exc.errors()[0]['msg']}",
                    {"assets": repr(assets)[:2000]}, key[1]))
        return out

    def unusable_nodes(self, device_id: str) -> list[str]:
        return [f"{node} ({why})" for (dev, node), why in self.unusable.items()
                if dev == device_id]


def _iso(when: dt.datetime | None) -> str | None:
    return None if when is None else when.isoformat()


@dataclass
class HealthTracker:
    """A device's health as this connector sees it; an event only when the state changes."""

    device_id: str
    clock: Callable[[], float] = time.time
    state: HealthState | None = None
    reason: str = ""
    gateway: str | None = None  # the endpoint's host:port, told in its events

    def update(self, state: HealthState, reason: str = "",
               failures: int = 0) -> DeviceHealth | None:
        if state == self.state:
            self.reason = reason
            return None
        event = DeviceHealth(device_id=self.device_id, connector=CONNECTOR, state=state,
                             previous=self.state, ts_ms=int(self.clock() * 1000), reason=reason,
                             consecutive_failures=failures, gateway=self.gateway)
        self.state, self.reason = state, reason
        return event


class _CycleSubscription(Subscription):  # type: ignore[misc]
    """A subscription that says when a publish response has been handed over whole, so the
    values of one publish cycle can leave together."""

    def __init__(self, server: Any, params: ua.CreateSubscriptionParameters, handler: Any,
                 cycle_done: Callable[[], None]) -> None:
        super().__init__(server, params, handler)
        self._cycle_done = cycle_done

    async def publish_callback(self, publish_result: ua.PublishResult) -> None:
        try:
            await super().publish_callback(publish_result)
        finally:
            self._cycle_done()


class _DeviceHandler:
    """asyncua subscription handler of one device: data changes go to the builder."""

    def __init__(self, coordinator: EndpointCoordinator, device: OpcUaDevice,
                 keys: dict[ua.NodeId, str]) -> None:
        self.coordinator = coordinator
        self.device = device
        self.keys = keys

    def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
        key = self.keys.get(node.nodeid)
        if key is not None:
            self.coordinator.builder.add(self.device.id, key, data.monitored_item.Value)

    def status_change_notification(self, status: ua.StatusChangeNotification) -> None:
        code = status.Status
        if not code.is_good():
            self.coordinator.subscription_lost(f"subscription of {self.device.id} ended "
                                               f"({code.name})")


@dataclass(frozen=True)
class Backoff:
    """Delay before the n-th reconnect attempt in a row: first, first*2, … up to `most`."""

    first_s: float = 0.5
    most_s: float = 30.0

    def delay(self, failures: int) -> float:
        return float(min(self.most_s, self.first_s * 2 ** max(0, failures - 1)))


DEFAULT_BACKOFF = Backoff()


class EndpointCoordinator:
    """One client session with one server for the devices it serves (same endpoint, same
    security and credentials): connect, subscribe, publish samples and health, reconnect."""

    def __init__(
        self,
        devices: Sequence[OpcUaDevice],
        *,
        password: str | None = None,
        on_sample: Callable[[TelemetrySample], None],
        on_health: Callable[[DeviceHealth], None],
        on_dead: Callable[[DeadLetter], None] | None = None,
        on_stats: Callable[[DeviceStats], None] | None = None,
        clock: Callable[[], float] = time.time,
        backoff: Backoff = DEFAULT_BACKOFF,
        watchdog_s: float = 1.0,
        stats_every_s: float = 60.0,
        sites: Mapping[str, str] | None = None,
    ) -> None:
        """`watchdog_s`: seconds between liveness checks of the session; `stats_every_s`:
        the length of a comms-figures window; `sites`: device id → site id, told in those
        windows (a device not in it: None, placed by the fleet as its health events are)."""
        if not devices:
            raise ValueError("a coordinator needs at least one device")
        if watchdog_s <= 0:
            raise ValueError("watchdog_s must be above 0")
        self.devices = tuple(devices)
        first = self.devices[0]
        self.endpoint = first.endpoint
        self.security = first.security
        self.username = first.username
        self.password = password
        self.timeout_s = first.timeout_s
        self.on_sample = on_sample
        self.on_health = on_health
        self.on_stats = on_stats
        self.clock = clock
        self.backoff = backoff
        self.watchdog_s = watchdog_s
        self.builder = SampleBuilder(self.devices, clock)
        self.refusals = Refusals(SOURCE, on_dead)
        self._up = False  # a session is up: health follows the nodes' values
        url = urlsplit(self.endpoint)
        gateway = f"opc.tcp://{url.netloc.rpartition('@')[2]}{url.path}"  # no user in it
        self.health = {d.id: HealthTracker(d.id, clock, gateway=gateway) for d in self.devices}
        every_ms = max(1, round(stats_every_s * 1000))
        sites = sites or {}
        self.windows = {d.id: PollWindow(d.id, connector=CONNECTOR, site_id=sites.get(d.id),
                                         gateway=gateway, every_ms=every_ms)
                        for d in self.devices}
        self._session: Client | None = None  # connected: the liveness check reads through it
        self._attempted = False  # the run's first connection attempt is over
        self.last_error: OpcUaError | None = None  # of the last attempt; None once connected
        self.sessions = 0  # sessions established (1 + the reconnects)
        self._refused: dict[str, list[str]] = {}  # device → nodes not monitored, with why
        self._lost: asyncio.Event | None = None
        self._lost_reason = ""
        self._where = urlsplit(self.endpoint).netloc.rpartition("@")[2]  # host:port, no user

    # -- the loop ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Stay subscribed until `stop` is set, reconnecting with backoff; the session
        checked every `watchdog_s` meanwhile."""
        checks = asyncio.create_task(self._check_session(stop))
        try:
            await self._stay_subscribed(stop)
        finally:
            checks.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await checks

    async def _stay_subscribed(self, stop: asyncio.Event) -> None:
        failures = 0
        self._attempted = False
        while not stop.is_set():
            client = Client(self.endpoint, timeout=self.timeout_s,
                            watchdog_intervall=LIBRARY_WATCHDOG_S)
            self._lost = asyncio.Event()
            connected = False
            if self._attempted:  # a reconnect attempt: a retry in the comms figures
                self._count("retried", int(self.clock() * 1000))
            try:
                await self._connect(client)
                connected = True
                self._session = client
                failures = 0
                self.last_error = None
                self.sessions += 1
                await self._subscribe(client)
                self._report_health()
                self._up = True
                await self._watch(client, stop)
            except OpcUaError as exc:
                failures += 1
                metrics.CONNECTOR_POLL_ERRORS.labels("opcua", self._where, "session").inc()
                if str(exc) != str(self.last_error):
                    log.warning("%s", exc)
                self.last_error = exc
                self._set_all("offline", str(exc), failures)
            except Exception as exc:  # a client library failure: logged whole, retried
                failures += 1
                metrics.CONNECTOR_POLL_ERRORS.labels("opcua", self._where, "session").inc()
                log.exception("%s: unexpected error", self.endpoint)
                self.last_error = OpcUaError(f"{self.endpoint}: unexpected error "
                                             f"({_describe(exc)})")
                self._set_all("offline", str(self.last_error), failures)
            finally:
                self._up = False
                self._session = None
                self._attempted = True
                self._flush()
                await self._close(client, connected)
            if not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.backoff.delay(failures))

    def subscription_lost(self, reason: str) -> None:
        self._lost_reason = reason
        if self._lost is not None:
            self._lost.set()

    async def _check_session(self, stop: asyncio.Event) -> None:
        """The liveness check (module docstring): every `watchdog_s`, read the server's state
        through the session and count the outcome in every device's comms figures. A check
        that fails ends the session, as asyncua's watchdog did; with no session, a check
        that falls due fails (except while the run's first connection is being made)."""
        node = ua.NodeId(ua.ObjectIds.Server_ServerStatus_State)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.watchdog_s)
            if stop.is_set():
                return
            ts_ms = int(self.clock() * 1000)
            client = self._session
            if client is None:
                if self._attempted:
                    self._count("failed", ts_ms)
                continue
            started = time.monotonic()
            try:
                await asyncio.wait_for(client.get_node(node).read_value(), self.timeout_s)
            except Exception as exc:  # the session broke, or the server did not answer
                if stop.is_set():
                    return  # the session closed under the check: no failure of the link
                self._count("failed", ts_ms)
                if client is self._session:
                    self.subscription_lost(f"connection lost ({_describe(exc)})")
            else:
                latency_s = time.monotonic() - started
                self._count("answered", ts_ms, latency_s)

    def _count(self, outcome: Literal["answered", "failed", "retried"], ts_ms: int,
               latency_s: float = 0.0) -> None:
        """One check's outcome (or a reconnect attempt) in each device's window; a window it
        closes is published. Never raises."""
        for window in self.windows.values():
            try:
                stats = window.answered(ts_ms, latency_s) if outcome == "answered" \
                    else window.failed(ts_ms) if outcome == "failed" else window.retried(ts_ms)
                if stats is not None and self.on_stats is not None:
                    self.on_stats(stats)
            except Exception:
                log.exception("%s: cannot count a liveness check", self.endpoint)

    async def _watch(self, client: Client, stop: asyncio.Event) -> None:
        """Return when `stop` is set; raise `ConnectionLost` when the session breaks."""
        assert self._lost is not None
        while not stop.is_set():
            try:
                await client.check_connection()
            except Exception as exc:  # the watchdog's or the publish loop's failure
                raise ConnectionLost(f"{self.endpoint}: connection lost "
                                     f"({_describe(exc)})") from exc
            if self._lost.is_set():
                raise ConnectionLost(f"{self.endpoint}: {self._lost_reason}")
            self._report_health()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), min(0.2, self.watchdog_s))

    # -- connecting ----------------------------------------------------------------------

    async def _connect(self, client: Client) -> None:
        if self.username is not None:
            client.set_user(self.username)
            client.set_password(self.password or "")
        try:
            if self.security.policy == "Basic256Sha256":
                await self._set_security(client)
            await client.connect()
        except OpcUaError:
            raise
        except ua.UaStatusCodeError as exc:
            raise self._status_error(exc) from exc
        except (OSError, TimeoutError) as exc:
            raise EndpointUnreachable(f"{self.endpoint}: not reachable "
                                      f"({_describe(exc)})") from exc
        except ua.UaError as exc:  # e.g. no endpoint with our policy and mode
            wanted = _endpoint_kind(_POLICY_URIS[self.security.policy],
                                    self.security.message_mode)
            offered = await self._offered()
            if offered is not None and wanted not in offered:
                raise SecurityRefused(
                    f"{self.endpoint}: the server offers no endpoint with security {wanted} "
                    f"(it offers {', '.join(offered)}): check security in the device list"
                ) from exc
            raise OpcUaError(f"{self.endpoint}: connection refused ({_describe(exc)})") from exc

    async def _set_security(self, client: Client) -> None:
        sec = self.security
        assert sec.client_certificate is not None and sec.client_private_key is not None
        uri = _application_uri(sec.client_certificate.read_bytes())
        if uri:  # servers check that the client's application URI is its certificate's
            client.application_uri = uri
        mode = ua.MessageSecurityMode.Sign if sec.message_mode == "Sign" \
            else ua.MessageSecurityMode.SignAndEncrypt
        # The server's certificate is taken from its endpoint list, then checked against the
        # pinned one: a wrong pin is named as such (not a timeout of undecryptable messages).
        await client.set_security(SecurityPolicyBasic256Sha256,
                                  certificate=str(sec.client_certificate),
                                  private_key=str(sec.client_private_key), mode=mode)
        if sec.server_certificate is not None:
            pinned = _der(sec.server_certificate.read_bytes())
            if client.security_policy.peer_certificate != pinned:
                raise SecurityRefused(f"{self.endpoint}: the server's certificate is not the "
                                      f"pinned one ({sec.server_certificate})")

    async def _offered(self) -> list[str] | None:
        """The endpoints (policy/mode) the server offers; None when it cannot be asked."""
        probe = Client(self.endpoint, timeout=self.timeout_s)
        try:
            endpoints = await probe.connect_and_get_server_endpoints()
        except Exception:
            return None
        return list(dict.fromkeys(_endpoint_kind(e.SecurityPolicyUri, e.SecurityMode.name)
                                  for e in endpoints))

    def _status_error(self, exc: ua.UaStatusCodeError) -> OpcUaError:
        code = exc.code
        name = status_name(code)
        if code in _AUTH_CODES:
            who = f"user {self.username!r}" if self.username else "anonymous login"
            return AuthenticationRefused(f"{self.endpoint}: {who} refused by the server "
                                         f"({name}): check the user name and password")
        if code in _SECURITY_CODES:
            return SecurityRefused(f"{self.endpoint}: secure channel refused by the server "
                                   f"({name}): check the certificates and the security policy")
        return OpcUaError(f"{self.endpoint}: connection refused ({name})")

    # -- subscribing ---------------------------------------------------------------------

    async def _subscribe(self, client: Client) -> None:
        try:
            namespaces: list[str] = await client.get_namespace_array()
        except (OSError, TimeoutError, ua.UaError) as exc:
            raise ConnectionLost(f"{self.endpoint}: connection lost while subscribing "
                                 f"({_describe(exc)})") from exc
        self._refused = {}
        for device in self.devices:
            keys, refused = _resolve(device, namespaces)
            handler = _DeviceHandler(self, device, keys)
            params = ua.CreateSubscriptionParameters(
                RequestedPublishingInterval=device.publishing_ms,
                RequestedLifetimeCount=10000,
                RequestedMaxKeepAliveCount=client.get_keepalive_count(device.publishing_ms),
                MaxNotificationsPerPublish=0,
                PublishingEnabled=True,
                Priority=0)
            sub = _CycleSubscription(client.uaclient, params, handler,
                                     functools.partial(self._flush, device.id))
            try:
                results = await sub.init()
                revised = client.get_subscription_revised_params(params, results)
                if revised:
                    await sub.update(revised)
                by_interval: dict[float, list[ua.NodeId]] = {}
                for node_id, key in keys.items():
                    by_interval.setdefault(device.sampling_ms(device.nodes[key]),
                                           []).append(node_id)
                for interval, node_ids in by_interval.items():
                    queue = 1 if interval == 0 else max(1, min(100, math.ceil(
                        device.publishing_ms / interval)))
                    ids = await sub.subscribe_data_change(
                        [client.get_node(n) for n in node_ids], queuesize=queue,
                        sampling_interval=interval)
                    refused += [f"{keys[n]} ({result.name})" for n, result
                                in zip(node_ids, ids, strict=True)
                                if isinstance(result, ua.StatusCode)]
            except ua.UaStatusCodeError as exc:
                raise OpcUaError(f"{self.endpoint}: subscription of {device.id} refused "
                                 f"({status_name(exc.code)})") from exc
            except (OSError, TimeoutError, ua.UaError) as exc:
                raise ConnectionLost(f"{self.endpoint}: connection lost while subscribing "
                                     f"({_describe(exc)})") from exc
            if refused:
                log.warning("%s: %s: %d of %d nodes not monitored: %s", self.endpoint,
                            device.id, len(refused), len(device.nodes), ", ".join(refused))
            self._refused[device.id] = refused

    # -- output --------------------------------------------------------------------------

    def _flush(self, device_id: str | None = None) -> None:
        """Publish what the builder holds; never raises (it runs in asyncua's publish
        callback)."""
        try:
            samples = self.builder.flush(device_id)
            if samples:  # a publish cycle: the subscription's equivalent of a poll
                metrics.CONNECTOR_POLLS.labels("opcua", self._where).inc()
            for sample in samples:
                self.on_sample(sample)
            for device, rejections in self.builder.take_refused(device_id).items():
                self.refusals.report(device, rejections)
            if self._up:  # a node turned bad, or good again: the device's health follows
                self._report_health([d for d in self.devices
                                     if device_id is None or d.id == device_id])
        except Exception:
            log.exception("%s: cannot publish a publish cycle's samples", self.endpoint)

    def _report_health(self, devices: Sequence[OpcUaDevice] | None = None) -> None:
        for device in self.devices if devices is None else devices:
            problems = self._refused.get(device.id, []) + self.builder.unusable_nodes(device.id)
            if problems:
                reason = (f"{len(problems)} of {len(device.nodes)} nodes without good values: "
                          + ", ".join(problems[:3]) + (", …" if len(problems) > 3 else ""))
                self._emit(device.id, "degraded", reason, 0)
            else:
                self._emit(device.id, "online", "", 0)

    def _set_all(self, state: HealthState, reason: str, failures: int) -> None:
        for device in self.devices:
            self._emit(device.id, state, reason, failures)

    def _emit(self, device_id: str, state: HealthState, reason: str, failures: int) -> None:
        event = self.health[device_id].update(state, reason, failures)
        if event is not None:
            log.info("%s: %s%s", device_id, state, f" ({reason})" if reason else "")
            self.on_health(event)

    async def _close(self, client: Client, connected: bool) -> None:
        if not connected:
            with contextlib.suppress(Exception):
                client.disconnect_socket()
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.disconnect(), self.timeout_s)


def _resolve(device: OpcUaDevice, namespaces: list[str]) -> tuple[dict[ua.NodeId, str],
                                                                   list[str]]:
    """The device's node ids as the server knows them (namespace URIs → indexes), and the
    nodes that cannot be (their namespace is not on the server)."""
    keys: dict[ua.NodeId, str] = {}
    refused: list[str] = []
    for key in device.nodes:
        node_id = parse_node_id(key)
        uri = getattr(node_id, "NamespaceUri", None)
        if uri:
            if uri not in namespaces:
                refused.append(f"{key} (namespace not on the server)")
                continue
            node_id = ua.NodeId(node_id.Identifier, namespaces.index(uri), node_id.NodeIdType)
        keys[node_id] = key
    return keys, refused


_POLICY_URIS = {"none": "http://opcfoundation.org/UA/SecurityPolicy#None",
                "Basic256Sha256": SecurityPolicyBasic256Sha256.URI}


def _endpoint_kind(policy_uri: str, mode: str) -> str:
    """`Basic256Sha256/SignAndEncrypt`, `None/None`."""
    return f"{policy_uri.rpartition('#')[2]}/{mode.rstrip('_')}"


def _der(certificate: bytes) -> bytes:
    if certificate.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(certificate).public_bytes(
            serialization.Encoding.DER)
    return certificate


def _application_uri(certificate: bytes) -> str | None:
    """The application URI in a certificate's subject alternative name (DER or PEM)."""
    try:
        cert = x509.load_der_x509_certificate(_der(certificate))
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except (ValueError, x509.ExtensionNotFound):
        return None
    uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ua.UaStatusCodeError):
        return status_name(exc.code)
    text = str(exc) or type(exc).__name__
    return text if len(text) < 200 else text[:200] + "…"


def group_by_connection(devices: Iterable[OpcUaDevice]) -> list[list[OpcUaDevice]]:
    """Devices that share endpoint, security and user share one session."""
    groups: dict[tuple[str, str, str | None, str | None], list[OpcUaDevice]] = {}
    for d in devices:
        key = (d.endpoint, d.security.model_dump_json(), d.username, d.password_env)
        groups.setdefault(key, []).append(d)
    return list(groups.values())
