"""The warranty evidence pack of one battery unit over a period, as an xlsx workbook and a
PDF (the figures: contracts/warranty.py; the route: api/routes/warranty.py).

The workbook holds the summary (unit, period, contract, every figure against its term and the
verdict) and the data behind each figure, one sheet each: the power buckets with the
throughput and cycles they add up to, the SOH, hottest-cell temperature and SOC buckets (each
marked when outside the allowed range), the excursions, the status intervals and the
availability's hours by class, and the warranty terms as the contract file states them. The
PDF holds the summary, the verdicts and the method. Both lay out the same rows (built once
here), so they cannot disagree on a number; no generation time is written: the same data
gives the same file."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Sequence
from dataclasses import dataclass

from api.reports.data import CLASSES, Cell, Column
from contracts.battery_health import HOUR_MS, Bucket
from contracts.contract import Range, Warranty
from contracts.warranty import Assessment, Excursions, Figure, Verdict

VERDICTS: dict[Verdict, str] = {"within": "within the term", "exceeded": "outside the term",
                                "no_term": "no term", "no_data": "no data"}

METHOD = (
    "Availability is the contract engine's: A = 1 − L / (T − E) by the contract's rules "
    "(exclusions, the contract year's maintenance allowance, the data-gap policy), over the "
    "unit's status intervals; its term is the guarantee of the contract year holding the "
    "period's start.",
    "Throughput is ∑ |mean power| × width of the power buckets at the grid side (a sign "
    "change inside a bucket loses throughput); equivalent full cycles = throughput / (2 × "
    "rated energy), annualised over the time with power data.",
    "The average C-rate is the time-weighted mean of |P| / rated energy over the buckets at "
    "0.05 C or more (idle time left out).",
    "SOH is the first and last SOH bucket of the period; the last is held against the "
    "guaranteed minimum of its year of service (year 1 from commissioning).",
    "Temperature (the hottest cell of the unit's blocks) and SOC: a bucket whose mean lies "
    "outside the allowed range counts its whole width; adjacent buckets outside on one side "
    "are one excursion. An excursion shorter than a bucket may not show: the bucket width "
    "bounds the resolution.",
)


@dataclass(frozen=True)
class IntervalLine:
    asset_id: str
    start_ms: int
    end_ms: int | None
    state: str
    derate_fraction: float | None
    cause: str | None


@dataclass(frozen=True)
class WarrantyPack:
    unit_id: str
    site_id: str
    site_name: str | None
    customer: str
    vendor: str | None
    model: str | None
    rated_energy_mwh: float
    rated_power_mw: float
    commissioned: dt.date
    contract_id: str | None
    start_ms: int
    end_ms: int
    step_ms: int  # the buckets' width
    assessment: Assessment
    warranty: Warranty | None
    power: Sequence[Bucket]
    soh: Sequence[Bucket]
    temperature: Sequence[Bucket]
    soc: Sequence[Bucket]
    intervals: Sequence[IntervalLine]
    class_hours: Sequence[tuple[str, float]]  # the availability's hours by class

    def fields(self) -> tuple[tuple[str, str], ...]:
        site = f"{self.site_name} ({self.site_id})" if self.site_name else self.site_id
        return (
            ("Unit", self.unit_id),
            ("Site", site),
            ("Customer", self.customer),
            ("Vendor / model", " / ".join(v for v in (self.vendor, self.model) if v) or "—"),
            ("Rated", f"{self.rated_energy_mwh:g} MWh, {self.rated_power_mw:g} MW"),
            ("Commissioned", self.commissioned.isoformat()),
            ("Contract", self.contract_id or "none"),
            ("Period (UTC)", f"{utc(self.start_ms)} to {utc(self.end_ms)}"),
            ("Bucket width", f"{self.step_ms // 60_000} min"),
        )


def utc(ms: int | None) -> str:
    if ms is None:
        return ""
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def class_hours(class_us: dict[str, int]) -> list[tuple[str, float]]:
    return [(title, class_us.get(key, 0) / 3_600_000_000) for key, title in CLASSES]


def terms_rows(w: Warranty | None) -> list[tuple[Cell, ...]]:
    if w is None:
        return [("warranty", "the contract file has no warranty section")]
    out: list[tuple[Cell, ...]] = []
    for key, value in w.model_dump().items():
        if value is None or value == {}:
            out.append((key, "not stated"))
        elif isinstance(value, dict) and key != "min_soh_pct_by_year":
            out.append((key, f"{value['min']:g} to {value['max']:g}"))
        elif isinstance(value, dict):
            out.append((key, ", ".join(f"year {y}: {p:g} %" for y, p in value.items())))
        else:
            out.append((key, value))
    return out


# -- the tables -------------------------------------------------------------------------------

SUMMARY = (Column("figure", "Figure", "text", 38), Column("value", "Value", "number", 12),
           Column("unit", "Unit", "text", 7), Column("term", "Term", "text", 30),
           Column("verdict", "Verdict", "text", 15), Column("detail", "How measured", "text", 44))
BUCKET = (Column("start", "Start (UTC)", "text", 20), Column("width_min", "Width min", "int", 9))
POWER = (*BUCKET, Column("mean_kw", "Mean power kW (> 0 discharging)", "number", 16),
         Column("throughput_kwh", "Throughput kWh", "number", 14),
         Column("efc_cumulative", "Cycles so far (EFC)", "number", 14))
EXCURSIONS = (Column("quantity", "Quantity", "text", 18),
              Column("start", "Start (UTC)", "text", 20), Column("end", "End (UTC)", "text", 20),
              Column("hours", "Hours", "number", 10), Column("side", "Side", "text", 8),
              Column("extreme", "Extreme bucket mean", "number", 12))
INTERVALS = (Column("asset_id", "Asset", "text", 22), Column("start", "Start (UTC)", "text", 20),
             Column("end", "End (UTC)", "text", 20), Column("state", "State", "text", 12),
             Column("derate_fraction", "Derate fraction", "number", 10),
             Column("cause", "Cause", "text", 20))
CLASS_HOURS = (Column("class", "Class", "text", 30), Column("hours", "Hours", "number", 12))
TERMS = (Column("term", "Term (contract file warranty:)", "text", 30),
         Column("value", "Value", "text", 50))


def summary_rows(figures: Sequence[Figure]) -> list[tuple[Cell, ...]]:
    return [(f.title, f.value, f.unit, f.term or "—", VERDICTS[f.verdict], f.detail)
            for f in figures]


def power_rows(pack: WarrantyPack) -> list[tuple[Cell, ...]]:
    return [(utc(b.start_ms), b.width_ms // 60_000, b.mean, abs(b.mean) * b.width_ms / HOUR_MS,
             efc) for b, efc in zip(pack.power, pack.assessment.efc_cumulative, strict=True)]


def value_columns(title: str) -> tuple[Column, ...]:
    return (*BUCKET, Column("mean", title, "number", 14),
            Column("outside", "Outside the allowed range", "text", 12))


def value_rows(values: Sequence[Bucket], allowed: Range | None) -> list[tuple[Cell, ...]]:
    def side(v: float) -> str:
        if allowed is None:
            return ""
        return "below" if v < allowed.min else "above" if v > allowed.max else ""
    return [(utc(b.start_ms), b.width_ms // 60_000, b.mean, side(b.mean)) for b in values]


def excursion_rows(pack: WarrantyPack) -> list[tuple[Cell, ...]]:
    out: list[tuple[Cell, ...]] = []
    found: tuple[tuple[str, Excursions | None], ...] = (
        ("Hottest cell °C", pack.assessment.temperature), ("State of charge %",
                                                            pack.assessment.soc))
    for name, ex in found:
        for e in () if ex is None else ex.episodes:
            out.append((name, utc(e.start_ms), utc(e.end_ms), e.hours, e.side, e.extreme))
    return out


def interval_rows(pack: WarrantyPack) -> list[tuple[Cell, ...]]:
    return [(i.asset_id, utc(i.start_ms), utc(i.end_ms) or "open", i.state, i.derate_fraction,
             i.cause or "") for i in pack.intervals]


def sheets(pack: WarrantyPack) -> list[tuple[str, tuple[Column, ...], list[tuple[Cell, ...]]]]:
    """The data sheets: (name, columns, rows)."""
    w = pack.warranty
    return [
        ("Power", POWER, power_rows(pack)),
        ("SOH", value_columns("Mean SOH %"), value_rows(pack.soh, None)),
        ("Hottest cell", value_columns("Mean °C"),
         value_rows(pack.temperature, None if w is None else w.operating_temperature_c)),
        ("SOC", value_columns("Mean SOC %"),
         value_rows(pack.soc, None if w is None else w.soc_window_pct)),
        ("Excursions", EXCURSIONS, excursion_rows(pack)),
        ("Status intervals", INTERVALS, interval_rows(pack)),
        ("Availability hours", CLASS_HOURS, [(c, h) for c, h in pack.class_hours]),
        ("Warranty terms", TERMS, terms_rows(w)),
    ]


# -- the writers ------------------------------------------------------------------------------

def to_xlsx(pack: WarrantyPack) -> bytes:
    """Sheet Summary (the unit and period above the figures), then the data sheets."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    from api.reports.xlsx import _sheet_table

    wb = Workbook()
    summary = wb.active
    assert summary is not None
    summary.title = "Summary"
    fields = pack.fields()
    for r, (title, value) in enumerate(fields, start=1):
        summary.cell(r, 1, title).font = Font(bold=True)
        summary.cell(r, 2, value)
    _sheet_table(summary, len(fields) + 2, SUMMARY, summary_rows(pack.assessment.figures))
    for name, columns, rows in sheets(pack):
        _sheet_table(wb.create_sheet(name), 1, columns, rows)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def _value_text(f: Figure) -> str:
    if f.value is None:
        return "—"
    if f.key.endswith("_excursions"):
        return f"{f.value:.0f}"
    return f"{f.value:,.3f}"


