"""Serve a simulated fleet: one Modbus TCP gateway per site (one unit id per battery unit) —
or one site over OPC UA (infra/sim/opcua_server.py) —, the physics ticking underneath
(infra/sim/model.py), random faults (infra/sim/faults.py) and the tickets they cause
(infra/sim/tickets.py, sent by infra/sim/ticket_sender.py), and a small HTTP control API to
inject and clear faults and to pin tags to values.

A unit whose communication drops stops answering: requests to its Modbus unit id get no
response at all (the gateway keeps answering the other unit ids), as a dead controller
behind a gateway that does not report it; the connector sees timeouts. (pymodbus answers an
unknown unit id with exception 11, "gateway target device failed to respond", unless the
server ignores missing devices — which `serve` does.) Over OPC UA its nodes turn
`BadNoCommunication`.

Faults to inject (`Simulator.inject_fault`, POST /faults, `bessmon sim fault --kind`): a
`trip` of any asset; on battery units or sites `maintenance`, `derate`, `hvac_failure`,
`comms_drop`, and the conditions that put equipment at risk for a control loop to catch —
`protection_loss` (the controller's own protections are gone: alarm bit 4), `heat_leak`,
`overload`, `soc_runaway` (infra/sim/model.py). Each kind has its own slot: different kinds
stack, one of the same kind replaces the last; `clear_fault` ends them all. What the
equipment suffered is counted by the models (`Simulator.damage`, GET /damage).

The watchdog: a unit's is armed by the first write of its `heartbeat` register. When the
value has not changed for `watchdog_s` wall-clock seconds (the control loop is dead or cut
off; wall clock, so it behaves alike at any `speed`), the controller falls back to its safe
mode: control_mode STOP and alarm bit 3. When heartbeats change again the alarm clears, but
the unit stays stopped until the control loop writes control_mode again."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from connectors.modbus.devices import DeviceConfig, DeviceList, dump_devices
from connectors.modbus.profile import DeviceProfile, MappedAsset, Point, map_assets
from contracts.fleet import Fleet, Unit
from infra.ports import free_ports
from infra.sim.faults import FaultProcess, FaultRates
from infra.sim.model import (
    CONDITIONS,
    DAMAGE_KINDS,
    FAULT,
    HVAC_FAILURE_DERATE,
    MAINTENANCE,
    STOP,
    Climate,
    Fault,
    Limit,
    UnitModel,
)
from infra.sim.pipelined import PIPELINE, PipelinedModbusTcpServer
from infra.sim.sunspec import SUNSPEC_BASE, SUNSPEC_SIZE, sunspec_image
from infra.sim.tickets import TicketChange, TicketDesk, jira_delivery

if TYPE_CHECKING:
    from infra.sim.ticket_sender import WebhookSender

log = logging.getLogger(__name__)
IMAGE_SIZE = 1000  # holding registers per simulated controller

# What can go wrong: the random kinds of faults.py, and "trip" (injected on any asset).
FaultKind = Literal["trip", "inverter_trip", "block_isolation", "maintenance", "derate",
                    "hvac_failure", "comms_drop", "protection_loss", "heat_leak", "overload",
                    "soc_runaway"]
UNIT_KINDS = frozenset({"maintenance", "derate", "hvac_failure", "comms_drop", *CONDITIONS})
# Faults of one slot replace each other; different slots stack (a derated unit may trip).
_SLOT = {"trip": "fault", "inverter_trip": "fault", "block_isolation": "fault",
         "maintenance": "fault", "derate": "derate", "hvac_failure": "hvac_failure",
         "comms_drop": "comms_drop", **{kind: kind for kind in CONDITIONS}}


@dataclass(frozen=True)
class ActiveFault:
    id: int
    kind: str
    asset_id: str
    start_s: float
    end_s: float


class Simulator:
    """The fleet's physics and register images; no sockets (see `serve`).

    `sunspec` names units (or sites: all their units) whose controllers also expose a SunSpec
    map at 40000 (infra/sim/sunspec.py). Writes to a unit's writable points (the profile's
    `writable: true`) reach its model, which clamps them like a controller would; writes to
    any other register are refused with an "illegal data address" exception.

    `fault_rates`: random faults, maintenance windows and derates (None: a quiet fleet, only
    injected faults); `tickets`: the service desk told of every fault's start and end (its
    ticket changes are collected by `ticket_changes()`). Each tick applies the random faults
    that began since the last one, with their own start and end times: the same seed gives
    the same faults whatever the tick rate.

    `watchdog_s`: wall-clock seconds without a change of a unit's heartbeat before its
    controller stops the unit (see the module docstring)."""

    def __init__(
        self,
        fleet: Fleet,
        profiles: dict[str, DeviceProfile],
        *,
        seed: int = 0,
        speed: float = 1.0,
        clock: Callable[[], float] = time.time,
        sunspec: Iterable[str] = (),
        fault_rates: FaultRates | None = None,
        tickets: TicketDesk | None = None,
        watchdog_s: float = 10.0,
    ) -> None:
        if watchdog_s <= 0:
            raise ValueError("watchdog_s must be above 0")
        self.fleet = fleet
        self.watchdog_s = watchdog_s
        # Armed watchdogs: unit id → (heartbeat value, wall time it last changed).
        self.heartbeats: dict[str, tuple[int, float]] = {}
        self.speed = speed
        self._clock = clock
        self._wall0 = self._sim0 = clock()
        self._last_tick = self._sim0
        rng = random.Random(seed)
        self.fault_process = None if fault_rates is None else FaultProcess(
            fleet, self._sim0, fault_rates, seed=seed)
        self.tickets = tickets
        self.active: dict[tuple[str, str], ActiveFault] = {}  # by (slot, asset id)
        self.comms_down: dict[str, float] = {}  # unit id → until (simulation time)
        self._fault_ids = 0
        self._ticket_changes: list[TicketChange] = []
        self.models: dict[str, UnitModel] = {}
        self.maps: dict[str, tuple[DeviceProfile, tuple[MappedAsset, ...]]] = {}
        self.images: dict[str, list[int]] = {}
        self.plans: dict[str, list[_AssetPlan]] = {}  # how each unit's image is encoded
        self.encoded: dict[str, dict[int, tuple[float | str, int]]] = {}  # address → value
        self.overrides: dict[str, dict[str, float]] = {}
        self.texts: dict[str, dict[str, str]] = {}  # pinned text of string points
        self.modbus_ids: dict[str, int] = {}  # unit id behind its site's gateway
        for site in fleet.sites:
            climate = Climate(mean_c=rng.uniform(8.0, 24.0), swing_c=rng.uniform(3.5, 7.0))
            for k, unit in enumerate(site.units):
                profile = profiles[unit.device_profile or "bess-unit-v1"]
                self.models[unit.id] = UnitModel(unit, random.Random(rng.random()),
                                                 tz=site.tz, climate=climate)
                self.maps[unit.id] = (profile, map_assets(profile, unit))
                self.images[unit.id] = [0] * IMAGE_SIZE
                self.plans[unit.id] = _plan(profile, self.maps[unit.id][1])
                self.encoded[unit.id] = {}
                self.modbus_ids[unit.id] = k + 1
        self.sunspec_images: dict[str, list[int]] = {}
        for asset_id in sunspec:
            for model, unit_id in self._fault_targets(asset_id):
                if unit_id != model.unit.id:
                    raise ValueError(f"{asset_id}: SunSpec maps belong to units or sites")
                self.sunspec_images[unit_id] = [0] * SUNSPEC_SIZE
        self.tick()

    def now(self) -> float:
        """Simulation time, epoch seconds (runs `speed` times faster than the wall clock)."""
        return self._sim0 + (self._clock() - self._wall0) * self.speed

    def wall_ms(self, sim_s: float) -> int:
        """The wall-clock time (epoch ms) at which simulation time `sim_s` is reached."""
        return round((self._wall0 + (sim_s - self._sim0) / self.speed) * 1000)

    def tick(self) -> None:
        """Advance everything to now."""
        for _ in self.ticking():
            pass

    def ticking(self) -> Iterator[None]:
        """`tick` one site at a time: the server yields to its event loop between sites, so
        requests are answered while a large fleet moves (no pause of the whole tick)."""
        now = self.now()
        dt_s = max(0.0, now - self._last_tick)
        self._last_tick = now
        self._check_watchdogs()
        if self.fault_process is not None:
            for event in self.fault_process.due(now):
                self._start(event.kind, event.asset_id, event.start_s, event.end_s,
                            severity=event.severity, injected=False)
        self._end_due(now)
        for site in self.fleet.sites:
            for unit in site.units:
                model = self.models[unit.id]
                model.step(now, dt_s)
                self._encode(unit.id, model.readings(now))
            yield
        if self.tickets is not None:
            self._ticket_changes += self.tickets.due(now)

    def _check_watchdogs(self) -> None:
        """Stop the units whose armed watchdog ran out (only those armed are looked at)."""
        wall = self._clock()
        for unit_id, (_, changed_at) in self.heartbeats.items():
            model = self.models[unit_id]
            if not model.watchdog_tripped and wall - changed_at >= self.watchdog_s:
                model.watchdog_tripped = True
                model.control_mode = STOP
                log.warning("%s: no heartbeat change for %.1f s: watchdog tripped, unit "
                            "stopped until control_mode is written again", unit_id,
                            wall - changed_at)

    def heartbeat(self, unit_id: str, value: int) -> None:
        """A heartbeat write reached the unit: arm its watchdog (the first time) or, when the
        value changed, restart it and clear its alarm (the unit stays stopped)."""
        last = self.heartbeats.get(unit_id)
        if last is not None and last[0] == value:
            return  # the same value: the control loop is not proven alive
        self.heartbeats[unit_id] = (value, self._clock())
        model = self.models[unit_id]
        if model.watchdog_tripped:
            model.watchdog_tripped = False
            log.info("%s: heartbeats again; watchdog alarm cleared (the unit stays in mode "
                     "%d until control_mode is written)", unit_id, model.control_mode)

    def damage(self) -> dict[str, object]:
        """What the simulated equipment suffered: `units` (only those with any damage) →
        {"seconds": {kind: simulated seconds}, "events": {kind: entries}}, and `total`
        seconds and events by kind over the fleet (every kind, zeros included)."""
        units: dict[str, object] = {}
        seconds = dict.fromkeys(DAMAGE_KINDS, 0.0)
        events = dict.fromkeys(DAMAGE_KINDS, 0)
        for unit_id, model in self.models.items():
            if not model.damage and not model.damage_events:
                continue
            units[unit_id] = {"seconds": dict(model.damage), "events": dict(model.damage_events)}
            for kind, s in model.damage.items():
                seconds[kind] += s
            for kind, n in model.damage_events.items():
                events[kind] += n
        return {"units": units, "total": {"seconds": seconds, "events": events}}

    def ticket_changes(self) -> list[TicketChange]:
        """The ticket changes since the last call, oldest first."""
        changes, self._ticket_changes = self._ticket_changes, []
        return changes

    def silent(self, unit_id: str) -> bool:
        """True while the unit's communication is down."""
        return self.comms_down.get(unit_id, float("-inf")) > self.now()

    def _encode(self, unit_id: str, readings: dict[str, dict[str, float]]) -> None:
        """The readings into the unit's register image. A point whose value (and scale
        exponent) is what it holds already is not encoded again: most are not moving."""
        model = self.models[unit_id]
        image = self.images[unit_id]
        encoded = self.encoded[unit_id]
        overrides, texts = self.overrides, self.texts
        for asset, points in self.plans[unit_id]:
            values: Mapping[str, float | str] = readings[asset.asset_id]
            if asset.asset_id == unit_id or asset.asset_id in overrides \
                    or asset.asset_id in texts:
                values = {**values}
                if asset.asset_id == unit_id:
                    values |= model.controls()
                values |= overrides.get(asset.asset_id, {})
                values |= texts.get(asset.asset_id, {})
            for point, address, size, encode in points:
                value = values.get(point.tag)
                if value is None:
                    continue  # a tag the model does not know: left as it is
                held = (value, 0 if point.scale_factor is None else _exponent(point, values))
                if encoded.get(address) == held:
                    continue
                image[address:address + size] = encode(*held)
                encoded[address] = held
            if asset.asset_id == unit_id and unit_id in self.sunspec_images:
                temperature = model.temperature_c or 0.0  # set by readings()
                if model.unit.inverters:  # the first inverter's, pinned value included
                    first = model.unit.inverters[0].id
                    temperature = self.overrides.get(first, {}).get(
                        "temperature_c", readings[first]["temperature_c"])
                self.sunspec_images[unit_id] = sunspec_image(
                    unit_id, self.modbus_ids[unit_id], model.unit.rated_power_kw, values,
                    temperature)

    def _fault_targets(self, asset_id: str) -> list[tuple[UnitModel, str]]:
        """(unit model, faulted asset id) pairs: a site stands for all its units."""
        asset = self.fleet.assets.get(asset_id)
        if asset is None:
            raise KeyError(asset_id)
        if asset.kind == "site":
            return [(self.models[u], u) for u in asset.children]
        assert asset.unit_id is not None
        return [(self.models[asset.unit_id], asset_id)]

    def _start(self, kind: str, asset_id: str, start_s: float, end_s: float, *,
               severity: float = 0.5, injected: bool) -> bool:
        """Apply a fault from `start_s` to `end_s`. A random one is skipped when its asset is
        already affected the same way; an injected one replaces what is there. False when
        skipped."""
        targets = self._fault_targets(asset_id)
        if kind in UNIT_KINDS and any(key != model.unit.id for model, key in targets):
            raise ValueError(f"{kind} applies to battery units or sites, not {asset_id!r}")
        slot = _SLOT[kind]
        if not injected and any(self._busy(slot, model, key, start_s)
                                for model, key in targets):
            return False
        previous = self.active.get((slot, asset_id))
        if previous is not None:
            self._end((slot, asset_id), max(previous.start_s, min(start_s, previous.end_s)))
        for model, key in targets:
            if slot == "fault":
                model.faults[key] = Fault(MAINTENANCE if kind == "maintenance" else FAULT,
                                          end_s)
            elif slot == "derate":
                model.limits["derate"] = Limit(severity, end_s)
            elif slot == "hvac_failure":
                model.limits["hvac_failure"] = Limit(HVAC_FAILURE_DERATE, end_s)
            elif slot in CONDITIONS:
                model.start_condition(slot, end_s)
            else:
                self.comms_down[key] = end_s
        self._fault_ids += 1
        fault = ActiveFault(self._fault_ids, kind, asset_id, start_s, end_s)
        self.active[(slot, asset_id)] = fault
        if self.tickets is not None:
            self.tickets.fault_started(fault.id, kind, asset_id, start_s, end_s)
        log.info("%s %s on %s for %.0f simulated s", "injected" if injected else "random",
                 kind, asset_id, end_s - start_s)
        return True

    def _busy(self, slot: str, model: UnitModel, key: str, at_s: float) -> bool:
        if slot == "fault":
            fault = model.faults.get(key)
            return fault is not None and fault.until_s > at_s
        if slot in ("derate", "hvac_failure"):
            limit = model.limits.get(slot)
            return limit is not None and limit.until_s > at_s
        if slot in CONDITIONS:
            return model.has(slot, at_s)
        return self.comms_down.get(key, float("-inf")) > at_s

    def _end(self, slot: tuple[str, str], at_s: float) -> None:
        fault = self.active.pop(slot)
        if self.tickets is not None:
            self.tickets.fault_ended(fault.id, at_s)

    def _end_due(self, now_s: float) -> None:
        for slot, fault in list(self.active.items()):
            if fault.end_s <= now_s:
                self._end(slot, fault.end_s)
        self.comms_down = {u: t for u, t in self.comms_down.items() if t > now_s}

    def inject_fault(self, asset_id: str, duration_s: float, code: int = FAULT, *,
                     kind: FaultKind | None = None, severity: float = 0.5) -> float:
        """Make something go wrong for `duration_s` (a site: all its units); returns the end
        time. `kind` defaults to a trip (`code` FAULT) or maintenance (`code` MAINTENANCE);
        maintenance, derate (to `severity` of its power), hvac_failure and comms_drop apply
        to units and sites, as do the conditions protection_loss, heat_leak, overload and
        soc_runaway. KeyError: no such asset; ValueError: not for this asset."""
        if not 0 < severity <= 1:
            raise ValueError("severity is the share of power kept: above 0, at most 1")
        now = self.now()
        kind = kind or ("maintenance" if code == MAINTENANCE else "trip")
        self._start(kind, asset_id, now, now + duration_s, severity=severity, injected=True)
        self.tick()
        return now + duration_s

    def clear_fault(self, asset_id: str) -> bool:
        """End now whatever was made to go wrong on the asset (a site: on each of its units):
        its fault, derates, HVAC failure, comms drop and conditions. True if anything was
        active."""
        now = self.now()
        targets = self._fault_targets(asset_id)
        keys = {asset_id, *(key for _, key in targets)}
        cleared = False
        for model, key in targets:
            popped = model.faults.pop(key, None)
            cleared |= popped is not None and popped.until_s > now
            if key == model.unit.id:
                cleared |= any(lim.until_s > now for lim in model.limits.values())
                model.limits.clear()
                cleared |= any(c.until_s > now for c in model.conditions.values())
                model.conditions.clear()
                cleared |= self.comms_down.pop(key, float("-inf")) > now
        for slot, fault in list(self.active.items()):
            if fault.asset_id in keys:
                self._end(slot, now)
        self.tick()
        return cleared

    def active_faults(self) -> dict[str, float]:
        """Asset id → when what is wrong with it ends (the latest, if several things)."""
        now = self.now()
        out: dict[str, float] = {}
        for fault in self.active.values():
            if fault.end_s > now:
                out[fault.asset_id] = max(fault.end_s, out.get(fault.asset_id, 0.0))
        return out

    def set_value(self, asset_id: str, tag: str, value: float | str) -> None:
        """Pin a tag to a value (tests, demos) until `release_value`."""
        if isinstance(value, str):
            self.texts.setdefault(asset_id, {})[tag] = value
        else:
            self.overrides.setdefault(asset_id, {})[tag] = value
        self.tick()

    def release_value(self, asset_id: str, tag: str) -> bool:
        """Let a pinned tag follow the physics again; False when it was not pinned."""
        was = self.overrides.get(asset_id, {}).pop(tag, None) is not None
        was = self.texts.get(asset_id, {}).pop(tag, None) is not None or was
        self.tick()
        return was

    def pinned_values(self) -> dict[str, dict[str, float | str]]:
        """Asset id → its pinned tags and their values."""
        out: dict[str, dict[str, float | str]] = {}
        for pinned in (self.overrides, self.texts):
            for asset_id, tags in pinned.items():
                if tags:
                    out.setdefault(asset_id, {}).update(tags)
        return out

    def tags_of(self, asset_id: str) -> set[str]:
        """The tags an asset's controller serves (KeyError: no such asset; ValueError: a site,
        which has no controller of its own)."""
        asset = self.fleet.assets.get(asset_id)
        if asset is None:
            raise KeyError(asset_id)
        if asset.unit_id is None:
            raise ValueError(f"{asset_id} is a site: pin the tags of its units, inverters or "
                             "DC blocks")
        return {point.tag for plan_asset, points in self.plans[asset.unit_id]
                if plan_asset.asset_id == asset_id for point, *_ in points}

    def modbus_devices(self, units: tuple[Unit, ...]) -> list[SimDevice]:
        """pymodbus devices for one gateway: unit id k+1 serves the site's k-th unit."""
        devices = []
        for k, unit in enumerate(units):
            blocks = [SimData(address=0, count=IMAGE_SIZE, values=0,
                              datatype=DataType.REGISTERS)]
            if unit.id in self.sunspec_images:
                blocks.append(SimData(address=SUNSPEC_BASE, count=SUNSPEC_SIZE, values=0,
                                      datatype=DataType.REGISTERS))
            devices.append(SimDevice(id=k + 1, simdata=blocks,
                                     action=partial(self._serve_read, unit.id)))
        return devices

    def modbus_server(self, units: tuple[Unit, ...], address: tuple[str, int]) -> ModbusTcpServer:
        """One site's gateway (not started): unit id k+1 serves `units[k]`; a unit whose
        communication is down gets no answer. It answers pipelined requests (pipelined.py)."""
        return PipelinedModbusTcpServer(self.modbus_devices(units), address=address,
                                        ignore_missing_devices=True)

    async def _serve_read(
        self, unit_id: str, function_code: int, start: int, address: int, count: int,
        registers: list[int], values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """pymodbus' action for every request: reads are answered from the current image;
        writes go to the model (`values` may be changed in place: what the device stores).
        While the unit's communication is down nothing answers (see the module docstring)."""
        if self.silent(unit_id):
            raise NoSuchIdException(f"{unit_id}: communication down")
        if values is not None:
            return self._write(unit_id, address, [int(v) for v in values], values)
        offset = address - start
        if address >= SUNSPEC_BASE:
            image, first = self.sunspec_images[unit_id], address - SUNSPEC_BASE
        else:
            image, first = self.images[unit_id], address
        registers[offset:offset + count] = image[first:first + count]
        return None

    def _write(self, unit_id: str, address: int, words: list[int],
               stored: list[int] | list[bool]) -> ExcCodes | None:
        """Take a write that covers whole writable points and nothing else."""
        profile, assets = self.maps[unit_id]
        end = address + len(words)
        covered: list[tuple[MappedAsset, Point, int]] = []
        for asset in assets:
            for point in profile.points.get(asset.kind, ()):
                first = asset.base + point.offset
                if first < end and address < first + point.size:
                    if not point.writable or first < address or first + point.size > end:
                        return ExcCodes.ILLEGAL_ADDRESS
                    covered.append((asset, point, first))
        if sum(point.size for _, point, _ in covered) != len(words):
            return ExcCodes.ILLEGAL_ADDRESS  # registers that hold no point
        model = self.models[unit_id]
        for asset, point, first in covered:
            at = first - address
            value = profile.decode(point, words[at:at + point.size])
            if isinstance(value, str):
                return ExcCodes.ILLEGAL_VALUE
            try:
                held = model.apply_control(point.tag, float(value)) \
                    if asset.asset_id == unit_id else None
            except KeyError:
                held = None
            if held is None:
                return ExcCodes.ILLEGAL_ADDRESS  # writable in the profile, not in the model
            if point.tag == "heartbeat":
                self.heartbeat(unit_id, int(held))
            registers = profile.encode(point, held)
            stored[at:at + point.size] = registers  # type: ignore[assignment]
            self.images[unit_id][first:first + point.size] = registers
            self.encoded[unit_id].pop(first, None)
        return None


_Encoder = Callable[[float | str, int], list[int]]
_AssetPlan = tuple[MappedAsset, list[tuple[Point, int, int, _Encoder]]]


def _plan(profile: DeviceProfile, assets: tuple[MappedAsset, ...]) -> list[_AssetPlan]:
    """Each asset's points with their absolute address, size and prepared encoder."""
    return [(asset, [(point, asset.base + point.offset, point.size, profile.encoder(point))
                     for point in profile.points.get(asset.kind, ())]) for asset in assets]


def _exponent(point: Point, values: Mapping[str, float | str]) -> int:
    """The power of ten a point's scale factor point holds (0 without one)."""
    if point.scale_factor is None:
        return 0
    value = values.get(point.scale_factor, 0)
    return int(value) if not isinstance(value, str) else 0


InjectKind = Literal["trip", "maintenance", "derate", "hvac_failure", "comms_drop",
                     "protection_loss", "heat_leak", "overload", "soc_runaway"]


class FaultRequest(BaseModel):
    asset_id: str = Field(min_length=1)
    duration_s: float = Field(300.0, gt=0, le=30 * 86400)
    kind: InjectKind = "trip"
    severity: float = Field(0.5, gt=0, le=1)  # derate: the share of power kept


class ValueRequest(BaseModel):
    asset_id: str = Field(min_length=1)
    tag: str = Field(min_length=1, max_length=64)
    value: Annotated[float, Field(allow_inf_nan=False)] | Annotated[str, Field(max_length=64)]


_bearer = HTTPBearer(auto_error=False)


def _authorized(request: Request,
                creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    token: str = request.app.state.token
    if creds is None or not hmac.compare_digest(creds.credentials.encode(), token.encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or wrong bearer token",
                            headers={"WWW-Authenticate": "Bearer"})


def control_app(sim: Simulator, token: str) -> FastAPI:
    """HTTP control of the simulator (bearer token; loopback only). The handlers are
    coroutines: they run on the event loop that ticks the simulator, never beside it."""
    app = FastAPI(title="bessmon simulator control")
    app.state.token = token
    auth = [Depends(_authorized)]

    @app.get("/health")
    async def health() -> dict[str, object]:
        return {"status": "ok", "sites": len(sim.fleet.sites), "units": len(sim.models)}

    @app.post("/faults", dependencies=auth, status_code=201)
    async def inject(req: FaultRequest) -> dict[str, object]:
        try:
            until = sim.inject_fault(req.asset_id, req.duration_s, kind=req.kind,
                                     severity=req.severity)
        except KeyError:
            raise HTTPException(404, f"unknown asset id {req.asset_id!r}") from None
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        return {"asset_id": req.asset_id, "kind": req.kind, "until": until}

    @app.get("/faults", dependencies=auth)
    async def faults() -> dict[str, float]:
        return sim.active_faults()

    @app.get("/damage", dependencies=auth)
    async def damage() -> dict[str, object]:
        """Simulated seconds and events of equipment damage, by unit (those with any) and
        in total: what proves (or disproves) that a control loop protects the fleet."""
        return sim.damage()

    @app.delete("/faults/{asset_id}", dependencies=auth)
    async def clear(asset_id: str) -> dict[str, object]:
        try:
            return {"asset_id": asset_id, "cleared": sim.clear_fault(asset_id)}
        except KeyError:
            raise HTTPException(404, f"unknown asset id {asset_id!r}") from None

    def check_tag(asset_id: str, tag: str) -> None:
        try:
            tags = sim.tags_of(asset_id)
        except KeyError:
            raise HTTPException(404, f"unknown asset id {asset_id!r}") from None
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        if tag not in tags:
            raise HTTPException(422, f"{asset_id} has no tag {tag!r}; it has "
                                     f"{', '.join(sorted(tags))}")

    @app.post("/values", dependencies=auth, status_code=201)
    async def pin(req: ValueRequest) -> dict[str, object]:
        """Pin a tag of an asset to a value until released (a hot cell, a stuck sensor)."""
        check_tag(req.asset_id, req.tag)
        sim.set_value(req.asset_id, req.tag, req.value)
        return {"asset_id": req.asset_id, "tag": req.tag, "value": req.value}

    @app.get("/values", dependencies=auth)
    async def pinned() -> dict[str, dict[str, float | str]]:
        return sim.pinned_values()

    @app.delete("/values/{asset_id}/{tag}", dependencies=auth)
    async def release(asset_id: str, tag: str) -> dict[str, object]:
        check_tag(asset_id, tag)
        return {"asset_id": asset_id, "tag": tag, "released": sim.release_value(asset_id, tag)}

    return app


def previous_ports(fleet: Fleet, devices: Path, opcua_devices: Path,
                   host: str = "127.0.0.1") -> tuple[dict[str, int], int]:
    """The gateway port of each site and the OPC UA server's port in device lists an earlier
    run wrote (`--keep-ports`: a restarted simulator answers where the connectors poll), those
    still free only; none from a list that is missing or unreadable."""
    from urllib.parse import urlparse

    from connectors.modbus.devices import load_devices
    from connectors.opcua.config import load_devices as load_opcua_devices

    site_of = {u.id: s.id for s in fleet.sites for u in s.units}
    ports: dict[str, int] = {}
    with contextlib.suppress(OSError, ValueError):
        for d in load_devices(devices).devices:
            if d.asset in site_of and _bindable(host, d.port):
                ports[site_of[d.asset]] = d.port
    opcua_port = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        port = urlparse(load_opcua_devices(opcua_devices).devices[0].endpoint).port
        opcua_port = port if port and _bindable(host, port) else 0
    return ports, opcua_port


def _bindable(host: str, port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)  # readers never see half a file


async def serve(
    sim: Simulator,
    *,
    host: str = "127.0.0.1",
    devices_out: Path | None = None,
    control_port: int = 0,
    token: str,
    ready: Callable[[DeviceList | None, int], None] | None = None,
    poll_interval_s: float = 1.0,
    opcua_site: str | None = None,
    opcua_devices_out: Path | None = None,
    tickets: WebhookSender | None = None,
    ports: Mapping[str, int] | None = None,
    opcua_port: int = 0,
) -> None:
    """Run the gateways (and the OPC UA server of `opcua_site`), the physics tick, the
    ticket deliveries and the control API until cancelled.

    The OPC UA device list is written before the Modbus one, so a reader waiting for the
    Modbus list finds both. `ready` gets the Modbus device list (None when every site is on
    OPC UA) and the control port."""
    from infra.sim.opcua_server import OpcUaSimServer

    opcua = OpcUaSimServer(sim, opcua_site, host=host, port=opcua_port) if opcua_site else None
    servers: list[ModbusTcpServer] = []
    configs: list[DeviceConfig] = []
    modbus_sites = [site for site in sim.fleet.sites if site.id != opcua_site]
    *fresh, spare = free_ports(len(modbus_sites) + 1, host)  # a gateway's each, the control's
    kept = ports or {}
    for site, new_port in zip(modbus_sites, fresh, strict=True):
        port = kept.get(site.id) or new_port
        servers.append(sim.modbus_server(site.units, (host, port)))
        configs += [
            DeviceConfig(id=u.id, asset=u.id, host=host, port=port, unit_id=k + 1,
                         profile=sim.maps[u.id][0].id, poll_interval_s=poll_interval_s,
                         pipeline=PIPELINE)
            for k, u in enumerate(site.units)
        ]
    devices = DeviceList(devices=tuple(configs)) if configs else None
    control_port = control_port or spare
    web = uvicorn.Server(uvicorn.Config(control_app(sim, token), host=host, port=control_port,
                                        log_level="warning", lifespan="off"))
    # The physics moves once per poll interval (at most once a second): a poll reads values
    # at most one interval old, and a fleet of thousands of units leaves the event loop time
    # to answer. Injected faults and pinned values take effect at once (they tick).
    tick_s = min(1.0, poll_interval_s)
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(s.serve_forever()) for s in servers]
        tasks.append(group.create_task(web.serve()))
        if tickets is not None:
            tasks.append(group.create_task(tickets.run()))
        try:
            while not web.started:
                await asyncio.sleep(0.05)
            if opcua is not None:
                await opcua.start()
                if opcua_devices_out:
                    # Whole-unit samples, as the flows read a Modbus poll (see
                    # connectors/opcua/config.py `snapshots`).
                    opcua.write_device_list(opcua_devices_out, snapshots=True,
                                            sampling_interval_ms=poll_interval_s * 1000)
                tasks.append(group.create_task(opcua.run(tick_s, drive_physics=False)))
            if devices_out and devices is not None:
                _write_atomically(devices_out, dump_devices(devices))
            if ready:
                ready(devices, control_port)
            while True:
                await asyncio.sleep(tick_s)
                for _ in sim.ticking():
                    await asyncio.sleep(0)
                for change in sim.ticket_changes():
                    if tickets is not None:
                        tickets.submit(jira_delivery(change, sim.wall_ms))
        finally:
            web.should_exit = True
            for s in servers:
                with contextlib.suppress(Exception):
                    await s.shutdown()
            if opcua is not None:
                with contextlib.suppress(Exception):
                    await opcua.stop()
            for t in tasks:
                t.cancel()
