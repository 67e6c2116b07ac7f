"""The compliance report as CSV (the data: api/reports/data.py).

CSV layout: one file of blocks separated by an empty line. A block starts with a header row
whose first cell is `section`, naming the columns of the rows below it; each of those rows has
the block's section name in its first cell. Sections, in order: `header` (one row: contract
and site), `summary` (a row per period), `unit` (a row per period and unit), `exclusion` (a row
per period and exclusion window), `excluded_time` (a row per period, unit and why),
`allowance` (a row per period, unit and contract year) and `computation` (a row per period
and step). To read it,
take every row that starts with `section` as the column names of the rows that follow."""

from __future__ import annotations

import csv
import io

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
    period_cells,
)


def to_csv(report: ComplianceReport) -> str:
    """The report as CSV blocks (layout in the module docstring); numbers as plain decimals."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    fields = report.header.fields()
    writer.writerow(["section", *(name for name, _, _ in fields)])
    writer.writerow(["header", *(value for _, _, value in fields)])
    blocks: list[tuple[str, tuple[Column, ...], list[tuple[Cell, ...]]]] = [
        ("summary", (*PERIOD_COLUMNS, *SUMMARY.columns),
         [(*period_cells(p), *row) for p in report.periods for row in SUMMARY.rows(p)])]
    for table in (UNITS, EXCLUSIONS, EXCLUDED_TIME, ALLOWANCE, COMPUTATION):
        blocks.append((table.section, (PERIOD_COLUMNS[0], *table.columns),
                       [(p.label, *row) for p in report.periods for row in table.rows(p)]))
    for section, columns, rows in blocks:
        writer.writerow([])
        writer.writerow(["section", *(c.name for c in columns)])
        for row in rows:
            writer.writerow([section, *("" if v is None else v for v in row)])
    return out.getvalue()
