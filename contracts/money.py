"""Liquidated damages and bonus (availability rules §5) and rounding for print
(availability rules §4-5)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from contracts.contract import Contract

FLOOR_TOLERANCE = 1e-9  # so that a shortfall of 0.03 in steps of 0.01 stays 0.03


def round_half_up(value: float | Decimal, places: int) -> float:
    """Round as people do by hand: 2.0005 → 2.001 (of the number as printed, not its binary
    approximation)."""
    exact = value if isinstance(value, Decimal) else Decimal(repr(value))
    return float(exact.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


def billable_pct(points: float, step_pct: float) -> Decimal:
    """`points` floored to whole steps, exactly: floor(points / step + 1e-9) · step."""
    steps = math.floor(points / step_pct + FLOOR_TOLERANCE)
    return Decimal(steps) * Decimal(repr(step_pct))


@dataclass(frozen=True)
class Charge:
    """One period's LD or bonus, with every step of its computation (for reports)."""

    points_pct: float  # shortfall (LD) or excess (bonus) before flooring
    billable_pct: Decimal
    uncapped: Decimal  # billable · rate
    cap_left_before: Decimal  # what the contract year's cap still allowed
    amount: Decimal  # min(uncapped, cap left)


NO_CHARGE = Charge(0.0, Decimal(0), Decimal(0), Decimal(0), Decimal(0))


def charge(points: float, step_pct: float, rate: Decimal, cap: Decimal,
           already: Decimal) -> Charge:
    if points <= 0:
        return Charge(max(points, 0.0), Decimal(0), Decimal(0), max(cap - already, Decimal(0)),
                      Decimal(0))
    billable = billable_pct(points, step_pct)
    uncapped = billable * rate
    left = max(cap - already, Decimal(0))
    return Charge(points, billable, uncapped, left, min(uncapped, left))


class YearLedger:
    """LD charged and bonus paid so far per contract year (caps apply per year,
    availability rules §5)."""

    def __init__(self, contract: Contract) -> None:
        self.contract = contract
        self.ld: dict[int, Decimal] = {}
        self.bonus: dict[int, Decimal] = {}

    def settle(self, year: int, availability: float | None) -> tuple[Charge, Charge]:
        """LD and bonus of the next period (in time order) of contract year `year`."""
        if availability is None:
            return NO_CHARGE, NO_CHARGE
        c = self.contract
        pct = 100.0 * availability
        ld = charge(c.guaranteed_pct(year) - pct, c.ld.step_pct, c.ld.rate_per_pct,
                    c.ld.cap_per_contract_year, self.ld.get(year, Decimal(0)))
        self.ld[year] = self.ld.get(year, Decimal(0)) + ld.amount
        bonus = NO_CHARGE
        if c.bonus is not None:
            bonus = charge(pct - c.bonus.threshold_pct, c.ld.step_pct, c.bonus.rate_per_pct,
                           c.bonus.cap_per_contract_year, self.bonus.get(year, Decimal(0)))
            self.bonus[year] = self.bonus.get(year, Decimal(0)) + bonus.amount
        return ld, bonus
