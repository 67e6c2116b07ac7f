"""Serve a simulated fleet: one Modbus TCP gateway per site (one unit id per battery unit),
the physics ticking underneath, and a small HTTP control API to inject faults."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import random
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Annotated

import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from connectors.modbus.devices import DeviceConfig, DeviceList, dump_devices
from connectors.modbus.profile import DeviceProfile, MappedAsset, Point, map_assets
from contracts.fleet import Fleet, Unit
from infra.ports import free_port
from infra.sim.model import FAULT, Fault, UnitModel
from infra.sim.sunspec import SUNSPEC_BASE, SUNSPEC_SIZE, sunspec_image

log = logging.getLogger(__name__)
IMAGE_SIZE = 1000  # holding registers per simulated controller


class Simulator:
    """The fleet's physics and register images; no sockets (see `serve`).

    `sunspec` names units (or sites: all their units) whose controllers also expose a SunSpec
    map at 40000 (infra/sim/sunspec.py). Writes to a unit's writable points (the profile's
    `writable: true`) reach its model, which clamps them like a controller would; writes to
    any other register are refused with an "illegal data address" exception."""

    def __init__(
        self,
        fleet: Fleet,
        profiles: dict[str, DeviceProfile],
        *,
        seed: int = 0,
        speed: float = 1.0,
        clock: Callable[[], float] = time.time,
        sunspec: Iterable[str] = (),
    ) -> None:
        self.fleet = fleet
        self.speed = speed
        self._clock = clock
        self._wall0 = self._sim0 = clock()
        self._last_tick = self._sim0
        rng = random.Random(seed)
        self.models: dict[str, UnitModel] = {}
        self.maps: dict[str, tuple[DeviceProfile, tuple[MappedAsset, ...]]] = {}
        self.images: dict[str, list[int]] = {}
        self.overrides: dict[str, dict[str, float]] = {}
        self.texts: dict[str, dict[str, str]] = {}  # pinned text of string points
        self.modbus_ids: dict[str, int] = {}  # unit id behind its site's gateway
        for site in fleet.sites:
            for k, unit in enumerate(site.units):
                profile = profiles[unit.device_profile or "bess-unit-v1"]
                self.models[unit.id] = UnitModel(unit, random.Random(rng.random()))
                self.maps[unit.id] = (profile, map_assets(profile, unit))
                self.images[unit.id] = [0] * IMAGE_SIZE
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

    def tick(self) -> None:
        now = self.now()
        dt_s = max(0.0, now - self._last_tick)
        self._last_tick = now
        for unit_id, model in self.models.items():
            model.step(now, dt_s)
            self._encode(unit_id, model.readings(now))

    def _encode(self, unit_id: str, readings: dict[str, dict[str, float]]) -> None:
        profile, assets = self.maps[unit_id]
        model = self.models[unit_id]
        image = self.images[unit_id]
        for asset in assets:
            values: dict[str, float | str] = {**readings[asset.asset_id]}
            if asset.asset_id == unit_id:
                values |= model.controls()
            values |= self.overrides.get(asset.asset_id, {})
            values |= self.texts.get(asset.asset_id, {})
            for point in profile.points.get(asset.kind, ()):
                if point.tag not in values:
                    continue  # a tag the model does not know: left as it is
                address = asset.base + point.offset
                image[address:address + point.size] = profile.encode(
                    point, values[point.tag], _exponent(point, values))
            if asset.asset_id == unit_id and unit_id in self.sunspec_images:
                temperature = model.temperature_c
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

    def inject_fault(self, asset_id: str, duration_s: float, code: int = FAULT) -> float:
        """Trip an asset (a site trips all its units) for `duration_s`; returns the end time."""
        until = self.now() + duration_s
        for model, key in self._fault_targets(asset_id):
            model.faults[key] = Fault(code, until)
        self.tick()
        return until

    def clear_fault(self, asset_id: str) -> bool:
        cleared = [model.faults.pop(key, None) is not None
                   for model, key in self._fault_targets(asset_id)]
        self.tick()
        return any(cleared)

    def active_faults(self) -> dict[str, float]:
        now = self.now()
        return {asset: f.until_s for m in self.models.values()
                for asset, f in m.faults.items() if f.until_s > now}

    def set_value(self, asset_id: str, tag: str, value: float | str) -> None:
        """Pin a tag to a value (tests, demos) until `release_value`."""
        if isinstance(value, str):
            self.texts.setdefault(asset_id, {})[tag] = value
        else:
            self.overrides.setdefault(asset_id, {})[tag] = value
        self.tick()

    def release_value(self, asset_id: str, tag: str) -> None:
        self.overrides.get(asset_id, {}).pop(tag, None)
        self.texts.get(asset_id, {}).pop(tag, None)
        self.tick()

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

    async def _serve_read(
        self, unit_id: str, function_code: int, start: int, address: int, count: int,
        registers: list[int], values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """pymodbus' action for every request: reads are answered from the current image;
        writes go to the model (`values` may be changed in place: what the device stores)."""
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
            registers = profile.encode(point, held)
            stored[at:at + point.size] = registers  # type: ignore[assignment]
            self.images[unit_id][first:first + point.size] = registers
        return None


def _exponent(point: Point, values: dict[str, float | str]) -> int:
    """The power of ten a point's scale factor point holds (0 without one)."""
    if point.scale_factor is None:
        return 0
    value = values.get(point.scale_factor, 0)
    return int(value) if not isinstance(value, str) else 0