def to_pdf(pack: WarrantyPack) -> bytes:
    """A4 landscape: the unit and period, the figures with their terms and verdicts, the
    excursions (at most `PDF_EXCURSIONS`; all are in the workbook) and the method."""
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.platypus import Flowable, Paragraph, SimpleDocTemplate, Spacer

    from api.reports.pdf import BOLD, FONT, _esc, _key_values, _pdf_table, _register_fonts

    _register_fonts()
    out = io.BytesIO()
    title = f"Warranty evidence pack {pack.unit_id}"
    doc = SimpleDocTemplate(out, pagesize=landscape(A4), leftMargin=14 * mm,
                            rightMargin=14 * mm, topMargin=12 * mm, bottomMargin=14 * mm,
                            title=title, author="bessmon", invariant=True)
    h1 = ParagraphStyle("title", fontName=BOLD, fontSize=16, leading=20, spaceAfter=6)
    h3 = ParagraphStyle("h3", fontName=BOLD, fontSize=10, leading=13, spaceBefore=8,
                        spaceAfter=3)
    body = ParagraphStyle("body", fontName=FONT, fontSize=8.5, leading=11, spaceAfter=3)
    figures = pack.assessment.figures
    rows = [(f.title, _value_text(f), f.unit, f.term or "—", VERDICTS[f.verdict], f.detail)
            for f in figures]
    text_summary = tuple(Column(c.name, c.title, "text", c.width) for c in SUMMARY)
    story: list[Flowable] = [
        Paragraph(f"Warranty evidence pack — {_esc(pack.unit_id)}", h1),
        Paragraph(f"{_esc(utc(pack.start_ms))} to {_esc(utc(pack.end_ms))}", body),
        Spacer(0, 4),
        _key_values([("", t, v) for t, v in pack.fields()], doc.width),
        Paragraph("Figures against the warranty terms", h3),
        _pdf_table(text_summary, rows, doc.width),
    ]
    outside = [f for f in figures if f.verdict == "exceeded"]
    story.append(Paragraph(
        "Verdict: " + ("every stated term holds." if not outside else
                       "outside the term: " + "; ".join(_esc(f.title) for f in outside) + "."),
        body))
    excursion = excursion_rows(pack)
    if excursion:
        story += [Paragraph("Excursions" + (f" (the first {PDF_EXCURSIONS} of "
                                            f"{len(excursion)}; all in the workbook)"
                                            if len(excursion) > PDF_EXCURSIONS else ""), h3),
                  _pdf_table(EXCURSIONS, excursion[:PDF_EXCURSIONS], doc.width * 0.8)]
    story.append(Paragraph("Method", h3))
    story += [Paragraph(_esc(p), body) for p in METHOD]
    story.append(Paragraph(_esc(
        f"Buckets of {pack.step_ms // 60_000} min. The data behind every figure (each bucket "
        "and status interval) is in the workbook of this pack (format=xlsx)."), body))
    doc.build(story)
    return out.getvalue()


PDF_EXCURSIONS = 40
