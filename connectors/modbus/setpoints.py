"""Setpoint writes for the control loop: encode through the profile, write, read back, and
say plainly when the device does not hold what was written.

The write and its read-back happen in one hold of the gateway's connection, ahead of queued
polls (nothing else reaches the device in between). A write is not retried here: whether to
try again, and how soon, is the caller's decision (commands.py tries a mismatch or a timeout
again, `write_retries` times); `SetpointTimeout` says the outcome is unknown."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from connectors.modbus.codec import EncodeError
from connectors.modbus.errors import (
    DeviceGarbled,
    DeviceRefused,
    DeviceUnavailable,
    SetpointInvalid,
    SetpointMismatch,
    SetpointRejected,
    SetpointTimeout,
)
from connectors.modbus.gateway import WRITE, GatewayCoordinator
from contracts.events import TagValue

if TYPE_CHECKING:
    from connectors.modbus.poller import DeviceMap


@dataclass(frozen=True, slots=True)
class WriteResult:
    """A setpoint the device took and holds."""

    device_id: str
    asset_id: str
    tag: str
    value: TagValue  # as requested
    read_back: TagValue  # decoded from the registers read back (equal registers)
    address: int
    registers: tuple[int, ...]
    function_code: int  # 6 (one register) or 16
    latency_s: float  # write + read-back


async def write_setpoint(gateway: GatewayCoordinator, device: DeviceMap, tag: str,
                         value: TagValue, *, asset_id: str | None = None) -> WriteResult:
    """Write `value` to the writable point `tag` of `asset_id` (the device's unit by default)
    and verify it. Raises a `SetpointError`: `SetpointInvalid` before anything is sent,
    `SetpointRejected` on an exception response, `SetpointTimeout` when the write or the
    read-back got no (usable) answer, `SetpointMismatch` when the device holds something else."""
    asset, point = device.locate(tag, asset_id)
    config, profile = device.device, device.profile
    address = asset.base + point.offset
    where = (f"device {config.id} ({config.host}:{config.port} unit {config.unit_id}) "
             f"{asset.asset_id}.{tag} at {address}")
    if not point.writable:
        raise SetpointInvalid(f"{where}: not writable (profile {profile.id} does not mark it "
                              "writable: true)")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise SetpointInvalid(f"{where}: {value!r} is not a number")
        if (point.min is not None and value < point.min) or \
                (point.max is not None and value > point.max):
            raise SetpointInvalid(f"{where}: {value!r} is outside [{point.min}, {point.max}]")
    try:
        registers = profile.encode(point, value)
    except EncodeError as exc:
        raise SetpointInvalid(f"{where}: {exc}") from None
    started = time.monotonic()
    stage = "write"
    try:
        async with gateway.hold(priority=WRITE, connect_now=True) as link:
            function_code = await link.write(config.unit_id, address, registers,
                                             config.timeout_s)
            stage = "read-back"
            back = await link.read(config.unit_id, address, len(registers), config.timeout_s)
    except DeviceRefused as exc:
        raise SetpointRejected(f"{where}: the device refused the {stage}: {exc}") from exc
    except DeviceUnavailable as exc:
        raise SetpointTimeout(f"{where}: the {stage} got no answer; whether the device "
                              f"holds {value!r} is unknown: {exc}") from exc
    except DeviceGarbled as exc:
        raise SetpointTimeout(f"{where}: the {stage} got no usable answer; whether the "
                              f"device holds {value!r} is unknown: {exc}") from exc
    latency_s = time.monotonic() - started
    read_back = profile.decode(point, back)
    if back != registers:
        raise SetpointMismatch(f"{where}: wrote {value!r}, the device holds {read_back!r} "
                               f"(registers {registers} read back as {back})",
                               requested=value, read_back=read_back)
    return WriteResult(config.id, asset.asset_id, tag, value, read_back, address,
                       tuple(back), function_code, latency_s)
