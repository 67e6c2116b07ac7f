"""A SunSpec register map for a simulated battery unit controller, as one vendor's controllers
expose it at 40000 beside their own map: common model 1, three-phase inverter model 103 and
storage model 124, then the end marker.

Written from the SunSpec model definitions with literal offsets, independently of the
connector's mapping tables (connectors/modbus/sunspec.py), so a test that discovers and maps
this image checks those tables against the standard rather than against themselves. Points the
simulator does not model hold the standard's "not implemented" values."""

from __future__ import annotations

from collections.abc import Mapping

from infra.sim.model import DERATED, FAULT, MAINTENANCE, RUNNING, STANDBY

SUNSPEC_BASE = 40000
SUNSPEC_SIZE = 200  # registers served from SUNSPEC_BASE
NA16, NA_SF = 0xFFFF, 0x8000  # uint16/enum16, int16/sunssf "not implemented"
VENDOR = "bessmon-sim"
FIRMWARE = "2.1.0"
# our status codes → SunSpec inverter operating state (St)
ST = {RUNNING: 4, STANDBY: 8, DERATED: 5, FAULT: 7, MAINTENANCE: 1}
AC_DISCONNECT = 1 << 2  # Evt1 bit: set while the unit is faulted


def _s16(value: int) -> int:
    """A signed 16-bit value as the register holds it."""
    if not -0x8000 <= value <= 0x7FFF:
        raise ValueError(f"{value} does not fit an int16")
    return value & 0xFFFF


def _exponent(magnitude: float, limit: int, *, least: int) -> int:
    """The smallest scale factor from `least` on that brings `magnitude` within `limit`."""
    exponent = least
    while magnitude / 10 ** exponent > limit:
        exponent += 1
    return exponent


def _text(value: str, registers: int) -> list[int]:
    data = value.encode()[:2 * registers].ljust(2 * registers, b"\0")
    return [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]


def sunspec_image(unit_id: str, modbus_id: int, rated_power_kw: float,
                  values: Mapping[str, float | str], temperature_c: float) -> list[int]:
    """The registers from SUNSPEC_BASE on, for a unit whose tag values (bess-unit-v1 tags,
    overrides applied) are `values`."""
    common = (_text(VENDOR, 16) + _text(f"BESS-{rated_power_kw:.0f}", 16) + _text("", 8)
              + _text(FIRMWARE, 8) + _text(unit_id, 16) + [modbus_id, NA_SF])
    code = int(values["status_code"])
    inverter = [NA16] * 50
    inverter[4] = inverter[11] = NA_SF  # A_SF, V_SF
    w_sf = _exponent(abs(float(values["active_power_kw"])) * 1000, 0x7FFF, least=2)
    inverter[12] = _s16(round(float(values["active_power_kw"]) * 1000 / 10 ** w_sf))  # W
    inverter[13] = _s16(w_sf)  # W_SF: hundreds of watts, or coarser for a big unit
    inverter[14] = 5000  # Hz
    inverter[15] = _s16(-2)  # Hz_SF
    inverter[16] = inverter[18] = inverter[20] = NA_SF  # VA, VAr, PF (int16)
    inverter[17] = inverter[19] = inverter[21] = NA_SF  # their scale factors
    inverter[22:24] = [0, 0]  # WH (acc32): 0 = not accumulated
    inverter[24] = NA_SF  # WH_SF
    inverter[26] = inverter[28] = inverter[30] = NA_SF  # DCA_SF, DCV_SF, DCW_SF
    inverter[29] = NA_SF  # DCW (int16)
    inverter[31] = _s16(round(temperature_c * 10))  # TmpCab
    inverter[32:35] = [NA_SF] * 3  # TmpSnk, TmpTrns, TmpOt
    inverter[35] = _s16(-1)  # Tmp_SF
    inverter[36] = ST.get(code, NA16)  # St
    inverter[38:40] = [0, AC_DISCONNECT if code == FAULT else 0]  # Evt1 (bitfield32)
    inverter[40:42] = [0, 0]  # Evt2
    inverter[42:50] = [0xFFFF] * 8  # EvtVnd1-4
    soc = float(values["soc_pct"])
    power = float(values["active_power_kw"])
    storage = [NA16] * 24
    cha_sf = _exponent(rated_power_kw * 1000, 0xFFFE, least=2)
    storage[0] = round(rated_power_kw * 1000 / 10 ** cha_sf)  # WChaMax
    storage[3] = 0  # StorCtl_Mod: no charge or discharge limit active
    storage[6] = round(soc * 100)  # ChaState
    storage[9] = (2 if soc <= 5 else 5 if soc >= 95 else  # ChaSt: empty / full,
                  3 if power > 0 else 4 if power < 0 else 6)  # discharging, charging, holding
    storage[10] = storage[11] = NA_SF  # OutWRte, InWRte (int16)
    storage[16] = _s16(cha_sf)  # WChaMax_SF
    storage[17:24] = [NA_SF, NA_SF, NA_SF, _s16(-2), NA_SF, NA_SF, NA_SF]  # ChaState_SF -2
    image = [0x5375, 0x6E53, 1, len(common), *common, 103, len(inverter), *inverter,
             124, len(storage), *storage, 0xFFFF, 0]
    return image + [0] * (SUNSPEC_SIZE - len(image))
