"""The compliance report as a PDF, A4 landscape (the data: api/reports/data.py)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

from api.reports.data import (
    ALLOWANCE,
    COMPUTATION,
    EXCLUDED_TIME,
    EXCLUSIONS,
    NOTE,
    SUMMARY,
    UNITS,
    Cell,
    Column,
    ComplianceReport,
    decimal_places,
    fmt,
    plain,
)

if TYPE_CHECKING:
    from reportlab.pdfgen.canvas import Canvas
    from reportlab.platypus import Flowable

FONT, BOLD = "Vera", "VeraBd"  # shipped with ReportLab; unlike Helvetica they have ∑ and −


def to_pdf(report: ComplianceReport) -> bytes:
    """A4 landscape: title, contract and site, then per period its summary, units, exclusion
    windows and the LD computation; `page n of m` at the foot of every page."""
    pdf, pages = _render_pdf(report, total_pages=0)
    pdf, _ = _render_pdf(report, total_pages=pages)  # now the footer knows the page count
    return pdf


def _render_pdf(report: ComplianceReport, total_pages: int) -> tuple[bytes, int]:
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.lib.units import mm
    from reportlab.platypus import SimpleDocTemplate

    _register_fonts()
    header = report.header
    out = io.BytesIO()
    title = f"Compliance report {header.contract_id} {header.periods}"
    doc = SimpleDocTemplate(out, pagesize=landscape(A4), leftMargin=14 * mm,
                            rightMargin=14 * mm, topMargin=12 * mm, bottomMargin=14 * mm,
                            title=title, author="bessmon", invariant=True)

    def footer(canvas: Canvas, _: object) -> None:
        canvas.saveState()
        canvas.setFont(FONT, 7.5)
        canvas.drawString(doc.leftMargin, 8 * mm, f"{title} · {header.site_id}")
        page = f"page {canvas.getPageNumber()}" + (f" of {total_pages}" if total_pages else "")
        canvas.drawRightString(doc.pagesize[0] - doc.rightMargin, 8 * mm, page)
        canvas.restoreState()

    doc.build(_story(report, doc.width), onFirstPage=footer, onLaterPages=footer)
    return out.getvalue(), doc.page


def _register_fonts() -> None:
    from reportlab.lib.fonts import addMapping
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    if FONT in pdfmetrics.getRegisteredFontNames():
        return
    pdfmetrics.registerFont(TTFont(FONT, "Vera.ttf"))
    pdfmetrics.registerFont(TTFont(BOLD, "VeraBd.ttf"))
    for bold in (0, 1):
        for italic in (0, 1):
            addMapping(FONT, bold, italic, BOLD if bold else FONT)


def _story(report: ComplianceReport, width: float) -> list[Flowable]:
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.platypus import KeepTogether, PageBreak, Paragraph, Spacer

    title = ParagraphStyle("title", fontName=BOLD, fontSize=16, leading=20, spaceAfter=6)
    h2 = ParagraphStyle("h2", fontName=BOLD, fontSize=12.5, leading=16, spaceBefore=4,
                        spaceAfter=2)
    h3 = ParagraphStyle("h3", fontName=BOLD, fontSize=10, leading=13, spaceBefore=8,
                        spaceAfter=3)
    body = ParagraphStyle("body", fontName=FONT, fontSize=8.5, leading=11)
    part_title = ParagraphStyle("part", fontName=BOLD, fontSize=8.5, leading=11)
    small = ParagraphStyle("small", fontName=FONT, fontSize=7.5, leading=9.5)
    header = report.header
    site = f"{header.site_name} ({header.site_id})" if header.site_name else header.site_id
    story: list[Flowable] = [
        Paragraph(f"Compliance report — {_esc(header.contract_id)}, {_esc(header.periods)}",
                  title),
        Paragraph(f"{_esc(site)} · {_esc(header.customer)}", body),
        Spacer(0, 6),
        _key_values(header.fields(), width),
    ]
    for i, p in enumerate(report.periods):
        if i:
            story.append(PageBreak())
        sections: list[tuple[str, Flowable]] = [
            ("Summary", _pdf_table(SUMMARY.columns, SUMMARY.rows(p), width * 0.8)),
            ("Units: hours by class", _pdf_table(UNITS.columns, UNITS.rows(p), width)),
            ("Exclusion windows",
             _pdf_table(EXCLUSIONS.columns, EXCLUSIONS.rows(p), width) if p.exclusions else
             Paragraph("No exclusion window covers the site or its units in this period.",
                       body)),
        ]
        half = width * 0.49
        side_by_side = _side_by_side(
            [Paragraph("Excluded time by unit and why", h3),
             _pdf_table(EXCLUDED_TIME.columns, EXCLUDED_TIME.rows(p), half) if p.excluded
             else Paragraph("No time is excluded other than maintenance within the "
                            "allowance.", body)],
            [Paragraph("Maintenance allowance per unit and contract year", h3),
             _pdf_table(ALLOWANCE.columns, ALLOWANCE.rows(p), half) if p.allowance
             else Paragraph("The contract's term does not cover this period.", body)],
            width)
        story += [
            Spacer(0, 8),
            Paragraph(f"Period {_esc(p.label)} — contract year {p.contract_year}", h2),
            Paragraph(f"From {_esc(p.start)} to {_esc(p.end)} ({_esc(header.timezone)})", body),
            # a title and its table on one page where they fit
            *(KeepTogether([Paragraph(title, h3), table]) for title, table in sections),
            side_by_side,
        ]
        steps = COMPUTATION.rows(p)
        heading: list[Flowable] = [
            Paragraph(f"Computation of availability, LD and bonus — {_esc(p.label)}", h3)]
        for part in ("Availability", "LD", "Bonus"):
            rows = [row[1:] for row in steps if row[0] == part]
            if rows:  # a part's title and table on one page where they fit
                part_text = f"{_PART_TITLES[part]} ({_esc(p.label)})"
                story.append(KeepTogether([
                    *heading, Paragraph(part_text, part_title), Spacer(0, 2),
                    _pdf_table(COMPUTATION.columns[1:], rows, width), Spacer(0, 5)]))
                heading = []
        story.append(Paragraph(NOTE, small))
    return story


_PART_TITLES = {
    "Availability": "Availability A = 1 − ∑ w·L / ∑ w·(T − E) over the units",
    "LD": "Liquidated damages: shortfall below the guarantee G",
    "Bonus": "Bonus: excess above the threshold",
}


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _side_by_side(left: list[Flowable], right: list[Flowable], width: float) -> Flowable:
    """Two short sections next to each other (they would leave half the page empty)."""
    from reportlab.platypus import Table, TableStyle

    table = Table([[left, right]], colWidths=[width / 2, width / 2], hAlign="LEFT")
    table.setStyle(TableStyle([
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LEFTPADDING", (0, 0), (-1, -1), 0), ("RIGHTPADDING", (0, 0), (-1, -1), 0),
        ("TOPPADDING", (0, 0), (-1, -1), 0), ("BOTTOMPADDING", (0, 0), (-1, -1), 0),
    ]))
    return table


def _key_values(fields: Sequence[tuple[str, str, str]], width: float) -> Flowable:
    """Contract and site as two pairs of label and value per row."""
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.platypus import Paragraph, Table, TableStyle

    label = ParagraphStyle("label", fontName=BOLD, fontSize=8, leading=10)
    value = ParagraphStyle("value", fontName=FONT, fontSize=8, leading=10)
    cells = [[Paragraph(_esc(t), label), Paragraph(_esc(v) or "—", value)]
             for _, t, v in fields]
    half = (len(cells) + 1) // 2
    left, right = cells[:half], cells[half:]
    rows = [[*a, *(right[i] if i < len(right) else ["", ""])] for i, a in enumerate(left)]
    table = Table(rows, colWidths=[width * 0.12, width * 0.38, width * 0.12, width * 0.38],
                  hAlign="LEFT")
    table.setStyle(TableStyle([
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LINEBELOW", (0, 0), (-1, -1), 0.25, "#C8CED8"),
        ("TOPPADDING", (0, 0), (-1, -1), 2), ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
    ]))
    return table


def _pdf_table(columns: Sequence[Column], rows: Sequence[tuple[Cell, ...]], width: float
               ) -> Flowable:
    """A table with a shaded header repeated on every page; text wraps, numbers are right
    aligned with their places."""
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.platypus import Paragraph, Table, TableStyle

    head = ParagraphStyle("head", fontName=BOLD, fontSize=7.5, leading=9)
    head_right = ParagraphStyle("head_right", parent=head, alignment=2)
    text = ParagraphStyle("cell", fontName=FONT, fontSize=7.5, leading=9)
    number = ParagraphStyle("number", parent=text, alignment=2)
    numeric = [c.kind != "text" for c in columns]
    data: list[list[object]] = [[Paragraph(_esc(c.title), head_right if n else head)
                                 for c, n in zip(columns, numeric, strict=True)]]
    for row in rows:
        cells: list[object] = []
        for column, value in zip(columns, row, strict=True):
            if column.kind == "text":
                cells.append(Paragraph(_esc(str(value or "")), text))
            elif value is None:
                cells.append(Paragraph("—", number))
            elif column.kind == "int":
                cells.append(Paragraph(str(value), number))
            else:
                assert isinstance(value, int | float)
                if column.kind == "weight":
                    cells.append(Paragraph(plain(float(value)), number))
                    continue
                cells.append(Paragraph(fmt(value, decimal_places(column, row, columns)), number))
        data.append(cells)
    total = sum(c.width for c in columns)
    table = Table(data, colWidths=[width * c.width / total for c in columns], repeatRows=1,
                  hAlign="LEFT")
    table.setStyle(TableStyle([
        ("BACKGROUND", (0, 0), (-1, 0), "#DDE4EE"),
        ("GRID", (0, 0), (-1, -1), 0.25, "#9AA5B5"),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("TOPPADDING", (0, 0), (-1, -1), 2), ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
        ("LEFTPADDING", (0, 0), (-1, -1), 3), ("RIGHTPADDING", (0, 0), (-1, -1), 3),
    ]))
    return table
