"""SunSpec: find a device's SunSpec models and read them as canonical tags.

Discovery looks for the "SunS" marker at 40000, then 0, then 50000, and walks the model
headers after it (model id, length) up to the end marker (0xFFFF). The models bessmon knows
are mapped to canonical tags by the tables below — data, like a profile's points — and
`sunspec_profile` turns what a device holds into an ordinary `DeviceProfile` (addresses,
scale-factor references, "not implemented" values), so a SunSpec device is polled, coalesced
and decoded like any other.

Covered: common model 1; inverter models 101/102/103 (single, split, three phase: one layout);
storage model 124. Not covered: the 7xx DER models, 802 (battery), repeating groups.
The first model of each family counts (a device with two inverter models reports the first)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from connectors.modbus.codec import Datatype
from connectors.modbus.errors import DeviceRefused, SunSpecNotFound
from connectors.modbus.gateway import GatewayCoordinator
from connectors.modbus.profile import DeviceProfile, Point, Slot

SUNSPEC = "sunspec"  # the `profile` of a device whose map is discovered
BASES = (40000, 0, 50000)
MARKER = (0x5375, 0x6E53)  # "SunS"
END = 0xFFFF
SunSpecType = Literal["int16", "uint16", "int32", "uint32", "acc32", "sunssf", "enum16",
                      "bitfield16", "bitfield32", "string"]

# SunSpec type → (our datatype, the raw value meaning "not implemented")
_TYPES: dict[str, tuple[Datatype, int | None]] = {
    "int16": ("int16", -0x8000), "sunssf": ("int16", -0x8000),
    "uint16": ("uint16", 0xFFFF), "enum16": ("uint16", 0xFFFF),
    "int32": ("int32", -0x80000000), "uint32": ("uint32", 0xFFFFFFFF),
    "acc32": ("uint32", 0),  # an accumulator of 0 is "not accumulated"
    "bitfield16": ("bitfield", 0xFFFF), "bitfield32": ("bitfield", 0xFFFFFFFF),
    "string": ("string", None),  # all NULs: empty, left out
}
_SIZES = {"int32": 2, "uint32": 2, "acc32": 2, "bitfield32": 2}


@dataclass(frozen=True, slots=True)
class SunSpecPoint:
    """One SunSpec point and the canonical tag it becomes."""

    name: str  # the SunSpec point id
    offset: int  # registers after the model's ID and L
    type: SunSpecType
    tag: str | None = None  # canonical tag; None: read for others (a scale factor, bits)
    sf: str | None = None  # the point id of its scale factor
    scale: float = 1.0  # on top of the scale factor (W → kW: 0.001)
    size: int = 1  # registers of a string
    unit: str | None = None
    enum: dict[int, float] | None = None  # SunSpec code → canonical value
    bits: dict[str, int] | None = None  # canonical boolean tag → bit

    @property
    def registers(self) -> int:
        return self.size if self.type == "string" else _SIZES.get(self.type, 1)


# Inverter operating state (St) → contracts/status.py codes: 0 running, 1 standby,
# 2 derated, 3 fault.
INVERTER_STATES: dict[int, float] = {1: 1, 2: 1, 3: 1, 4: 0, 5: 2, 6: 1, 7: 3, 8: 1}

COMMON = (
    SunSpecPoint("Mn", 0, "string", "manufacturer", size=16),
    SunSpecPoint("Md", 16, "string", "model", size=16),
    SunSpecPoint("Vr", 40, "string", "firmware_version", size=8),
    SunSpecPoint("SN", 48, "string", "serial_number", size=16),
)
INVERTER = (
    SunSpecPoint("A", 0, "uint16", "ac_current_a", sf="A_SF", unit="A"),
    SunSpecPoint("A_SF", 4, "sunssf"),
    SunSpecPoint("W", 12, "int16", "active_power_kw", sf="W_SF", scale=0.001, unit="kW"),
    SunSpecPoint("W_SF", 13, "sunssf"),
    SunSpecPoint("Hz", 14, "uint16", "frequency_hz", sf="Hz_SF", unit="Hz"),
    SunSpecPoint("Hz_SF", 15, "sunssf"),
    SunSpecPoint("VAr", 18, "int16", "reactive_power_kvar", sf="VAr_SF", scale=0.001,
                 unit="kvar"),
    SunSpecPoint("VAr_SF", 19, "sunssf"),
    SunSpecPoint("WH", 22, "acc32", "energy_total_kwh", sf="WH_SF", scale=0.001, unit="kWh"),
    SunSpecPoint("WH_SF", 24, "sunssf"),
    SunSpecPoint("TmpCab", 31, "int16", "temperature_c", sf="Tmp_SF", unit="degC"),
    SunSpecPoint("Tmp_SF", 35, "sunssf"),
    SunSpecPoint("St", 36, "enum16", "status_code", enum=INVERTER_STATES),
    SunSpecPoint("Evt1", 38, "bitfield32", bits={
        "event_ground_fault": 0, "event_dc_over_volt": 1, "event_ac_disconnect": 2,
        "event_dc_disconnect": 3, "event_grid_disconnect": 4, "event_cabinet_open": 5,
        "event_manual_shutdown": 6, "event_over_temp": 7}),
)
STORAGE = (
    SunSpecPoint("WChaMax", 0, "uint16", "max_charge_power_kw", sf="WChaMax_SF", scale=0.001,
                 unit="kW"),
    SunSpecPoint("StorCtl_Mod", 3, "bitfield16", bits={
        "charge_limit_active": 0, "discharge_limit_active": 1}),
    SunSpecPoint("ChaState", 6, "uint16", "soc_pct", sf="ChaState_SF", unit="%"),
    SunSpecPoint("InBatV", 8, "uint16", "battery_voltage_v", sf="InBatV_SF", unit="V"),
    SunSpecPoint("ChaSt", 9, "enum16", "charge_status"),
    SunSpecPoint("WChaMax_SF", 16, "sunssf"),
    SunSpecPoint("ChaState_SF", 20, "sunssf"),
    SunSpecPoint("InBatV_SF", 22, "sunssf"),
)
# model id → (family, points): one model of each family is mapped
MODELS: dict[int, tuple[str, tuple[SunSpecPoint, ...]]] = {
    1: ("common", COMMON),
    101: ("inverter", INVERTER), 102: ("inverter", INVERTER), 103: ("inverter", INVERTER),
    124: ("storage", STORAGE),
}


@dataclass(frozen=True, slots=True)
class ModelHeader:
    id: int
    address: int  # of its ID register; its points start 2 registers later
    length: int  # registers after the header


@dataclass(frozen=True, slots=True)
class SunSpecMap:
    base: int  # where "SunS" is
    models: tuple[ModelHeader, ...]

    @property
    def model_ids(self) -> tuple[int, ...]:
        return tuple(m.id for m in self.models)


async def discover(gateway: GatewayCoordinator, unit_id: int, *, timeout_s: float,
                   bases: tuple[int, ...] = BASES, max_models: int = 100) -> SunSpecMap:
    """The SunSpec models of one device. `SunSpecNotFound` when no base holds the marker;
    `DeviceUnavailable` when the device does not answer (try again later)."""
    for base in bases:
        try:
            async with gateway.hold() as link:
                marker = await link.read(unit_id, base, 2, timeout_s)
        except DeviceRefused:
            continue  # no registers there
        if tuple(marker) != MARKER:
            continue
        models: list[ModelHeader] = []
        address = base + 2
        while len(models) < max_models and address + 2 <= 0x10000:
            try:
                async with gateway.hold() as link:
                    model_id, length = await link.read(unit_id, address, 2, timeout_s)
            except DeviceRefused:
                break  # a map without its end marker ends where the registers end
            if model_id == END:
                break
            models.append(ModelHeader(model_id, address, length))
            address += 2 + length
        return SunSpecMap(base, tuple(models))
    raise SunSpecNotFound(f"{gateway.name} unit {unit_id}: no SunSpec marker at "
                          f"{', '.join(map(str, bases))}")


def sunspec_profile(found: SunSpecMap, profile_id: str = SUNSPEC) -> DeviceProfile:
    """The profile of a discovered device: every mapped point at its absolute address, on the
    device's own asset (slot base 0)."""
    points: list[Point] = []
    families: set[str] = set()
    for header in found.models:
        if header.id not in MODELS or MODELS[header.id][0] in families:
            continue
        family, table = MODELS[header.id]
        families.add(family)
        start = header.address + 2
        # A model shorter than the standard one lacks its last points; one running past
        # register 65535 (a garbled header) lacks those beyond it.
        present = {p.name for p in table if p.offset + p.registers <= header.length
                   and start + p.offset + p.registers <= 0x10000}
        for sp in table:
            if sp.name not in present or (sp.sf is not None and sp.sf not in present):
                continue  # the point (or its scale factor) is not there
            datatype, missing = _TYPES[sp.type]
            points.append(Point(
                tag=sp.tag or _internal_tag(header.id, sp.name), offset=start + sp.offset,
                datatype=datatype,
                count=sp.registers if datatype in ("string", "bitfield") else None,
                scale=sp.scale, unit=sp.unit, enum=sp.enum, bits=sp.bits, missing=missing,
                scale_factor=_internal_tag(header.id, sp.sf) if sp.sf else None,
                publish=sp.tag is not None))
    if not points:
        raise SunSpecNotFound(f"none of the SunSpec models found ({found.model_ids}) is one "
                              f"bessmon maps ({sorted(MODELS)})")
    return DeviceProfile(
        id=profile_id,
        description="SunSpec models " + ", ".join(map(str, found.model_ids)),
        layout={"unit": Slot(base=0)}, points={"unit": tuple(points)}).check()


def _internal_tag(model_id: int, name: str) -> str:
    return f"sunspec_{model_id}_{name.lower()}"
