"""Helpers of the Modbus tests: the simulator's controllers served by a real pymodbus server on
loopback (stopped and started again at will), and a connector run that collects what it
publishes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TypedDict

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import SimDevice

from connectors.modbus.devices import DeviceConfig
from connectors.modbus.poller import ModbusConnector
from contracts.events import DeviceHealth, TelemetrySample
from contracts.fleet import Unit
from infra.ports import free_port
from infra.sim.server import Simulator

HOST = "127.0.0.1"
SERVERS: dict[int, ModbusTcpServer] = {}  # running servers by port


def connections(port: int) -> int:
    """Client connections the server on `port` holds now."""
    return len(SERVERS[port].active_connections)


async def wait_listening(port: int, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            _, writer = await asyncio.open_connection(HOST, port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.02)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return


@contextlib.asynccontextmanager
async def modbus_server(devices: list[SimDevice], port: int | None = None) -> AsyncIterator[int]:
    """A pymodbus TCP server for `devices` on loopback; yields its port."""
    port = port or free_port(HOST)
    server = ModbusTcpServer(devices, address=(HOST, port))
    task = asyncio.ensure_future(server.serve_forever())
    SERVERS[port] = server
    try:
        await wait_listening(port)
        yield port
    finally:
        SERVERS.pop(port, None)
        await server.shutdown()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def gateway(sim: Simulator, units: tuple[Unit, ...],
                  port: int | None = None) -> AsyncIterator[int]:
    """One site's gateway: unit id k+1 serves `units[k]`."""
    async with modbus_server(sim.modbus_devices(units), port) as served:
        yield served


def device(unit: Unit, port: int, unit_id: int, **options: object) -> DeviceConfig:
    """A device config with test-sized timings unless `options` say otherwise."""
    config: dict[str, object] = {
        "id": unit.id, "asset": unit.id, "host": HOST, "port": port, "unit_id": unit_id,
        "profile": "bess-unit-v1", "poll_interval_s": 0.1, "timeout_s": 0.3, "retries": 0,
        "backoff_s": 0.05, "backoff_max_s": 0.2, "health_window": 4, "offline_after": 2,
    }
    return DeviceConfig.model_validate(config | options)


@dataclass
class Collected:
    samples: list[TelemetrySample] = field(default_factory=list)
    health: list[DeviceHealth] = field(default_factory=list)

    def states(self, device_id: str) -> list[str]:
        return [e.state for e in self.health if e.device_id == device_id]

    def of(self, device_id: str) -> list[TelemetrySample]:
        return [s for s in self.samples if s.device_id == device_id]


class Sinks(TypedDict):
    """The connector's keyword arguments `collector` fills."""

    publish: Callable[[TelemetrySample], None]
    publish_health: Callable[[DeviceHealth], None]


def collector() -> tuple[Collected, Sinks]:
    out = Collected()
    return out, {"publish": out.samples.append, "publish_health": out.health.append}


@contextlib.asynccontextmanager
async def running(connector: ModbusConnector) -> AsyncIterator[asyncio.Event]:
    """The connector polling in the background until the block ends."""
    stop = asyncio.Event()
    task = asyncio.ensure_future(connector.run(stop))
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def until(condition: Callable[[], bool], timeout_s: float = 5.0,
                what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def ticking(sim: Simulator, every_s: float = 0.05) -> AsyncIterator[None]:
    """The simulator's physics ticking in the background (what `serve` does)."""
    async def tick() -> None:
        while True:
            await asyncio.sleep(every_s)
            sim.tick()

    task = asyncio.ensure_future(tick())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
