"""The export's CSV made by Arrow (api/routes/historian.py `csv_text`) is, byte for byte,
what the csv module writes of the same rows with `iso` times and `repr` floats — the format
the export has always had — for any floats (whole, tiny, huge, subnormal, ±0, nan, ±inf) and
for ids the csv module would quote."""

from __future__ import annotations

import csv
import io

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from api.routes.historian import csv_text, float_texts, iso
from connectors.archive.tables import TELEMETRY, Record, to_arrow

EDGES = [0.0, -0.0, 1.0, -2.0, 1e-4, 9.99e-5, 1e15, 9999999999999998.0, 1e16, 1.5e16,
         123456.789, 1 / 3, 5e-324, 1.7976931348623157e308, float("nan"), float("inf"),
         float("-inf"), 1e21, 1e22, 2.5e-7, 100.0]
MINUTE = 60_000


def by_csv_module(records: list[Record]) -> str:
    buffer = io.StringIO()
    out = csv.writer(buffer, lineterminator="\n")
    for site, asset, tag, start, n, lo, hi, mean, last in records:
        out.writerow((iso(start), site, asset, tag, n, repr(lo), repr(hi), repr(mean),
                      repr(last)))
    return buffer.getvalue()


def test_the_edge_floats_are_written_as_repr_writes_them() -> None:
    assert float_texts(pa.array(EDGES, pa.float64())).to_pylist() == [repr(x) for x in EDGES]


@given(st.lists(st.floats(width=64) | st.sampled_from(EDGES), min_size=1, max_size=60))
def test_any_float_is_written_as_repr_writes_it(values: list[float]) -> None:
    assert float_texts(pa.array(values, pa.float64())).to_pylist() == [repr(x) for x in values]


ids = st.sampled_from(["nordvik", "nordvik-u01", "soc_pct", "a,b", 'say "x"', "two\nlines"])


@given(st.lists(st.tuples(ids, ids, ids, st.integers(0, 10**7), st.integers(0, 10**6),
                          st.floats(width=64), st.floats(width=64), st.floats(width=64),
                          st.floats(width=64)), max_size=40))
def test_the_rows_are_written_as_the_csv_module_writes_them(
        rows: list[tuple[str, str, str, int, int, float, float, float, float]]) -> None:
    records: list[Record] = [(s, a, t, 1_772_409_600_000 + m * MINUTE, n, lo, hi, mean, last)
                             for s, a, t, m, n, lo, hi, mean, last in rows]
    batch = pa.RecordBatch.from_pylist([], schema=TELEMETRY.schema) if not records \
        else to_arrow(TELEMETRY, records).to_batches()[0]
    assert csv_text(batch) == by_csv_module(records)
