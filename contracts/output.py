"""The batch command's output (availability rules §7): JSON, or CSV with one row per period per
unit.

Rounding happens only here, when printed, half-up: percentages to 3 decimals, money to 2 and
hours to 6. Hours are computed exactly in microseconds, but a loss such as 1 − 0.7 is not
exact in binary, so 10 h derated to 0.7 is 3.0000000000000004 lost hours at full precision.
Six decimals of an hour are 3.6 ms: fine enough for any real status interval, coarse enough
to drop that noise. Availability and money are computed from the full-precision values,
never from the printed ones."""

from __future__ import annotations

import csv
import io
from typing import Any

from contracts.engine import Evaluation, PeriodResult
from contracts.money import round_half_up
from contracts.periods import from_us


def _pct(value: float | None) -> float | None:
    return None if value is None else round_half_up(100.0 * value, 3)


HOUR_PLACES = 6


def printed_hours(hours: float) -> float:
    """Hours as §7 prints them (also the replay's output of the flows' periods)."""
    return round_half_up(hours, HOUR_PLACES)


def period_json(ev: Evaluation, p: PeriodResult) -> dict[str, Any]:
    tz = ev.calendar.tz
    shortfall = p.shortfall_pct
    return {
        "period": p.period.label,
        "start": from_us(p.period.start_us, tz).isoformat(),
        "end": from_us(p.period.end_us, tz).isoformat(),
        "contract_year": p.contract_year,
        "availability_pct": _pct(p.availability),
        "guaranteed_pct": p.guaranteed_pct,
        "shortfall_pct": None if shortfall is None else round_half_up(shortfall, 3),
        "ld": round_half_up(p.ld.amount, 2),
        "bonus": round_half_up(p.bonus.amount, 2),
        "units": [
            {"asset_id": u.asset_id, "window_hours": printed_hours(hours[0]),
             "excluded_hours": printed_hours(hours[1]), "lost_hours": printed_hours(hours[2]),
             "availability_pct": _pct(u.availability)}
            for u in p.units for hours in [u.totals.hours()]
        ],
    }


def evaluation_json(ev: Evaluation) -> dict[str, Any]:
    return {"contract_id": ev.contract.id, "currency": ev.contract.ld.currency,
            "periods": [period_json(ev, p) for p in ev.periods]}


CSV_COLUMNS = ("contract_id", "currency", "period", "start", "end", "contract_year",
               "availability_pct", "guaranteed_pct", "shortfall_pct", "ld", "bonus",
               "asset_id", "window_hours", "excluded_hours", "lost_hours",
               "unit_availability_pct")


def evaluation_csv(ev: Evaluation) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for p in ev.periods:
        row = period_json(ev, p)
        for unit in row["units"]:
            writer.writerow(["" if v is None else v for v in (
                ev.contract.id, ev.contract.ld.currency, row["period"], row["start"],
                row["end"], row["contract_year"], row["availability_pct"],
                row["guaranteed_pct"], row["shortfall_pct"], row["ld"], row["bonus"],
                unit["asset_id"], unit["window_hours"], unit["excluded_hours"],
                unit["lost_hours"], unit["availability_pct"])])
    return out.getvalue()