class FaultRequest(BaseModel):
    asset_id: str = Field(min_length=1)
    duration_s: float = Field(300.0, gt=0, le=30 * 86400)


_bearer = HTTPBearer(auto_error=False)


def _authorized(request: Request,
                creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    token: str = request.app.state.token
    if creds is None or not hmac.compare_digest(creds.credentials.encode(), token.encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or wrong bearer token",
                            headers={"WWW-Authenticate": "Bearer"})


def control_app(sim: Simulator, token: str) -> FastAPI:
    """HTTP control of the simulator (bearer token; loopback only)."""
    app = FastAPI(title="bessmon simulator control")
    app.state.token = token
    auth = [Depends(_authorized)]

    @app.get("/health")
    def health() -> dict[str, object]:
        return {"status": "ok", "sites": len(sim.fleet.sites), "units": len(sim.models)}

    @app.post("/faults", dependencies=auth, status_code=201)
    def inject(req: FaultRequest) -> dict[str, object]:
        try:
            until = sim.inject_fault(req.asset_id, req.duration_s)
        except KeyError:
            raise HTTPException(404, f"unknown asset id {req.asset_id!r}") from None
        return {"asset_id": req.asset_id, "until": until}

    @app.get("/faults", dependencies=auth)
    def faults() -> dict[str, float]:
        return sim.active_faults()

    @app.delete("/faults/{asset_id}", dependencies=auth)
    def clear(asset_id: str) -> dict[str, object]:
        try:
            return {"asset_id": asset_id, "cleared": sim.clear_fault(asset_id)}
        except KeyError:
            raise HTTPException(404, f"unknown asset id {asset_id!r}") from None

    return app


async def serve(
    sim: Simulator,
    *,
    host: str = "127.0.0.1",
    devices_out: Path | None = None,
    control_port: int = 0,
    token: str,
    ready: Callable[[DeviceList, int], None] | None = None,
    poll_interval_s: float = 1.0,
) -> None:
    """Run the gateways, the physics tick and the control API until cancelled."""
    servers: list[ModbusTcpServer] = []
    configs: list[DeviceConfig] = []
    for site in sim.fleet.sites:
        port = free_port(host)
        servers.append(ModbusTcpServer(sim.modbus_devices(site.units), address=(host, port)))
        configs += [
            DeviceConfig(id=u.id, asset=u.id, host=host, port=port, unit_id=k + 1,
                         profile=sim.maps[u.id][0].id, poll_interval_s=poll_interval_s)
            for k, u in enumerate(site.units)
        ]
    devices = DeviceList(devices=tuple(configs))
    control_port = control_port or free_port(host)
    web = uvicorn.Server(uvicorn.Config(control_app(sim, token), host=host, port=control_port,
                                        log_level="warning", lifespan="off"))
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(s.serve_forever()) for s in servers]
        tasks.append(group.create_task(web.serve()))
        try:
            while not web.started:
                await asyncio.sleep(0.05)
            if devices_out:
                devices_out.parent.mkdir(parents=True, exist_ok=True)
                tmp = devices_out.with_suffix(".tmp")
                tmp.write_text(dump_devices(devices), encoding="utf-8")
                tmp.replace(devices_out)  # readers never see half a file
            if ready:
                ready(devices, control_port)
            while True:
                await asyncio.sleep(min(1.0, poll_interval_s / 2))
                sim.tick()
        finally:
            web.should_exit = True
            for s in servers:
                with contextlib.suppress(Exception):
                    await s.shutdown()
            for t in tasks:
                t.cancel()
