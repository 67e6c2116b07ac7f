"""Scheduled compliance reports — the pure part (no clock, no I/O): which closed measurement
periods of a contract are due for their report, the fingerprint of a report's inputs, the
differences between two versions of a period's report, the texts of the e-mails, and the
reports configuration file (`BESSMON_REPORTS_FILE`, default `<run dir>/reports.yaml`).

The archive that stores the versions and the command that runs what is due are
`connectors/reports_archive.py` and `bessmon report run-due` (infra/cli/report.py).

- A period is **due** once it has closed and the settlement delay has passed (late data
  comes in meanwhile): `period end + delay ≤ now`, for periods that lie within the contract
  term and end after the archive's start (default: the start of the contract year `now` is
  in, so a fresh stack does not generate years of reports).
- The **fingerprint** of a report is the sha256 of a canonical JSON of everything its
  numbers depend on: the hash of the contract's terms, the period, the status intervals
  and exclusion windows the evaluation used (clipped to what it read), and the engine
  version. The same inputs always give the same fingerprint, whatever the order the
  history returned them in.
- The **differences** between two versions compare their §7 period JSON (availability
  rules §7: the figures as printed): contract availability, shortfall, LD, bonus, and each
  unit's availability, excluded and lost hours."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from contracts.contract import Contract
from contracts.intervals import ExclusionWindow, StatusInterval
from contracts.notify import Email, Zone
from contracts.periods import ContractCalendar, Period, PeriodError, PeriodKind, from_us
from contracts.yamltext import IsoDate, YamlDocument, read_text, validate

# Bump when the engine's rules change the numbers it gives for the same input: every
# archived report's fingerprint changes with it, so the next run makes new versions (only
# where the figures really differ: see connectors/reports_archive.py).
ENGINE_VERSION = "availability-rules/1"
US_PER_HOUR = 3_600_000_000
DEFAULT_SETTLEMENT_H = 48.0
DEFAULT_SUMMARY_AT = "07:00"
MIB = 1024 * 1024
DEFAULT_ATTACH_MAX_BYTES = 10 * MIB
ATTACH_MAX_BYTES_LIMIT = 100 * MIB  # no mail server takes more (most refuse above 25 MB)


# -- configuration -----------------------------------------------------------------------------


class ReportsConfig(BaseModel):
    """`BESSMON_REPORTS_FILE` (default `<run dir>/reports.yaml`); every key optional.

    settlement_delay_h: hours after a period's end before its report is made (late data).
    archive_start: site-local date; no report of a period that ends on or before it
        (default: the contract year the first run is in, remembered by the archive).
    daily_summary: addresses that get the fleet's daily availability summary.
    daily_summary_at / daily_summary_tz: when it is sent (HH:MM in that zone).
    base_url: the API's address for the download links (default the notifier's).
    attach_max_bytes: the most a report e-mail's attachments (PDF, XLSX, CSV) may weigh
        together, in bytes (default 10 MiB; base64 makes it a third more on the wire);
        above it they are not attached and the e-mail says so. 0: never attach."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    settlement_delay_h: Annotated[float, Field(ge=0, le=24 * 366, allow_inf_nan=False)] = \
        DEFAULT_SETTLEMENT_H
    archive_start: IsoDate | None = None
    daily_summary: tuple[Email, ...] = ()
    daily_summary_at: Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")] = \
        DEFAULT_SUMMARY_AT
    daily_summary_tz: Zone = "UTC"
    base_url: Annotated[str, Field(pattern=r"^https?://[^\s]+/$", max_length=2000)] | None = None
    attach_max_bytes: Annotated[int, Field(strict=True, ge=0, le=ATTACH_MAX_BYTES_LIMIT)] = \
        DEFAULT_ATTACH_MAX_BYTES

    @property
    def settlement_delay_us(self) -> int:
        return round(self.settlement_delay_h * US_PER_HOUR)


def parse_reports_config(text: str, source: str) -> ReportsConfig:
    doc = YamlDocument(text, source)
    if doc.data is None:
        return ReportsConfig()
    return validate(doc, ReportsConfig, "settlement_delay_h, archive_start, daily_summary, …")


def load_reports_config(path: Path) -> ReportsConfig:
    """The file's configuration; the defaults when there is no file."""
    if not path.exists():
        return ReportsConfig()
    return parse_reports_config(read_text(path), str(path))


# -- due periods -------------------------------------------------------------------------------


