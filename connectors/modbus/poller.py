"""Poll battery unit controllers over Modbus TCP and turn each poll into one
`TelemetrySample` (the unit and all its inverters and blocks, one timestamp)."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from connectors.modbus.devices import DeviceConfig
from connectors.modbus.profile import DeviceProfile, MappedAsset, map_assets, read_groups
from contracts.events import AssetReading, TelemetrySample
from contracts.fleet import Fleet

log = logging.getLogger(__name__)


class DeviceReadError(RuntimeError):
    """A poll of one device failed (timeout, connection, or an exception response)."""


@dataclass(frozen=True)
class DeviceMap:
    """Everything needed to read and decode one device."""

    device: DeviceConfig
    profile: DeviceProfile
    assets: tuple[MappedAsset, ...]
    groups: tuple[tuple[int, int], ...]

    @classmethod
    def build(cls, device: DeviceConfig, fleet: Fleet,
              profiles: dict[str, DeviceProfile]) -> DeviceMap:
        if device.profile not in profiles:
            raise ValueError(f"device {device.id}: unknown profile {device.profile!r}")
        profile = profiles[device.profile]
        assets = map_assets(profile, fleet.unit(device.asset))
        return cls(device, profile, assets, tuple(read_groups(profile, assets)))

    def decode(self, registers: dict[int, int], ts_ms: int) -> TelemetrySample:
        readings = []
        for asset in self.assets:
            tags: dict[str, float | int | str | bool] = {}
            for point in self.profile.points[asset.kind]:
                start = asset.base + point.offset
                value = self.profile.decode(point, [registers[a] for a in
                                                    range(start, start + point.count)])
                if math.isfinite(value):
                    tags[point.tag] = round(value, 6)
            readings.append(AssetReading(id=asset.asset_id, tags=tags))
        return TelemetrySample(device_id=self.device.id, ts_ms=ts_ms, assets=tuple(readings))


class Gateway:
    """One TCP connection to a gateway; requests of its devices are serialized on it."""

    def __init__(self, host: str, port: int, timeout_s: float) -> None:
        self.client = AsyncModbusTcpClient(host, port=port, timeout=timeout_s, retries=1,
                                           reconnect_delay=0.5, reconnect_delay_max=10)
        self.lock = asyncio.Lock()

    async def read(self, unit_id: int, groups: tuple[tuple[int, int], ...]) -> dict[int, int]:
        async with self.lock:
            if not self.client.connected and not await self.client.connect():
                raise DeviceReadError("not connected")
            registers: dict[int, int] = {}
            for address, count in groups:
                try:
                    result = await self.client.read_holding_registers(
                        address, count=count, device_id=unit_id)
                except ModbusException as exc:
                    raise DeviceReadError(str(exc)) from exc
                if result.isError():
                    raise DeviceReadError(f"exception response {result} at {address}+{count}")
                registers.update(zip(range(address, address + count), result.registers,
                                     strict=True))
            return registers

    def close(self) -> None:
        self.client.close()


async def poll_devices(
    maps: list[DeviceMap],
    publish: Callable[[TelemetrySample], None],
    *,
    clock: Callable[[], float] = time.time,
    stop: asyncio.Event | None = None,
) -> None:
    """Poll every device at its interval (aligned to the interval) until `stop` is set."""
    stop = stop or asyncio.Event()
    gateways: dict[tuple[str, int], Gateway] = {}
    for m in maps:
        key = (m.device.host, m.device.port)
        gateways.setdefault(key, Gateway(*key, timeout_s=m.device.timeout_s))

    async def loop(m: DeviceMap) -> None:
        gateway = gateways[(m.device.host, m.device.port)]
        interval = m.device.poll_interval_s
        failing = False
        while not stop.is_set():
            now = clock()
            next_at = (math.floor(now / interval) + 1) * interval
            try:
                await asyncio.wait_for(stop.wait(), timeout=next_at - now)
                return
            except TimeoutError:
                pass
            ts_ms = int(next_at * 1000)
            try:
                registers = await gateway.read(m.device.unit_id, m.groups)
            except DeviceReadError as exc:
                if not failing:
                    log.warning("device %s: poll failed: %s", m.device.id, exc)
                failing = True
                continue
            if failing:
                log.info("device %s: polling again", m.device.id)
                failing = False
            publish(m.decode(registers, ts_ms))

    try:
        async with asyncio.TaskGroup() as group:
            for m in maps:
                group.create_task(loop(m))
    finally:
        for gateway in gateways.values():
            gateway.close()
