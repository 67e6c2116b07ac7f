"""The compliance report as an xlsx workbook (the data: api/reports/data.py)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

from api.reports.data import (
    ALLOWANCE,
    COMPUTATION,
    EXCLUDED_TIME,
    EXCLUSIONS,
    PERIOD_COLUMNS,
    SUMMARY,
    UNITS,
    Cell,
    Column,
    ComplianceReport,
    decimal_places,
    period_cells,
)

if TYPE_CHECKING:
    from openpyxl.worksheet.worksheet import Worksheet

def to_xlsx(report: ComplianceReport) -> bytes:
    """Sheets Summary (contract and site above a row per period), Units, Exclusions,
    Excluded time, Maintenance allowance and LD computation; numbers are numbers, shown with
    3 decimals (2 for money, 6 in the computation)."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    wb = Workbook()
    summary = wb.active
    assert summary is not None
    summary.title = "Summary"
    fields = report.header.fields()
    for r, (_, title, value) in enumerate(fields, start=1):
        summary.cell(r, 1, title).font = Font(bold=True)
        summary.cell(r, 2, value)
    top = len(fields) + 2
    _sheet_table(summary, top, (*PERIOD_COLUMNS, *SUMMARY.columns),
                 [(*period_cells(p), *row) for p in report.periods for row in SUMMARY.rows(p)])
    summary.column_dimensions["A"].width = max(
        summary.column_dimensions["A"].width, max(len(t) for _, t, _ in fields) + 2)
    # Values run on into the empty cells to their right; column B keeps the table's width.
    for name, table in (("Units", UNITS), ("Exclusions", EXCLUSIONS),
                        ("Excluded time", EXCLUDED_TIME), ("Maintenance allowance", ALLOWANCE),
                        ("LD computation", COMPUTATION)):
        _sheet_table(wb.create_sheet(name), 1, (PERIOD_COLUMNS[0], *table.columns),
                     [(p.label, *row) for p in report.periods for row in table.rows(p)])
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def _sheet_table(ws: Worksheet, top: int, columns: Sequence[Column],
                 rows: Sequence[tuple[Cell, ...]]) -> None:
    """A table with a bold header row at `top`, frozen, and columns wide enough to read."""
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    header_fill = PatternFill("solid", fgColor="DDE4EE")
    for c, column in enumerate(columns, start=1):
        cell = ws.cell(top, c, column.title)
        cell.font = Font(bold=True)
        cell.fill = header_fill
        cell.alignment = Alignment(wrap_text=True, vertical="top")
        letter = get_column_letter(c)
        ws.column_dimensions[letter].width = column.width + 2
    for r, row in enumerate(rows, start=top + 1):
        for c, (column, value) in enumerate(zip(columns, row, strict=True), start=1):
            cell = ws.cell(r, c, value)
            if column.kind == "int":
                cell.number_format = "0"
            elif column.kind == "weight":
                cell.number_format = "General"
            elif column.kind != "text":
                cell.number_format = "#,##0." + "0" * decimal_places(column, row, columns)
    ws.freeze_panes = f"A{top + 1}"
