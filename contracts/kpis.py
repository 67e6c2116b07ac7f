"""A site's contract now, from its incremental accounting (contracts/incremental.py): the
rolling windows by the contract's rules, the open measurement period against its guarantee,
the contract year's LD so far and the projection (availability rules §4-6) — and the early
warning an operator gets when the projection's warning level leaves `ok`.

Pure: the flows (flows/site_state.py) decide when to ask, these functions what the answer is."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from contracts.engine import UnitResult, contract_availability, unit_weight
from contracts.events import Alert, ContractKpis
from contracts.incremental import ContractAccumulator
from contracts.money import YearLedger
from contracts.periods import from_us, local_midnight_us

Windows = dict[str, float | None]


def contract_kpis(acc: ContractAccumulator, final_ms: int | None, *,
                  kind: Literal["ltsa", "technical"] = "ltsa"
                  ) -> tuple[Windows, ContractKpis | None]:
    """The windows by the contract's rules (month to date, trailing 7 and 30 days, contract
    year to date, in percent) and the contract's KPIs, over final time up to `final_ms` only:
    the not-yet-final tail has no intervals yet and would count as a gap. Nothing before any
    time is final; no KPIs outside the contract's term."""
    if final_ms is None or final_ms * 1000 <= acc.start_us:
        return {}, None
    contract = acc.ctx.contract
    site = acc.ctx.site
    weights = {u.id: unit_weight(contract, u) for u in site.units}
    now_us = final_ms * 1000
    cal = acc.ctx.calendar
    tz = site.tz
    today = from_us(now_us, tz).date()

    view = acc.view(now_us)

    def availability(label: str | None = None, since_us: int | None = None) -> float | None:
        return contract_availability([
            UnitResult(uid, weights[uid], t) for uid, t in view.totals(label, since_us).items()])

    def pct(since_us: int) -> float | None:
        a = availability(None, since_us)
        return None if a is None else 100.0 * a

    windows: Windows = {
        "month_to_date": pct(local_midnight_us(today.replace(day=1), tz)),
        "trailing_7d": pct(local_midnight_us(today - dt.timedelta(days=7), tz)),
        "trailing_30d": pct(local_midnight_us(today - dt.timedelta(days=30), tz)),
    }
    year = cal.contract_year(now_us)
    if year is None:
        return windows, None
    windows["contract_year_to_date"] = pct(cal.year_bounds(year)[0])
    period = cal.containing(now_us, contract.measurement_period)
    ledger = YearLedger(contract)
    for earlier in cal.preceding_in_year(period):
        ledger.settle(year, availability(earlier.label))
    actual = availability(period.label)
    ledger.settle(year, actual)
    projection = acc.project(period, now_us, view)
    guaranteed = contract.guaranteed_pct(year)
    return windows, ContractKpis(
        contract_id=contract.id, kind=kind, currency=contract.ld.currency,
        as_of_ms=final_ms, period=period.label, period_start_ms=period.start_us // 1000,
        period_end_ms=period.end_us // 1000, contract_year=year,
        actual_pct=None if actual is None else 100.0 * actual,
        guaranteed_pct=guaranteed,
        shortfall_pct=None if actual is None else max(0.0, guaranteed - 100.0 * actual),
        ld_year_to_date=float(ledger.ld.get(year, 0)),
        projected_pct=None if projection.projected_availability is None
        else 100.0 * projection.projected_availability,
        projected_ld=float(projection.projected_ld),
        warning_level=projection.level)  # type: ignore[arg-type]


def ld_warning(active: Alert | None, kpis: ContractKpis | None, *, site_id: str,
               contract_id: str, now_ms: int) -> tuple[Alert | None, list[Alert]]:
    """Availability rules §6's warning level as an early warning: raised when it leaves `ok`,
    raised anew when it moves between watch and ld_risk, cleared when back to `ok`. A
    technical contract (or none yet) is always `ok`. Takes the alert now active (None: none)
    and gives the one active after, with the alerts to send."""
    level = "ok" if kpis is None or kpis.kind == "technical" else kpis.warning_level
    if active is not None and active.details.get("level") == level:
        return active, []
    out: list[Alert] = []
    if active is not None:
        out.append(active.model_copy(update={
            "state": "cleared", "ts_ms": now_ms,
            "message": f"{contract_id}: projection back to {level}"}))
        active = None
    if level != "ok" and kpis is not None:
        active = Alert(
            alert_id=f"ld_risk:{site_id}:{now_ms}", kind="ld_risk",
            scope_id=site_id, site_id=site_id,
            severity="major" if level == "ld_risk" else "minor", state="raised",
            raised_ms=now_ms, ts_ms=now_ms,
            message=f"{contract_id} {kpis.period}: projected "
                    f"{_pct(kpis.projected_pct)} against {kpis.guaranteed_pct:g} % "
                    f"guaranteed ({level.replace('_', ' ')}; projected LD "
                    f"{kpis.projected_ld:,.0f} {kpis.currency})",
            details={"level": level, "projected_pct": kpis.projected_pct,
                     "guaranteed_pct": kpis.guaranteed_pct,
                     "projected_ld": kpis.projected_ld, "period": kpis.period})
        out.append(active)
    return active, out


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f} %"