def default_archive_start(calendar: ContractCalendar, now_us: int) -> int:
    """The start of the contract year containing `now` (the last year once the term is over,
    the first before it starts)."""
    year = calendar.contract_year(now_us)
    if year is None:
        year = 1 if now_us < calendar.start_us else calendar.term_years
    return calendar.year_bounds(year)[0]


def due_periods(calendar: ContractCalendar, kind: PeriodKind, now_us: int,
                settlement_us: int, archive_start_us: int) -> list[Period]:
    """The closed periods whose report is due at `now_us`, in time order: each ends after
    `archive_start_us`, lies (at least partly) within the contract term, and
    `end + settlement_us ≤ now_us`."""
    if settlement_us < 0:
        raise ValueError("the settlement delay cannot be negative")
    first_us = max(archive_start_us, calendar.start_us)
    if first_us >= calendar.end_us:
        return []
    period = calendar.containing(first_us, kind)
    if period.end_us <= archive_start_us:  # archive start exactly at a period's end
        period = calendar.following(period)
    out: list[Period] = []
    while period.start_us < calendar.end_us and period.end_us + settlement_us <= now_us:
        out.append(period)
        try:
            period = calendar.following(period)
        except PeriodError:  # past the last contract year
            break
    return out


# -- fingerprints ------------------------------------------------------------------------------


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False, default=_json_default).encode("utf-8")


