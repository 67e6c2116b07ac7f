"""LTSA contract terms (availability rules §1, "Contract"), loaded from YAML and validated. Unknown
keys are refused: in a contract a misspelt key must never silently fall back to a default."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from contracts.errors import InvalidInput
from contracts.events import Cause
from contracts.fleet import Fleet
from contracts.notify import Email
from contracts.periods import PeriodKind
from contracts.yamltext import CURRENCY_PATTERN, IsoDate, YamlDocument, read_text, validate

# Numbers are strict: YAML's `yes` or `"97"` is not a percentage (nothing is guessed).
Pct = Annotated[float, Field(ge=0, le=100, allow_inf_nan=False, strict=True)]
Money = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]
FIRST_YEAR, LAST_YEAR = 1900, 9998


class _Terms(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AvailabilityTerms(_Terms):
    weight: Literal["equal", "power", "energy"]
    derate: Literal["pro_rata", "available"]
    data_gap_policy: Literal["available", "unavailable", "excluded"]
    excluded_causes: tuple[Cause, ...]
    maintenance_allowance_hours: Annotated[float, Field(ge=0, allow_inf_nan=False, strict=True)]

    @field_validator("excluded_causes")
    @classmethod
    def _unique(cls, causes: tuple[Cause, ...]) -> tuple[Cause, ...]:
        seen = {c for c in causes if causes.count(c) > 1}
        if seen:
            raise ValueError(f"lists {sorted(seen)[0]!r} twice")
        return causes


class Guarantee(_Terms):
    default_pct: Pct
    by_contract_year: dict[Annotated[int, Field(ge=1, strict=True)], Pct] = Field(
        default_factory=dict)


class LiquidatedDamages(_Terms):
    currency: Annotated[str, Field(pattern=CURRENCY_PATTERN)]
    step_pct: Annotated[float, Field(gt=0, le=100, allow_inf_nan=False, strict=True)]
    rate_per_pct: Money
    cap_per_contract_year: Money


class Bonus(_Terms):
    threshold_pct: Pct
    rate_per_pct: Money
    cap_per_contract_year: Money


class Range(_Terms):
    """Allowed values `min ≤ x ≤ max` (both inclusive)."""

    min: Annotated[float, Field(allow_inf_nan=False, strict=True)]
    max: Annotated[float, Field(allow_inf_nan=False, strict=True)]

    @field_validator("max")
    @classmethod
    def _above_min(cls, high: float, info: ValidationInfo) -> float:
        low = info.data.get("min")
        if low is not None and not high > low:
            raise ValueError(f"must be greater than min (got {high:g} ≤ {low:g})")
        return high


class TemperatureRange(Range):
    min: Annotated[float, Field(ge=-60, le=100, allow_inf_nan=False, strict=True)]
    max: Annotated[float, Field(ge=-60, le=100, allow_inf_nan=False, strict=True)]


class PctRange(Range):
    min: Pct
    max: Pct


SohPct = Annotated[float, Field(gt=0, le=100, allow_inf_nan=False, strict=True)]


class Warranty(_Terms):
    """The battery warranty's terms (each optional): what the health analytics
    (contracts/battery_health.py) and the warranty evidence pack (contracts/warranty.py)
    measure the unit against."""

    # The state of health (% of rated energy) at which the battery has reached its end of life.
    end_of_life_soh_pct: Annotated[float | None, Field(gt=0, lt=100, allow_inf_nan=False,
                                                       strict=True)] = None
    # Equivalent full cycles a year at most (throughput / 2 × rated energy, annualised).
    max_efc_per_year: Annotated[float | None, Field(gt=0, allow_inf_nan=False,
                                                    strict=True)] = None
    # The mean C-rate (|P| / rated energy) while operating, at most.
    max_average_c_rate: Annotated[float | None, Field(gt=0, allow_inf_nan=False,
                                                      strict=True)] = None
    # The hottest cell's allowed range, °C.
    operating_temperature_c: TemperatureRange | None = None
    # The allowed state of charge, % (outside it the warranty may be void).
    soc_window_pct: PctRange | None = None
    # The guaranteed SOH at the end of each year of service (from the unit's commissioning):
    # year → min SOH %; a year not listed takes the latest listed year before it.
    min_soh_pct_by_year: dict[Annotated[int, Field(ge=1, le=60, strict=True)], SohPct] = Field(
        default_factory=dict)

    @field_validator("min_soh_pct_by_year")
    @classmethod
    def _not_rising(cls, table: dict[int, float]) -> dict[int, float]:
        years = sorted(table)
        for a, b in itertools.pairwise(years):
            if table[b] > table[a]:
                raise ValueError(f"year {b} guarantees more than year {a} "
                                 f"({table[b]:g} > {table[a]:g}): a guarantee never rises")
        return dict(sorted(table.items()))

    def min_soh_pct(self, service_year: int) -> tuple[int, float] | None:
        """(the year listed, its min SOH %) that holds in `service_year`; None before the
        first year listed."""
        listed = [y for y in self.min_soh_pct_by_year if y <= service_year]
        return None if not listed else (max(listed), self.min_soh_pct_by_year[max(listed)])


class Contract(_Terms):
    id: Annotated[str, Field(min_length=1)]
    site: Annotated[str, Field(min_length=1)]
    start: IsoDate
    term_years: Annotated[int, Field(ge=1, le=60, strict=True)]
    measurement_period: PeriodKind
    availability: AvailabilityTerms
    guarantee: Guarantee
    ld: LiquidatedDamages
    bonus: Bonus | None = None
    early_warning_margin_pct: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False,
                                                     strict=True)]
    # Who gets each new version of the scheduled compliance reports by e-mail
    # (contracts/reporting.py); optional, not a term: it is left out of report fingerprints.
    report_recipients: tuple[Email, ...] = ()
    # The battery warranty (optional, not an availability term: left out of report
    # fingerprints); without it the health analytics use DEFAULT_END_OF_LIFE_SOH_PCT.
    warranty: Warranty | None = None

    @field_validator("term_years")
    @classmethod
    def _term_within_the_calendar(cls, term: int, info: ValidationInfo) -> int:
        """Dates must hold the whole term and the periods next to it (a date's year ends at
        9999; instants before 1900 are no contract's)."""
        start = info.data.get("start")
        if start is not None and not FIRST_YEAR <= start.year <= LAST_YEAR - term:
            raise ValueError(f"a {term}-year term from {start.isoformat()} does not lie "
                             f"within the years {FIRST_YEAR}..{LAST_YEAR}")
        return term

    @field_validator("guarantee")
    @classmethod
    def _years_within_term(cls, guarantee: Guarantee, info: ValidationInfo) -> Guarantee:
        term = info.data.get("term_years")
        late = [y for y in guarantee.by_contract_year if term and y > term]
        if late:
            raise ValueError(f"by_contract_year names year {min(late)} of a {term}-year term")
        return guarantee

    def guaranteed_pct(self, contract_year: int) -> float:
        return self.guarantee.by_contract_year.get(contract_year, self.guarantee.default_pct)

    @property
    def maintenance_allowance_us(self) -> int:
        return round(self.availability.maintenance_allowance_hours * 3_600_000_000)


def parse_contract(text: str, source: str) -> Contract:
    return validate(YamlDocument(text, source), Contract,
                    "id, site, start, … (availability rules §1)")


def load_contract(path: Path) -> Contract:
    return parse_contract(read_text(path), str(path))


def load_contracts(directory: Path) -> dict[str, Contract]:
    """Every `*.yaml` contract of a directory, by site; each site at most once."""
    out: dict[str, Contract] = {}
    for path in sorted(directory.glob("*.yaml")):
        contract = load_contract(path)
        if contract.site in out:
            raise InvalidInput(str(path), "site", f"site {contract.site!r} already has "
                               f"contract {out[contract.site].id!r}")
        out[contract.site] = contract
    return out


def fleet_contracts(contracts: Mapping[str, Contract], fleet: Fleet) -> dict[str, Contract]:
    """The contracts (by site) of the sites in this fleet; one for a site the fleet does not
    have is left out (a site without a contract gets technical availability)."""
    sites = {s.id for s in fleet.sites}
    return {site_id: c for site_id, c in contracts.items() if site_id in sites}
