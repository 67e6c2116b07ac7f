"""The classification rules of availability rules §3, in one place: what one instant of a battery
unit counts as, given its own status interval, the exclusion windows covering it and its
children's intervals. Change an availability rule here and only here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal

from mypy_extensions import mypyc_attr

from contracts.contract import Contract
from contracts.fleet import Asset
from contracts.intervals import StatusInterval
from contracts.native import restore, state_of


class Kind(Enum):
    """How an instant is treated."""

    EXCLUDED = "excluded"  # rule 1, and rule 3 with data_gap_policy: excluded
    MAINTENANCE = "maintenance"  # rule 2: excluded while the year's allowance lasts, else lost
    COUNTED = "counted"  # rules 3-6: counted with a loss


# The class of §3 that matched (reports show hours by class).
CLASSES = ("excluded", "maintenance", "unknown", "unavailable", "derated", "available")


# Why excluded time is excluded (reports list it): through an exclusion window (its
# reason), through the unit's status row (its cause), or as a data gap or `unknown` under
# `data_gap_policy: excluded` (the row's cause, if any).
Through = Literal["window", "status", "data_gap"]
Why = tuple[Through, str]
NOT_EXCLUDED: Why = ("status", "")  # the `why` of time that is not excluded (unused)
# What an instant of a unit counts as: (class, treatment, own loss, why excluded).
Class = tuple[str, "Kind", float, Why]


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)
@dataclass(frozen=True, slots=True)
class Rules:
    excluded_causes: frozenset[str]
    # in the contract's order: overlapping windows of several excluded reasons are listed
    # under the first of them
    excluded_order: tuple[str, ...]
    derate_pro_rata: bool
    gap: Kind  # what `unknown` and gaps become
    gap_loss: float

    def __getstate__(self) -> dict[str, Any]:
        return state_of(self)

    def __setstate__(self, state: Any) -> None:
        restore(self, state)

    @classmethod
    def of(cls, contract: Contract) -> Rules:
        terms = contract.availability
        policy = terms.data_gap_policy
        return cls(frozenset(terms.excluded_causes), tuple(terms.excluded_causes),
                   terms.derate == "pro_rata",
                   Kind.EXCLUDED if policy == "excluded" else Kind.COUNTED,
                   1.0 if policy == "unavailable" else 0.0)

    def classify_unit(self, own: StatusInterval | None, excluding: str | None,
                      maintenance_window: bool) -> Class:
        """Rules 1-6, first match wins, for the unit's own status: the class, its treatment,
        for counted time the unit's own loss (before its children are rolled up), and for
        excluded time why. `excluding` is the reason of an exclusion window in force (a
        reason in `excluded_causes`), or None."""
        cause = own.cause if own else None
        if excluding is not None:
            return "excluded", Kind.EXCLUDED, 0.0, ("window", excluding)
        if cause in self.excluded_causes:
            return "excluded", Kind.EXCLUDED, 0.0, ("status", cause or "")
        if maintenance_window or cause == "scheduled_maintenance":
            return "maintenance", Kind.MAINTENANCE, 1.0, NOT_EXCLUDED
        if own is None or own.state == "unknown":
            return "unknown", self.gap, self.gap_loss, ("data_gap", cause or "")
        if own.state == "available":  # rule 6, the most common answer: no call for it
            return "available", Kind.COUNTED, 0.0, NOT_EXCLUDED
        return own.state, Kind.COUNTED, self.state_loss(own), NOT_EXCLUDED

    def first_excluding(self, active: dict[str, int]) -> str | None:
        """The reason listed first in `excluded_causes` among windows in force."""
        return next((r for r in self.excluded_order if active.get(r)), None)

    def state_loss(self, interval: StatusInterval) -> float:
        """Rules 4-6: unavailable 1; derated 1 - fraction (pro_rata) or 0; available 0."""
        if interval.state == "unavailable":
            return 1.0
        if interval.state == "derated":
            return 1.0 - (interval.derate_fraction or 0.0) if self.derate_pro_rata else 0.0
        return 0.0

    def child_loss(self, interval: StatusInterval | None) -> float:
        """A child's own loss: a gap, `unknown` or an excluded cause cost nothing; anything
        else (scheduled maintenance included) counts by its state."""
        if (interval is None or interval.state in ("unknown", "available")
                or interval.cause in self.excluded_causes):
            return 0.0
        return self.state_loss(interval)


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)
class Rollup:
    """The capacity-weighted roll-up of one unit's children (availability rules §3), planned once
    per unit: inverters weigh by rated power, blocks by rated energy, recursively; an asset with no
    reading has own loss 0, so block losses reach the unit through an inverter with no rows.
    """

    def __init__(self, asset_id: str, assets: Mapping[str, Asset]) -> None:
        self.asset_id = asset_id
        # (id, weight, plan of its own children or None for a leaf): leaves, most of the
        # assets, are read straight from `own` — this runs on every change of a child.
        self.children = tuple(
            (child_id, _weight(assets[child_id]),
             Rollup(child_id, assets) if assets[child_id].children else None)
            for child_id in assets[asset_id].children)
        self.total = sum(w for _, w, _ in self.children)
        # Each descendant → the child of this asset it lies under (itself, for a child).
        self.under: dict[str, str] = {}
        for child_id, _, plan in self.children:
            self.under[child_id] = child_id
            if plan is not None:
                self.under.update(dict.fromkeys(plan.under, child_id))

    def __getstate__(self) -> dict[str, Any]:
        return state_of(self)

    def __setstate__(self, state: Any) -> None:
        restore(self, state)

    def children_loss(self, own: Mapping[str, float],
                      rolled: dict[str, float] | None = None) -> float:
        """Weighted mean of the children's rolled-up losses. `rolled`, when given, keeps
        each child's rolled-up loss between calls: a caller that changes the own loss of
        an asset drops the entry of the child it lies under (`under`), and only that
        child's subtree is walked again — the same sums, so the same result to the bit."""
        if not self.children or not self.total:
            return 0.0
        weighted = 0.0
        for child_id, weight, plan in self.children:
            loss = rolled.get(child_id) if rolled is not None else None
            if loss is None:
                loss = own.get(child_id, 0.0)
                if plan is not None:  # max(own, its children's), as `loss` does
                    below = plan.children_loss(own)
                    if below > loss:
                        loss = below
                if rolled is not None:
                    rolled[child_id] = loss
            weighted += weight * loss
        return weighted / self.total

    def loss(self, own_loss: float, own: Mapping[str, float]) -> float:
        """max(own loss, weighted mean of the children's rolled-up losses)."""
        if not self.children:
            return own_loss
        return max(own_loss, self.children_loss(own))


def _weight(asset: Asset) -> float:
    return (asset.rated_power_kw if asset.kind == "inverter" else asset.rated_energy_kwh) or 0.0
