"""Serve a simulated fleet: one Modbus TCP gateway per site (one unit id per battery unit),
the physics ticking underneath, and a small HTTP control API to inject faults."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import random
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Annotated

import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from connectors.modbus.devices import DeviceConfig, DeviceList, dump_devices
from connectors.modbus.profile import DeviceProfile, MappedAsset, map_assets
from contracts.fleet import Fleet, Unit
from infra.ports import free_port
from infra.sim.model import FAULT, Fault, UnitModel

log = logging.getLogger(__name__)
IMAGE_SIZE = 1000  # holding registers per simulated controller


class Simulator:
    """The fleet's physics and register images; no sockets (see `serve`)."""

    def __init__(
        self,
        fleet: Fleet,
        profiles: dict[str, DeviceProfile],
        *,
        seed: int = 0,
        speed: float = 1.0,
        clock: Callable[[], float] = time.time,
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
        for site in fleet.sites:
            for unit in site.units:
                profile = profiles[unit.device_profile or "bess-unit-v1"]
                self.models[unit.id] = UnitModel(unit, random.Random(rng.random()))
                self.maps[unit.id] = (profile, map_assets(profile, unit))
                self.images[unit.id] = [0] * IMAGE_SIZE
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
        image = self.images[unit_id]
        for asset in assets:
            values = readings[asset.asset_id] | self.overrides.get(asset.asset_id, {})
            for point in profile.points[asset.kind]:
                address = asset.base + point.offset
                image[address:address + point.count] = profile.encode(point, values[point.tag])

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

    def set_value(self, asset_id: str, tag: str, value: float) -> None:
        """Pin a tag to a value (tests, demos) until `release_value`."""
        self.overrides.setdefault(asset_id, {})[tag] = value
        self.tick()

    def release_value(self, asset_id: str, tag: str) -> None:
        self.overrides.get(asset_id, {}).pop(tag, None)
        self.tick()

    def modbus_devices(self, units: tuple[Unit, ...]) -> list[SimDevice]:
        """pymodbus devices for one gateway: unit id k+1 serves the site's k-th unit."""
        return [
            SimDevice(
                id=k + 1,
                simdata=[SimData(address=0, count=IMAGE_SIZE, values=0,
                                 datatype=DataType.REGISTERS)],
                action=partial(self._serve_read, unit.id),
            )
            for k, unit in enumerate(units)
        ]

    async def _serve_read(
        self, unit_id: str, function_code: int, start: int, address: int, count: int,
        registers: list[int], values: list[int] | list[bool] | None,
    ) -> None:
        if values is None:  # a read: answer from the current image
            offset = address - start
            registers[offset:offset + count] = self.images[unit_id][address:address + count]


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