def _json_default(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def terms_hash(contract: Contract) -> str:
    """The hash of what the contract says about availability and money: every term but who
    receives the reports (a new recipient does not make a new version) and the battery
    warranty (no availability term)."""
    terms = contract.model_dump(mode="json", exclude={"report_recipients", "warranty"})
    return sha256_hex(canonical_json(terms))


def _sort_key(row: list[Any]) -> bytes:
    return canonical_json(row)


def fingerprint(contract: Contract, period: str, intervals: Iterable[StatusInterval],
                exclusions: Iterable[ExclusionWindow] = (), *,
                engine_version: str = ENGINE_VERSION) -> str:
    """sha256 (hex) of the canonical JSON of a report's inputs; independent of the order
    of `intervals` and `exclusions`."""
    rows = sorted(([iv.asset_id, iv.start_us, iv.end_us, iv.state, iv.derate_fraction,
                    iv.cause] for iv in intervals), key=_sort_key)
    windows = sorted(([w.scope_id, w.start_us, w.end_us, w.reason] for w in exclusions),
                     key=_sort_key)
    return sha256_hex(canonical_json({
        "contract_terms": terms_hash(contract), "period": period, "intervals": rows,
        "exclusions": windows, "engine": engine_version}))


# -- differences -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    """One figure of a period's report that changed between two versions. `scope` is
    "contract" or a unit's id; values as printed (None: no counted time)."""

    scope: str
    field: str
    before: float | None
    after: float | None
    text: str

    def as_json(self) -> dict[str, Any]:
        return {"scope": self.scope, "field": self.field, "before": self.before,
                "after": self.after, "text": self.text}


_CONTRACT_FIELDS = (("availability_pct", "availability", "pct"),
                    ("shortfall_pct", "shortfall", "pp"),
                    ("ld", "LD", "money"), ("bonus", "bonus", "money"))
_UNIT_FIELDS = (("availability_pct", "availability", "pct"),
                ("excluded_hours", "excluded", "h"), ("lost_hours", "lost", "h"))


def _shown(value: float | None, unit: str, currency: str) -> str:
    if value is None:
        return "n/a"
    if unit == "pct":
        return f"{value:.3f} %"
    if unit == "pp":
        return f"{value:.3f} pp"
    if unit == "money":
        return f"{currency} {value:,.2f}"
    return f"{value:.3f} h"


def differences(before: Mapping[str, Any], after: Mapping[str, Any],
                currency: str) -> list[Difference]:
    """What changed from one version's period (§7 JSON: `contracts.output.period_json`) to
    the next's: the contract's figures first, then each unit's, in the units' order."""
    out: list[Difference] = []
    for key, name, unit in _CONTRACT_FIELDS:
        a, b = before.get(key), after.get(key)
        if a != b:
            out.append(Difference("contract", key, a, b,
                                  f"{name} {_shown(a, unit, currency)} → "
                                  f"{_shown(b, unit, currency)}"))
    old_units = {u["asset_id"]: u for u in before.get("units", [])}
    for unit_now in after.get("units", []):
        asset = unit_now["asset_id"]
        old = old_units.get(asset, {})
        for key, name, unit in _UNIT_FIELDS:
            a, b = old.get(key), unit_now.get(key)
            if a != b:
                out.append(Difference(asset, key, a, b,
                                      f"{asset} {name} {_shown(a, unit, currency)} → "
                                      f"{_shown(b, unit, currency)}"))
    return out


def differences_line(diffs: Sequence[Difference], limit: int = 6) -> str:
    """The differences in one line: "availability 97.100 % → 98.300 %, LD EUR 12,000.00 →
    EUR 0.00" (the first `limit`, then how many more)."""
    if not diffs:
        return "no figure changed"
    shown = ", ".join(d.text for d in diffs[:limit])
    more = len(diffs) - limit
    return shown + (f" and {more} more" if more > 0 else "")


# -- e-mail texts ------------------------------------------------------------------------------


def attachments_fit(total_bytes: int, max_bytes: int) -> bool:
    """Whether a report's files, `total_bytes` together, may ride along in its e-mail."""
    return 0 < total_bytes <= max_bytes


def too_large_line(total_bytes: int, max_bytes: int) -> str:
    """What a report e-mail says when its files are not attached for their size."""
    if max_bytes == 0:
        return ("The report's files are not attached (attach_max_bytes is 0): download "
                "them below.")
    return (f"The report's files are not attached: together {_mib(total_bytes)}, more than "
            f"the {_mib(max_bytes)} a report e-mail may carry (attach_max_bytes). Download "
            "them below.")


def _mib(n: int) -> str:
    return f"{n / MIB:.1f} MiB" if n >= MIB // 10 else f"{n:,} bytes"


def version_email(contract_id: str, site_name: str, summary: Mapping[str, Any],
                  currency: str, version: int, diffs: Sequence[Difference],
                  links: Mapping[str, str], note: str | None = None) -> tuple[str, str]:
    """(subject, plain-text body) of the e-mail announcing a new version of a period's
    report; `note` (why the files are not attached) goes before the download links."""
    period = summary["period"]
    subject = (f"Compliance report {contract_id} {period}"
               + (f" (version {version})" if version > 1 else ""))
    avail = _shown(summary.get("availability_pct"), "pct", currency)
    lines = [
        f"The compliance report of {contract_id} ({site_name}) for {period} is ready"
        + (f": version {version}, after late data or a new exclusion." if version > 1
           else "."),
        "",
        f"Availability: {avail} (guaranteed {summary['guaranteed_pct']:.3f} %)",
        f"Liquidated damages: {_shown(summary.get('ld'), 'money', currency)}",
        f"Bonus: {_shown(summary.get('bonus'), 'money', currency)}",
    ]
    if version > 1:
        lines += ["", "Changes from the previous version:"]
        lines += [f"  - {d.text}" for d in diffs] or ["  - no figure changed"]
    if note:
        lines += ["", note]
    lines += ["", "Download (sign in to the dashboard first):"]
    lines += [f"  {name.upper() if len(name) <= 4 else name.capitalize()}: {url}"
              for name, url in links.items()]
    return subject, "\n".join(lines) + "\n"


@dataclass(frozen=True)
class SummaryLine:
    """One contract's open period so far, for the daily summary."""

    contract_id: str
    site_id: str
    period: str
    availability_pct: float | None
    guaranteed_pct: float
    ld: float
    currency: str


def daily_summary_email(day: dt.date, lines: Sequence[SummaryLine]) -> tuple[str, str]:
    subject = f"Fleet availability summary {day.isoformat()}"
    rows = [f"Availability of each contract's open measurement period so far "
            f"(final data), {day.isoformat()}:", ""]
    for s in lines:
        pct = _shown(s.availability_pct, "pct", s.currency)
        flag = "" if s.availability_pct is None or s.availability_pct >= s.guaranteed_pct \
            else "  BELOW GUARANTEE"
        rows.append(f"{s.contract_id} ({s.site_id}) {s.period}: {pct} of "
                    f"{s.guaranteed_pct:.3f} % guaranteed, LD so far "
                    f"{_shown(s.ld, 'money', s.currency)}{flag}")
    if not lines:
        rows.append("No contracts.")
    return subject, "\n".join(rows) + "\n"


def summary_day_due(config: ReportsConfig, now_us: int) -> dt.date | None:
    """The local day whose daily summary is due at `now_us` (None: before today's time,
    or no recipients)."""
    if not config.daily_summary:
        return None
    local = from_us(now_us, ZoneInfo(config.daily_summary_tz))
    hour, minute = (int(x) for x in config.daily_summary_at.split(":"))
    if (local.hour, local.minute) < (hour, minute):
        return None
    return local.date()
