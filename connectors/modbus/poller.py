"""Poll battery unit controllers over Modbus TCP: every poll group of every device at its own
interval, one `TelemetrySample` per group poll, a `DeviceHealth` event whenever a device's
health changes, and setpoint writes for the control loop (executed for it by
connectors/modbus/commands.py, which also sees every sample through `on_sample` to enforce
the hard limits).

One sample per *group poll* (not one per device per instant): a group's values are read in one
hold of the connection at one instant, so the sample carries exactly them with that instant's
timestamp; merging groups would stamp old values with a new time. A profile without poll
groups has one group (`default`), so its samples are whole-device snapshots as before. Assets
with no point in a group are left out of that group's samples."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from types import CodeType

from prometheus_client import Counter, Histogram

from connectors import metrics
from connectors.modbus.blocks import BlockPlan
from connectors.modbus.codec import RawValue, shortest_float32, unpacker
from connectors.modbus.devices import DeviceConfig
from connectors.modbus.errors import (
    DeviceGarbled,
    DeviceRefused,
    DeviceUnavailable,
    ModbusError,
    SetpointInvalid,
)
from connectors.modbus.gateway import GatewayCoordinator, registers_of
from connectors.modbus.health import HealthTracker
from connectors.modbus.profile import (
    DEFAULT_GROUP,
    DeviceProfile,
    MappedAsset,
    Point,
    map_assets,
    read_blocks,
)
from connectors.modbus.setpoints import WriteResult, write_setpoint
from connectors.modbus.sunspec import SUNSPEC, discover, sunspec_profile
from connectors.refusals import (
    IMPOSSIBLE_TIMESTAMP,
    UNDECODABLE,
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
    asset_reading,
    telemetry_sample,
)
from contracts.fleet import Fleet

log = logging.getLogger(__name__)
SOURCE = "connectors.modbus"  # of its dead letters


@dataclass(frozen=True, slots=True)
class PointRead:
    """A point at its absolute address, with its scale factor's point and address if any.
    `value` is set for the plain numbers most points are (no scale factor, enum, bit field
    or text): their raw value → the published value (None: nothing to publish), prepared
    once — a connector decodes every point of every device each second."""

    point: Point
    address: int
    unpack: Callable[[Sequence[int]], RawValue]  # its registers → its raw value
    scale_factor: tuple[Point, int] | None = None
    value: Callable[[RawValue], TagValue | None] | None = None
    size: int = 1  # registers


# The general step of `DeviceMap.decode_blocks` for one point: (tags, asset id, point, raw).
Step = Callable[[dict[str, TagValue], str, "PointRead", RawValue], None]
# A group's unrolled decoder: (raw values by slot, the general step, asset_reading) → readings
Unrolled = Callable[[list[RawValue], Step, Callable[[str, dict[str, TagValue]], AssetReading]],
                    tuple[AssetReading, ...]]


@dataclass(frozen=True, slots=True)
class PollGroup:
    """Points of one device read together at one interval."""

    name: str
    interval_s: float
    blocks: tuple[tuple[int, int], ...]  # coalesced reads: (address, count ≤ 125)
    reads: tuple[tuple[str, tuple[PointRead, ...]], ...]  # by asset id
    plan: BlockPlan | None = field(default=None, compare=False, repr=False)
    unrolled: Unrolled | None = field(default=None, compare=False, repr=False)

    @classmethod
    def compiled(cls, name: str, interval_s: float, blocks: tuple[tuple[int, int], ...],
                 reads: tuple[tuple[str, tuple[PointRead, ...]], ...],
                 profile: DeviceProfile) -> PollGroup:
        """The group with its `BlockPlan` and the steps of `decode_blocks`, made once."""
        flat = [r for _, rs in reads for r in rs]
        plan = BlockPlan(blocks, flat, profile)
        return cls(name, interval_s, blocks, reads, plan, _unrolled(reads, plan.slots))


@dataclass(frozen=True)
class DeviceMap:
    """Everything needed to read, decode and write one device."""

    device: DeviceConfig
    profile: DeviceProfile
    assets: tuple[MappedAsset, ...]
    groups: tuple[PollGroup, ...]

    @classmethod
    def build(cls, device: DeviceConfig, fleet: Fleet,
              profiles: Mapping[str, DeviceProfile]) -> DeviceMap:
        if device.profile not in profiles:
            raise ValueError(f"device {device.id}: unknown profile {device.profile!r}")
        profile = profiles[device.profile]
        return cls.for_assets(device, profile, map_assets(profile, fleet.unit(device.asset)))

    @classmethod
    def for_assets(cls, device: DeviceConfig, profile: DeviceProfile,
                   assets: tuple[MappedAsset, ...]) -> DeviceMap:
        profile.check()
        unknown = sorted(set(device.poll_groups) - set(profile.poll_groups))
        if unknown:
            raise ValueError(f"device {device.id}: poll_groups {unknown} are not groups of "
                             f"profile {profile.id} ({sorted(profile.poll_groups) or 'none'})")
        intervals = {DEFAULT_GROUP: device.poll_interval_s,
                     **profile.poll_groups, **device.poll_groups}
        groups = []
        for name, interval_s in intervals.items():
            reads = tuple(
                (a.asset_id, tuple(_point_read(profile, a, p) for p in
                                   profile.points.get(a.kind, ()) if p.poll_group == name))
                for a in assets)
            reads = tuple((asset_id, r) for asset_id, r in reads if r)
            if reads:
                groups.append(PollGroup.compiled(name, interval_s,
                                                 tuple(read_blocks(profile, assets, name)),
                                                 reads, profile))
        return cls(device, profile, assets, tuple(groups))

    def group(self, name: str = DEFAULT_GROUP) -> PollGroup:
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(f"device {self.device.id} has no poll group {name!r}")

    def decode(self, group: PollGroup, registers: Mapping[int, int],
               ts_ms: int) -> TelemetrySample:
        """The sample of one group poll (what `decode_poll` keeps)."""
        return self.decode_poll(group, registers, ts_ms)[0]

    def decode_poll(self, group: PollGroup, registers: Mapping[int, int],
                    ts_ms: int) -> tuple[TelemetrySample, list[Rejection]]:
        """One group poll's registers → its sample, and the values left out of it because
        they cannot be true (profile.py's module docstring). Never raises on any register
        contents."""
        profile = self.profile
        readings = []
        rejections: list[Rejection] = []
        for asset_id, reads in group.reads:
            tags: dict[str, TagValue] = {}
            for r in reads:
                words = [registers[a] for a in range(r.address, r.address + r.size)]
                raw = r.unpack(words)
                exponent = 0
                if r.value is not None:
                    value = r.value(raw)
                    if value is not None:
                        tags[r.point.tag] = value
                        continue
                    if raw == r.point.missing:
                        continue
                elif r.scale_factor is not None:
                    sf_point, sf_address = r.scale_factor
                    sf = profile.raw(sf_point, [registers[sf_address]])
                    if sf == sf_point.missing or not isinstance(sf, int):
                        continue  # no scale, no value
                    exponent = sf
                out = profile.publish_raw(r.point, raw, exponent)
                if isinstance(out, Refused):
                    rejections.append(self._rejection(asset_id, r, words, raw, exponent, out,
                                                      ts_ms))
                else:
                    tags.update(out)
            readings.append(AssetReading.model_construct(id=asset_id, tags=tags))
        # Built from the device map, valid by construction: no validation per poll.
        sample = TelemetrySample.model_construct(device_id=self.device.id, ts_ms=ts_ms,
                                                 assets=tuple(readings))
        return sample, rejections

    def decode_blocks(self, group: PollGroup, data: Sequence[bytes],
                      ts_ms: int) -> tuple[TelemetrySample, list[Rejection]]:
        """`decode_poll` from the group's blocks as read (their bytes, in `group.blocks`
        order): the same sample and rejections, at a fraction of the cost: the raw values
        by one struct per block (blocks.py), the common points by the group's unrolled
        decoder (`_unrolled`), the others by the general step below."""
        plan, unrolled = group.plan, group.unrolled
        if plan is None or unrolled is None:
            raise ValueError(f"poll group {group.name} is not compiled (PollGroup.compiled)")
        raws = plan.raws(data)
        profile = self.profile
        rejections: list[Rejection] = []

        def step(tags: dict[str, TagValue], asset_id: str, r: PointRead, raw: RawValue) -> None:
            if r.value is not None:
                number = r.value(raw)
                if number is not None:
                    tags[r.point.tag] = number
                    return
                if raw == r.point.missing:
                    return
            exponent = 0
            if r.scale_factor is not None:
                sf_point, sf_address = r.scale_factor
                sf = profile.raw(sf_point, [plan.word(data, sf_address)])
                if sf == sf_point.missing or not isinstance(sf, int):
                    return  # no scale, no value
                exponent = sf
            out = profile.publish_raw(r.point, raw, exponent)
            if isinstance(out, Refused):
                words = plan.words(data, r.address, r.size)
                rejections.append(self._rejection(asset_id, r, words, raw, exponent, out,
                                                  ts_ms))
            else:
                tags.update(out)

        readings = unrolled(raws, step, asset_reading)
        return telemetry_sample(self.device.id, ts_ms, readings), rejections

    def _rejection(self, asset_id: str, r: PointRead, words: list[int], raw: RawValue,
                   exponent: int, refused: Refused, ts_ms: int) -> Rejection:
        hexed = ", ".join(f"0x{w:04X}" for w in words)
        sf = ""
        if r.scale_factor is not None:
            sf = f", scale factor {r.scale_factor[0].tag} at {r.scale_factor[1]} = {exponent}"
        detail = (f"{asset_id}.{r.point.tag} ({r.point.datatype} at {r.address}: registers "
                  f"[{hexed}]{sf}): {refused.problem}")
        record: dict[str, object] = {
            "asset": asset_id, "tag": r.point.tag, "address": r.address,
            "datatype": r.point.datatype, "registers": words, "raw": repr(raw)[:200],
            "problem": refused.problem}
        if r.scale_factor is not None:
            record["scale_factor"] = exponent
        return Rejection(refused.reason, detail, record, ts_ms)

    def locate(self, tag: str, asset_id: str | None = None) -> tuple[MappedAsset, Point]:
        """The asset (the device's own unit by default) and its point `tag`."""
        asset_id = asset_id or self.assets[0].asset_id
        for asset in self.assets:
            if asset.asset_id == asset_id:
                point = self.profile.by_tag.get(asset.kind, {}).get(tag)
                if point is None:
                    raise SetpointInvalid(f"device {self.device.id}: {asset.kind} {asset_id} has "
                                          f"no point {tag!r} in profile {self.profile.id}")
                return asset, point
        raise SetpointInvalid(f"device {self.device.id} does not report asset {asset_id!r}")


def _unrolled(reads: tuple[tuple[str, tuple[PointRead, ...]], ...],
              slots: Sequence[int]) -> Unrolled:
    """A group's decoder as one generated function, its points unrolled: a point whose value
    is exact integer arithmetic (`_decimal_scale`) is decoded inline — a comparison with its
    "not available" value, a multiplication, a division, its range — another plain number by
    its prepared value function, and the rest (or a value with nothing to publish) by the
    general step. A loop over ~85 points with a call each cost more than the rest of a
    poll; `decode_poll` stays the oracle (tests/connectors)."""
    lines = ["def unrolled(raws, step, reading):", "    out = []"]
    names: dict[str, object] = {}
    slot = iter(slots)
    for a, (asset_id, rs) in enumerate(reads):
        names[f"A{a}"] = asset_id
        lines.append("    t = {}")
        for k, r in enumerate(rs):
            name = f"R{a}_{k}"
            names[name] = r
            raw = f"raws[{next(slot)}]"
            decimal = _decimal_scale(r.point) if r.value is not None else None
            missing = r.point.missing
            if r.value is None:
                lines.append(f"    step(t, A{a}, {name}, {raw})")
                continue
            if decimal is None or not (missing is None or type(missing) is int):
                names[f"V{a}_{k}"] = r.value  # its prepared value, then the step if None
                lines += [f"    v = {raw}", f"    n = V{a}_{k}(v)", "    if n is None:",
                          f"        step(t, A{a}, {name}, v)", "    else:",
                          f"        t[{r.point.tag!r}] = n"]
                continue
            factor, divisor = decimal
            bounds = [f"{float(r.point.min)!r} <= n" if r.point.min is not None else "",
                      f"n <= {float(r.point.max)!r}" if r.point.max is not None else ""]
            check = " and ".join(b for b in bounds if b) or "True"
            indent = "    "
            lines.append(f"    v = {raw}")
            if missing is not None:
                lines.append(f"    if v != {missing!r}:")
                indent = "        "
            lines += [f"{indent}n = v * {factor} / {divisor}",
                      f"{indent}if {check}:",
                      f"{indent}    t[{r.point.tag!r}] = n",
                      f"{indent}else:",
                      f"{indent}    step(t, A{a}, {name}, v)"]
        lines.append(f"    out.append(reading(A{a}, t))")
    lines.append("    return tuple(out)")
    exec(_compiled("\n".join(lines)), names)  # our own source, made from the device map
    function: Unrolled = names["unrolled"]  # type: ignore[assignment]
    return function


@lru_cache(maxsize=256)
def _compiled(source: str) -> CodeType:
    """Devices of one profile and layout share their decoder's source: compiled once (1,200
    compilations took a connector ~15 s to start)."""
    return compile(source, "<unrolled poll decoder>", "exec")


def _point_read(profile: DeviceProfile, asset: MappedAsset, point: Point) -> PointRead:
    sf = None
    if point.scale_factor is not None:
        sf_point = profile.by_tag[asset.kind][point.scale_factor]
        sf = (sf_point, asset.base + sf_point.offset)
    return PointRead(point, asset.base + point.offset,
                     unpacker(point.datatype, point.size, *profile.orders(point)), sf,
                     None if sf is not None else _plain_value(point), point.size)


def _plain_value(point: Point) -> Callable[[RawValue], TagValue | None] | None:
    """`DeviceProfile.publish_raw` for a plain number, prepared; None for other points.
    The prepared function answers None for nothing to publish: the "not available" value,
    or a value that cannot be true (which `publish_raw` then says why). It gives what
    `Point.scaled` gives, by cheaper ways where they are exact (`_decimal_scale`, a memo of
    float32 values)."""
    if point.datatype in ("string", "bitfield") or point.enum is not None \
            or not point.publish:
        return None
    tag_missing, scaled, isfinite = point.missing, point.scaled, math.isfinite
    low = -math.inf if point.min is None else point.min
    high = math.inf if point.max is None else point.max
    decimal = _decimal_scale(point)
    if decimal is not None:
        factor, divisor = decimal

        def exact(raw: RawValue) -> TagValue | None:
            if raw == tag_missing:
                return None
            number = raw * factor / divisor  # type: ignore[operator]
            return number if low <= number <= high else None

        return exact
    if point.datatype == "float32" and point.scale == 1 and point.value_offset == 0:
        memo: dict[RawValue, float] = {}  # physics moves slowly: raw values come again

        def float32(raw: RawValue) -> TagValue | None:
            if raw == tag_missing:
                return None
            number = memo.get(raw)
            if number is None:
                if len(memo) >= 1024:
                    memo.clear()
                number = memo[raw] = shortest_float32(raw)  # type: ignore[arg-type]
            return number if isfinite(number) and low <= number <= high else None

        return float32

    def value(raw: RawValue) -> TagValue | None:
        if tag_missing is not None and raw == tag_missing:
            return None
        number = scaled(raw)  # type: ignore[arg-type]
        return number if isfinite(number) and low <= number <= high else None

    return value


def _decimal_scale(point: Point) -> tuple[int, int] | None:
    """(factor, divisor) such that `raw * factor / divisor` is exactly `point.scaled(raw)`
    for every raw value of the point, or None. True for 16- and 32-bit integers scaled by a
    positive decimal of a few digits (0.1, 0.01, 2) with no offset: `scaled` rounds
    `raw * scale` to 12 significant digits, which recovers the decimal product exactly when it
    has at most 12 digits; integer arithmetic and one correctly rounded division give the
    same float directly."""
    return _decimal_factor(point.datatype, point.scale, point.value_offset)


@lru_cache(maxsize=256)
def _decimal_factor(datatype: str, scale: float, value_offset: float) -> tuple[int, int] | None:
    if datatype not in ("int16", "uint16", "int32", "uint32") or value_offset != 0 \
            or not scale > 0 or not math.isfinite(scale):
        return None
    exact = Decimal(repr(scale))
    exponent = exact.as_tuple().exponent
    digits = max(0, -exponent) if isinstance(exponent, int) else 99
    if digits > 9:
        return None
    factor, divisor = int(exact * 10 ** digits), 10 ** digits
    if factor * 2 ** 32 >= 10 ** 12:  # more than 12 digits: `scaled` rounds them away
        return None
    return factor, divisor


@dataclass(slots=True)
class _Poller:
    """One poll group of one device, as the connector polls it: its health and metrics."""

    map: DeviceMap
    group: PollGroup
    tracker: HealthTracker
    window: PollWindow  # the device's (shared by its groups' pollers)
    polls: Counter
    latency: Histogram
    errors: dict[str, Counter]
    busy: bool = False  # a poll under way (a round's)


class ModbusConnector:
    """The devices of a connector process, one `GatewayCoordinator` per host:port.

    A gateway's connection timeout is the longest of its devices' `timeout_s`, its pipeline
    the least of theirs; its reconnect backoff comes from the first of its devices in the list
    (they share the connection).

    Nothing a device answers stops a poller: an exception response, a timeout or a garbled
    answer is a failed poll (health degraded, then offline; a garbled answer is also a dead
    letter, reason `undecodable`); values that cannot be true are left out of the sample and
    dead-lettered (`impossible_value`), and the poll counts against the device's health; a
    sample whose time is impossible (this host's clock) is not published but dead-lettered
    (`impossible_timestamp`). `refusals` counts them per device and reason.

    A gateway that takes pipelined requests has its units polled in rounds (`_poll_rounds`:
    one task per gateway and interval, every unit's requests sent together at each instant,
    each answer handled as it arrives); one that takes a request at a time has a task per
    device and group (`_poll`), each read after the other's answer.

    `on_sample`, when set, sees every decoded sample before it is published (even one whose
    time is impossible: its values are the device's), in the poller's task — it must be
    cheap and must not block; what it raises is logged and the poller polls on. It is an
    attribute, not only an argument: the command executor, built on the connector, hooks its
    hard-limit guard in (connectors/modbus/commands.py)."""

    def __init__(
        self,
        maps: Sequence[DeviceMap] = (),
        *,
        sunspec: Sequence[DeviceConfig] = (),
        publish: Callable[[TelemetrySample], None],
        publish_health: Callable[[DeviceHealth], None] | None = None,
        publish_dead: Callable[[DeadLetter], None] | None = None,
        publish_stats: Callable[[DeviceStats], None] | None = None,
        on_sample: Callable[[DeviceMap, TelemetrySample], None] | None = None,
        clock: Callable[[], float] = time.time,
        sites: Mapping[str, str] | None = None,
        stats_every_s: float = 60.0,
    ) -> None:
        self._maps = {m.device.id: m for m in maps}
        self._sunspec = tuple(sunspec)
        self._configs = {d.id: d for d in (*(m.device for m in maps), *sunspec)}
        if len(self._configs) != len(maps) + len(sunspec):
            raise ValueError("device ids must be unique")
        self._publish = publish
        self._publish_health = publish_health
        self._publish_stats = publish_stats
        self.on_sample = on_sample
        self.refusals = Refusals(SOURCE, publish_dead)
        self._clock = clock
        self.gateways: dict[tuple[str, int], GatewayCoordinator] = {}
        self._sleeping: set[asyncio.Task[object]] = set()  # pollers between polls
        self._retries: set[asyncio.Future[None]] = set()  # polls of a round tried again
        for d in self._configs.values():
            key = (d.host, d.port)
            if key in self.gateways:
                continue
            sharing = [c for c in self._configs.values() if (c.host, c.port) == key]
            self.gateways[key] = GatewayCoordinator(
                d.host, d.port, timeout_s=max(c.timeout_s for c in sharing),
                backoff_s=d.backoff_s, backoff_max_s=d.backoff_max_s,
                pipeline=min(c.pipeline for c in sharing))
        sites = sites or {}
        self.health = {d.id: HealthTracker(d.id, window=d.health_window,
                                           offline_after=d.offline_after,
                                           latency_budget_s=d.latency_budget_s,
                                           site_id=sites.get(d.id), gateway=f"{d.host}:{d.port}")
                       for d in self._configs.values()}
        # Each device's poll figures, one `DeviceStats` per `stats_every_s` (contracts/comms.py)
        every_ms = max(1, round(stats_every_s * 1000))
        self.windows = {d.id: PollWindow(d.id, connector="modbus", site_id=sites.get(d.id),
                                         gateway=f"{d.host}:{d.port}", every_ms=every_ms)
                        for d in self._configs.values()}

    @classmethod
    def from_devices(cls, devices: Sequence[DeviceConfig], fleet: Fleet,
                     profiles: Mapping[str, DeviceProfile], *,
                     publish: Callable[[TelemetrySample], None],
                     publish_health: Callable[[DeviceHealth], None] | None = None,
                     publish_dead: Callable[[DeadLetter], None] | None = None,
                     publish_stats: Callable[[DeviceStats], None] | None = None,
                     on_sample: Callable[[DeviceMap, TelemetrySample], None] | None = None,
                     clock: Callable[[], float] = time.time,
                     stats_every_s: float = 60.0) -> ModbusConnector:
        """Devices with a profile are mapped now (a bad list fails at start); SunSpec devices
        once their models are discovered."""
        sunspec = [d for d in devices if d.profile == SUNSPEC]
        for d in sunspec:
            fleet.unit(d.asset)  # the asset must exist
        maps = [DeviceMap.build(d, fleet, profiles) for d in devices if d.profile != SUNSPEC]
        sites = {d.id: fleet.assets[fleet.unit(d.asset).id].site_id for d in devices}
        return cls(maps, sunspec=sunspec, publish=publish, publish_health=publish_health,
                   publish_dead=publish_dead, publish_stats=publish_stats,
                   on_sample=on_sample, clock=clock, sites=sites, stats_every_s=stats_every_s)

    @property
    def devices(self) -> tuple[DeviceConfig, ...]:
        """Every configured device, SunSpec ones included (mapped or not yet)."""
        return tuple(self._configs.values())

    def device_map(self, device_id: str) -> DeviceMap:
        if device_id not in self._maps:
            state = "not discovered yet" if device_id in self._configs else "unknown"
            raise SetpointInvalid(f"device {device_id!r} is {state}")
        return self._maps[device_id]

    def gateway(self, device: DeviceConfig) -> GatewayCoordinator:
        return self.gateways[(device.host, device.port)]

    async def write_setpoint(self, device_id: str, tag: str, value: TagValue, *,
                             asset_id: str | None = None) -> WriteResult:
        """Write a writable point and verify it by reading it back (see setpoints.py)."""
        m = self.device_map(device_id)
        return await write_setpoint(self.gateway(m.device), m, tag, value, asset_id=asset_id)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Poll until `stop` is set; the connections are closed on the way out."""
        stop = stop or asyncio.Event()
        try:
            async with asyncio.TaskGroup() as tasks:
                rounds: dict[tuple[tuple[str, int], int], list[_Poller]] = {}
                for m in self._maps.values():
                    gateway = self.gateway(m.device)
                    for group in m.groups:
                        if gateway.pipeline == 1:
                            tasks.create_task(self._poll(m, group, stop))
                        else:
                            interval_ms = max(1, round(group.interval_s * 1000))
                            rounds.setdefault(((m.device.host, m.device.port), interval_ms),
                                              []).append(self._poller(m, group))
                for (key, interval_ms), pollers in rounds.items():
                    tasks.create_task(self._poll_rounds(self.gateways[key], interval_ms,
                                                        pollers, stop))
                for device in self._sunspec:
                    tasks.create_task(self._run_sunspec(device, stop))
                tasks.create_task(self._wake_on(stop))
        finally:
            self.close()

    def close(self) -> None:
        for gateway in self.gateways.values():
            gateway.close()

    def _poller(self, m: DeviceMap, group: PollGroup) -> _Poller:
        device = m.device
        where = f"{device.host}:{device.port}"
        return _Poller(m, group, self.health[device.id], self.windows[device.id],
                       metrics.CONNECTOR_POLLS.labels("modbus", where),
                       metrics.CONNECTOR_POLL_SECONDS.labels("modbus", where),
                       {reason: metrics.CONNECTOR_POLL_ERRORS.labels("modbus", where, reason)
                        for reason in ("unavailable", "refused", "garbled", "undecodable")})

    async def _next_tick(self, interval_ms: int, stop: asyncio.Event) -> int | None:
        """Sleep until the next instant of the interval's grid and return it (None: `stop`
        is set). `stop` cancels the sleep (`_wake_on`: a wait for the stop event at every
        poll costs more than the poll's decoding)."""
        task = asyncio.current_task()
        assert task is not None
        now_ms = self._clock() * 1000
        ts_ms = (int(now_ms) // interval_ms + 1) * interval_ms
        if stop.is_set():
            return None
        self._sleeping.add(task)
        try:
            await asyncio.sleep((ts_ms - now_ms) / 1000)
        except asyncio.CancelledError:
            if stop.is_set() and task.uncancel() == 0:  # our wake-up, not another's
                return None
            raise
        finally:
            self._sleeping.discard(task)
        return ts_ms

    async def _poll(self, m: DeviceMap, group: PollGroup, stop: asyncio.Event) -> None:
        """Poll one group at its interval, on the interval's grid (`ts_ms` is the grid
        instant: devices polled at the same rate carry the same timestamps); a poll under way
        is finished when `stop` is set."""
        device, gateway = m.device, self.gateway(m.device)
        poller = self._poller(m, group)
        interval_ms = max(1, round(group.interval_s * 1000))
        while (ts_ms := await self._next_tick(interval_ms, stop)) is not None:
            started = time.monotonic()
            poller.polls.inc()
            outcome: list[bytes] | ModbusError
            try:
                outcome = await gateway.read_blocks(
                    device.unit_id, group.blocks, timeout_s=device.timeout_s,
                    retries=device.retries, backoff_s=device.backoff_s,
                    backoff_max_s=device.backoff_max_s,
                    on_retry=self._retried(poller, ts_ms))
            except ModbusError as exc:
                outcome = exc
            self._polled(poller, ts_ms, time.monotonic() - started, outcome)

    async def _poll_rounds(self, gateway: GatewayCoordinator, interval_ms: int,
                           pollers: Sequence[_Poller], stop: asyncio.Event) -> None:
        """Poll the groups of one interval of the devices behind one pipelining gateway, in
        rounds: at each instant of the grid one `poll_each` of them all, each answer handled
        as it comes (`_polled`) — no task and no future per poll. A device whose poll of the
        round before is not over yet (waiting for its answer or a retry) sits this one out,
        as a device polled alone would. Once `stop` is set, the polls under way are
        finished."""
        under_way = 0
        idle = asyncio.Event()
        idle.set()

        def answered(poller: _Poller, ts_ms: int, started: float
                     ) -> Callable[[list[bytes] | ModbusError], None]:
            def done(outcome: list[bytes] | ModbusError) -> None:
                device = poller.map.device
                if isinstance(outcome, ModbusError) and device.retries and not (
                        isinstance(outcome, DeviceRefused) and not outcome.transient):
                    # Tried again as `read_blocks` tries (retries after a backoff).
                    task = asyncio.ensure_future(self._retry(gateway, poller, ts_ms, started))
                    task.add_done_callback(lambda _: over(poller))
                    self._retries.add(task)
                    task.add_done_callback(self._retries.discard)
                    return
                try:
                    self._polled(poller, ts_ms, time.monotonic() - started, outcome)
                finally:
                    over(poller)
            return done

        def over(poller: _Poller) -> None:
            nonlocal under_way
            poller.busy = False
            under_way -= 1
            if under_way == 0:
                idle.set()

        try:
            while (ts_ms := await self._next_tick(interval_ms, stop)) is not None:
                started = time.monotonic()
                due = [p for p in pollers if not p.busy]
                for p in due:
                    p.busy = True
                under_way += len(due)
                if due:
                    idle.clear()
                    due[0].polls.inc(len(due))  # the gateway's counter, one for all
                try:
                    await gateway.poll_each([
                        (p.map.device.unit_id, p.group.blocks, p.map.device.timeout_s,
                         answered(p, ts_ms, started)) for p in due])
                except BaseException:  # cancelled before the round was sent: none is told
                    for p in due:
                        over(p)
                    raise
        finally:
            await idle.wait()

    async def _retry(self, gateway: GatewayCoordinator, poller: _Poller, ts_ms: int,
                     started: float) -> None:
        device = poller.map.device
        on_retry = self._retried(poller, ts_ms)
        outcome: list[bytes] | ModbusError
        try:
            await asyncio.sleep(min(device.backoff_s, device.backoff_max_s))
            on_retry()
            outcome = await gateway.read_blocks(
                device.unit_id, poller.group.blocks, timeout_s=device.timeout_s,
                retries=device.retries - 1, backoff_s=device.backoff_s * 2,
                backoff_max_s=device.backoff_max_s, on_retry=on_retry)
        except ModbusError as exc:
            outcome = exc
        self._polled(poller, ts_ms, time.monotonic() - started, outcome)

    def _retried(self, poller: _Poller, ts_ms: int) -> Callable[[], None]:
        """What a poll's retry tells: one more retry in the device's poll figures."""
        def retried() -> None:
            self._stats(poller.window.retried(ts_ms))
        return retried

    def _polled(self, poller: _Poller, ts_ms: int, latency_s: float,
                outcome: list[bytes] | ModbusError) -> None:
        """One poll's end: its sample published, its values refused, the device's health
        and poll figures told. Never raises: a bug of ours is logged, and the poller polls
        on."""
        try:
            window = poller.window
            self._stats(window.failed(ts_ms) if isinstance(outcome, ModbusError)
                        else window.answered(ts_ms, latency_s))
            self._handle(poller, ts_ms, latency_s, outcome)
        except Exception:
            log.exception("device %s: group %s: cannot handle the poll",
                          poller.map.device.id, poller.group.name)

    def _handle(self, poller: _Poller, ts_ms: int, latency_s: float,
                outcome: list[bytes] | ModbusError) -> None:
        m, group, tracker, errors = poller.map, poller.group, poller.tracker, poller.errors
        device = m.device
        if isinstance(outcome, DeviceUnavailable):
            errors["unavailable"].inc()
            self._health(tracker.failure(ts_ms, str(outcome),
                                         connection_down=outcome.connection_down))
            return
        if isinstance(outcome, DeviceRefused):
            errors["refused"].inc()
            self._health(tracker.failure(ts_ms, str(outcome), connection_down=False))
            return
        if isinstance(outcome, DeviceGarbled):
            errors["garbled"].inc()
            self._health(tracker.failure(ts_ms, str(outcome), connection_down=False))
            self.refusals.report(device.id, [Rejection(
                UNDECODABLE, str(outcome),
                {"blocks": group.blocks, "unit_id": device.unit_id, "answer": outcome.answer},
                ts_ms)])
            return
        if isinstance(outcome, ModbusError):
            raise outcome  # no other kind is raised by a read
        data = outcome
        poller.latency.observe(latency_s)
        try:
            sample, rejections = m.decode_blocks(group, data, ts_ms)
        except Exception as exc:  # a bug of ours, not the device's: say so, poll on
            errors["undecodable"].inc()
            log.exception("device %s: group %s: cannot decode the poll", device.id, group.name)
            self._health(tracker.failure(ts_ms, f"cannot decode: {exc!r}"[:200],
                                         connection_down=False))
            self.refusals.report(device.id, [Rejection(
                UNDECODABLE, f"group {group.name}: cannot decode ({exc!r})",
                {"registers": sorted(registers_of(group.blocks, data).items())}, ts_ms)])
            return
        self._health(tracker.success(ts_ms, latency_s, refused=[r.detail for r in rejections]))
        if rejections:
            self.refusals.report(device.id, rejections)
        if self.on_sample is not None:
            try:
                self.on_sample(m, sample)
            except Exception:  # a bug of ours: say so, poll on
                log.exception("device %s: group %s: on_sample failed", device.id, group.name)
        problem = device_time_problem(ts_ms)
        if problem is not None:  # this host's clock, not the device: a sample of no time
            self.refusals.report(device.id, [Rejection(
                IMPOSSIBLE_TIMESTAMP, f"group {group.name}: poll {problem} (this host's "
                "clock)", {"sample": sample.model_dump(mode="json")}, ts_ms)])
            return
        self._publish(sample)

    async def _run_sunspec(self, device: DeviceConfig, stop: asyncio.Event) -> None:
        """Discover the device's SunSpec models (again and again, backing off, until it
        answers), then poll them like a profiled device."""
        gateway, tracker = self.gateway(device), self.health[device.id]
        attempt = 0
        while True:
            try:
                found = await discover(gateway, device.unit_id, timeout_s=device.timeout_s)
                profile = sunspec_profile(found, f"{SUNSPEC}-{device.id}")
                m = DeviceMap.for_assets(device, profile, (MappedAsset(device.asset, "unit", 0),))
                break
            except (ModbusError, ValueError) as exc:  # ValueError: a map that makes no sense
                down = isinstance(exc, DeviceUnavailable) and exc.connection_down
                reason = str(exc) if isinstance(exc, ModbusError) else \
                    f"SunSpec map unusable: {exc}"
                self._health(tracker.failure(int(self._clock() * 1000), reason[:500],
                                             connection_down=down))
            wait_s = min(device.backoff_s * 2 ** attempt, device.backoff_max_s)
            attempt += 1
            if await _stopped(stop, wait_s):
                return
        log.info("device %s: SunSpec models %s at %d", device.id, found.model_ids, found.base)
        self._maps[device.id] = m
        async with asyncio.TaskGroup() as tasks:
            for group in m.groups:
                tasks.create_task(self._poll(m, group, stop))

    async def _wake_on(self, stop: asyncio.Event) -> None:
        """Once `stop` is set, cancel the sleep of every poller between polls."""
        await stop.wait()
        for task in list(self._sleeping):
            task.cancel()

    def _stats(self, stats: DeviceStats | None) -> None:
        if stats is not None and self._publish_stats is not None:
            self._publish_stats(stats)

    def _health(self, event: DeviceHealth | None) -> None:
        if event is None:
            return
        level = logging.INFO if event.state == "online" else logging.WARNING
        log.log(level, "device %s: %s (was %s): %s", event.device_id, event.state,
                event.previous, event.reason)
        if self._publish_health is not None:
            self._publish_health(event)


async def _stopped(stop: asyncio.Event, wait_s: float) -> bool:
    """Wait `wait_s` unless `stop` is set first; True when it is."""
    if stop.is_set():
        return True
    try:
        await asyncio.wait_for(stop.wait(), timeout=max(0.0, wait_s))
    except TimeoutError:
        return False
    return True
