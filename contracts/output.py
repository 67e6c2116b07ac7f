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
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from contracts.engine import Evaluation, PeriodResult
from contracts.events import PeriodAvailability
from contracts.fleet import Fleet
from contracts.money import round_half_up
from contracts.periods import from_us

HOUR_PLACES = 6


def printed_hours(hours: float) -> float:
    """Hours as §7 prints them (also the replay's output of the flows' periods)."""
    return round_half_up(hours, HOUR_PLACES)


def printed_period(*, period: str, start_us: int, end_us: int, tz: ZoneInfo,
                   contract_year: int, availability_pct: float | None, guaranteed_pct: float,
                   shortfall_pct: float | None, ld: float | Decimal, bonus: float | Decimal,
                   units: Iterable[tuple[str, tuple[float, float, float], float | None]]
                   ) -> dict[str, Any]:
    """One period as §7's JSON prints it, whoever computed it (the batch evaluation, or the
    flows' final periods that `bessmon replay` prints); `units` as (asset id, (window,
    excluded, lost hours), availability %)."""
    return {
        "period": period,
        "start": from_us(start_us, tz).isoformat(),
        "end": from_us(end_us, tz).isoformat(),
        "contract_year": contract_year,
        "availability_pct": _rounded_pct(availability_pct),
        "guaranteed_pct": guaranteed_pct,
        "shortfall_pct": _rounded_pct(shortfall_pct),
        "ld": round_half_up(ld, 2),
        "bonus": round_half_up(bonus, 2),
        "units": [
            {"asset_id": asset_id, "window_hours": printed_hours(hours[0]),
             "excluded_hours": printed_hours(hours[1]), "lost_hours": printed_hours(hours[2]),
             "availability_pct": _rounded_pct(pct)}
            for asset_id, hours, pct in units
        ],
    }


def _rounded_pct(value: float | None) -> float | None:
    return None if value is None else round_half_up(value, 3)


def _fraction_pct(value: float | None) -> float | None:
    return None if value is None else 100.0 * value


def period_json(ev: Evaluation, p: PeriodResult) -> dict[str, Any]:
    return printed_period(
        period=p.period.label, start_us=p.period.start_us, end_us=p.period.end_us,
        tz=ev.calendar.tz, contract_year=p.contract_year,
        availability_pct=_fraction_pct(p.availability), guaranteed_pct=p.guaranteed_pct,
        shortfall_pct=p.shortfall_pct, ld=p.ld.amount, bonus=p.bonus.amount,
        units=[(u.asset_id, u.totals.hours(), _fraction_pct(u.availability))
               for u in p.units])


def periods_json(periods: Sequence[PeriodAvailability], fleet: Fleet) -> list[dict[str, Any]]:
    """§7's JSON per contract from the flows' final periods (`bessmon replay`): the same
    document `evaluation_json` gives for the same contract and periods."""
    out = []
    for site_id in sorted({p.site_id for p in periods}):
        tz = fleet.site(site_id).tz
        mine = sorted((p for p in periods if p.site_id == site_id), key=lambda p: p.start_ms)
        out.append({"contract_id": mine[0].contract_id, "currency": mine[0].currency,
                    "periods": [printed_period(
                        period=p.period, start_us=p.start_ms * 1000, end_us=p.end_ms * 1000,
                        tz=tz, contract_year=p.contract_year,
                        availability_pct=p.availability_pct, guaranteed_pct=p.guaranteed_pct,
                        shortfall_pct=p.shortfall_pct, ld=p.ld, bonus=p.bonus,
                        units=[(u.asset_id, (u.window_hours, u.excluded_hours, u.lost_hours),
                                u.availability_pct) for u in p.units])
                        for p in mine]})
    return out


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
