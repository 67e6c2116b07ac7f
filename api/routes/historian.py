"""The historian: telemetry history for engineers, read from the analytics archive for the
days archived and from the history store for the recent ones (connectors/archive/):

    GET /telemetry/export     ?assets=&tags=&from=&to=&format=csv|parquet   the per-minute
                              rows (`reports.export`; audited): CSV streamed, or Parquet
    GET /analytics/historian  ?assets=&tags=&from=&to=&points=N   each series downsampled to
                              at most N buckets (min, avg, max, count), for charts (`read`)

`assets` and `tags` are comma-separated; `from` and `to` ISO-8601 times with a UTC offset
(`Z`, or `+01:00` — a `+` sent unencoded arrives as a space, and is read as the `+` it was),
`[from, to)`. An asset the caller may not see is 404 alike with one that does not exist (as
everywhere); a tag not among the monitoring file's canonical tags is 422."""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import re
import time
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fastapi import APIRouter, Depends, HTTPException, Query, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from api.auth.permissions import Permission
from api.auth.principal import Principal
from api.deps import MAX_EPOCH_MS, CtxDep, Reader, require, visible_asset
from api.errors import ERRORS, BadInput
from api.views import HistorianAnswer, HistorianPoint, HistorianSeries
from connectors.archive import archive_root
from connectors.archive.historian import MINUTE_MS, Historian
from connectors.archive.query import ArchiveReader
from contracts.errors import InvalidInput
from contracts.monitoring import TagSpec, load_monitoring

router = APIRouter(tags=["historian"], responses=ERRORS)
Exporter = Annotated[Principal, Depends(require(Permission.REPORTS_EXPORT))]

DAY_MS = 86_400_000
EXPORT_MAX_DAYS = 31  # per-minute rows: 44,640 per series at most
EXPORT_MAX_SERIES = 100  # assets × tags
HISTORIAN_MAX_DAYS = 400  # as the assets' history routes
HISTORIAN_MAX_SERIES = 50
MAX_POINTS = 5_000
MAX_LIST = 200  # ids in `assets` or `tags`
ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
# A time, then a space where the offset's `+` was (a `+` unencoded in a query string).
OFFSET_AS_SPACE = re.compile(r"(T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}:?\d{2})$")
MEDIA = {"csv": "text/csv; charset=utf-8", "parquet": "application/vnd.apache.parquet"}
COLUMNS = ("time", "site_id", "asset_id", "tag", "count", "min", "max", "mean", "last")
PARQUET_SCHEMA = pa.schema([
    ("time", pa.timestamp("ms", tz="UTC")), ("site_id", pa.string()),
    ("asset_id", pa.string()), ("tag", pa.string()), ("count", pa.int64()),
    ("min", pa.float64()), ("max", pa.float64()), ("mean", pa.float64()),
    ("last", pa.float64())])

ListQ = Annotated[str, Query(min_length=1, max_length=8_000,
                             description="comma-separated ids")]
FromQ = Annotated[str, Query(alias="from", min_length=1, max_length=64,
                             description="ISO-8601 time with offset, inclusive")]
ToQ = Annotated[str, Query(alias="to", min_length=1, max_length=64,
                           description="ISO-8601 time with offset, exclusive")]


@lru_cache(maxsize=4)
def _canonical_tags(path: Path) -> dict[str, TagSpec]:
    return dict(load_monitoring(path).tags)


def canonical_tags(ctx: CtxDep) -> dict[str, TagSpec]:
    try:
        return _canonical_tags(ctx.settings.monitoring_file)
    except (InvalidInput, OSError) as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            f"the monitoring file cannot be read: {exc}") from None


def id_list(text: str, loc: str) -> list[str]:
    """The ids of a comma-separated parameter, in order, once each."""
    ids = list(dict.fromkeys(part.strip() for part in text.split(",")))
    if any(not i for i in ids):
        raise BadInput(loc, "an empty item (two commas, or one at an end)")
    if len(ids) > MAX_LIST:
        raise BadInput(loc, f"at most {MAX_LIST} ids")
    bad = next((i for i in ids if not ID.match(i)), None)
    if bad is not None:
        raise BadInput(loc, f"{bad[:64]!r} is not an id (letters, digits, _ . : -)")
    return ids


def instant(text: str, loc: str) -> int:
    """An ISO-8601 time with its offset → epoch ms."""
    given = OFFSET_AS_SPACE.sub(r"\1+\2", text.strip())
    try:
        moment = dt.datetime.fromisoformat(given.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadInput(loc, f"not an ISO-8601 time: {text[:64]!r}") from None
    if moment.tzinfo is None:
        raise BadInput(loc, "needs a UTC offset (e.g. 2026-03-02T00:00:00+01:00 or …Z)")
    try:
        ms = math.floor(moment.timestamp() * 1000)
    except (OverflowError, ValueError):
        ms = -1
    if not 0 <= ms <= MAX_EPOCH_MS:
        raise BadInput(loc, "must be between 1970 and 9999")
    return ms


def time_range(start: str, end: str, max_days: int) -> tuple[int, int]:
    start_ms, end_ms = instant(start, "query.from"), instant(end, "query.to")
    if not start_ms < end_ms:
        raise BadInput("query.to", "must be after from")
    if end_ms - start_ms > max_days * DAY_MS:
        raise BadInput("query.to", f"the range is at most {max_days} days")
    return start_ms, end_ms


def series_of(ctx: CtxDep, caller: Principal, assets: str, tags: str,
              max_series: int) -> tuple[list[str], list[str], dict[str, TagSpec]]:
    asset_ids, tag_names = id_list(assets, "query.assets"), id_list(tags, "query.tags")
    known = canonical_tags(ctx)
    unknown = [t for t in tag_names if t not in known]
    if unknown:
        raise BadInput("query.tags", f"unknown tag{'s' if len(unknown) > 1 else ''} "
                       f"{', '.join(map(repr, unknown))} (known: {', '.join(sorted(known))})")
    if len(asset_ids) * len(tag_names) > max_series:
        raise BadInput("query.tags", f"{len(asset_ids)} assets × {len(tag_names)} tags is "
                       f"more than {max_series} series; ask for fewer")
    for asset_id in asset_ids:
        visible_asset(ctx.fleet, caller, asset_id)  # 404 alike: unknown or not the caller's
    return asset_ids, tag_names, known


def historian(ctx: CtxDep) -> Historian:
    return Historian(ctx.history, ArchiveReader(archive_root(ctx.settings)), ctx.fleet)


def iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(
        timespec="milliseconds").replace("+00:00", "Z")


CSV_BATCH_ROWS = 50_000
NEEDS_QUOTES = r'[",\r\n]'  # what makes the csv module quote a field


def float_texts(values: pa.Array) -> pa.Array:
    """Each float as Python's `repr` writes it, made by Arrow: its shortest round-trip
    digits are Python's, and in fixed notation (Python's for 1e-4 ≤ |x| < 1e16 and 0) the
    text is the same but for the `.0` Python gives a whole number; every other value (an
    exponent, nan, inf) is written by `repr` itself."""
    text = pc.cast(values, pa.string())
    magnitude = pc.abs(values)
    fixed = pc.and_kleene(
        pc.and_kleene(pc.is_finite(values), pc.invert(pc.match_substring(text, "e"))),
        pc.or_kleene(pc.equal(values, 0.0), pc.and_kleene(
            pc.greater_equal(magnitude, 1e-4), pc.less(magnitude, 1e16))))
    text = pc.if_else(pc.match_substring(text, "."), text,
                      pc.binary_join_element_wise(text, ".0", ""))
    if pc.all(fixed).as_py():
        return text
    python = [t if ok else repr(v) for t, ok, v in zip(
        text.to_pylist(), fixed.to_pylist(), values.to_pylist(), strict=True)]
    return pa.array(python, pa.string())


def csv_text(batch: pa.RecordBatch) -> str:
    """The rows of `batch` (the archive's telemetry columns) as the csv module writes
    `COLUMNS` — time as `iso`, floats as `repr` — by Arrow's compute functions; a batch with
    a field the csv module would quote is written by it."""
    if batch.num_rows == 0:
        return ""
    ids = [batch.column(c) for c in ("site_id", "asset_id", "tag")]
    starts = batch.column("start_ms")
    distinct = pc.unique(starts)  # a few thousand minutes shared by every series
    times = pc.strftime(distinct.cast(pa.timestamp("ms", tz="UTC")),
                        format="%Y-%m-%dT%H:%M:%SZ").take(pc.index_in(starts, distinct))
    fields = [times, *ids, pc.cast(batch.column("count"), pa.string()),
              *(float_texts(batch.column(c)) for c in ("min", "max", "mean", "last"))]
    if any(pc.any(pc.match_substring_regex(pc.unique(f), NEEDS_QUOTES)).as_py()
           for f in ids):
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(
            zip(*(f.to_pylist() for f in fields), strict=True))
        return buffer.getvalue()
    lines = pc.binary_join_element_wise(*fields, ",")
    whole = pa.ListArray.from_arrays(pa.array([0, len(lines)], pa.int32()), lines)
    return str(pc.binary_join(whole, "\n")[0].as_py()) + "\n"


def csv_lines(h: Historian, asset_ids: list[str], tags: list[str], start_ms: int,
              end_ms: int) -> Iterator[str]:
    """The CSV (`COLUMNS`, time as `iso` writes it, floats as `repr`: read back, the same),
    streamed a batch of rows at a time from one read of every tag of an asset after the
    other (held in memory: one asset's rows, not the whole export's)."""
    yield ",".join(COLUMNS) + "\n"
    for asset_id in asset_ids:
        table = h.minute_table([asset_id], tags, start_ms, end_ms)
        for batch in table.to_batches(max_chunksize=CSV_BATCH_ROWS):
            yield csv_text(batch)


def export_table(h: Historian, asset_ids: list[str], tags: list[str], start_ms: int,
                 end_ms: int) -> pa.Table:
    """The rows as the export's Parquet columns (`time` a UTC timestamp)."""
    table = h.minute_table(asset_ids, tags, start_ms, end_ms)
    return pa.Table.from_arrays(
        [table["start_ms"].cast(pa.timestamp("ms", tz="UTC")),
         *(table[name] for name in PARQUET_SCHEMA.names[1:])], schema=PARQUET_SCHEMA)


def parquet_bytes(h: Historian, asset_ids: list[str], tags: list[str], start_ms: int,
                  end_ms: int) -> bytes:
    sink = io.BytesIO()
    pq.write_table(export_table(h, asset_ids, tags, start_ms, end_ms), sink,
                   compression="zstd")
    return sink.getvalue()


@router.get("/telemetry/export", response_class=Response,
            responses={200: {"content": {m: {} for m in MEDIA.values()},
                             "description": "the per-minute rows: time (UTC), site_id, "
                                            "asset_id, tag, count, min, max, mean, last"}})
async def telemetry_export(
        ctx: CtxDep, caller: Exporter, assets: ListQ, tags: ListQ,
        start: FromQ, end: ToQ, format: Literal["csv", "parquet"] = "csv") -> Response:
    """The per-minute telemetry of these assets and tags over `[from, to)` (at most 31 days
    and 100 series), by asset, tag and time: the archive's days and the history store's.
    CSV is streamed as it is read; the export is in the audit log."""
    start_ms, end_ms = time_range(start, end, EXPORT_MAX_DAYS)
    asset_ids, tag_names, _ = series_of(ctx, caller, assets, tags, EXPORT_MAX_SERIES)
    h = historian(ctx)
    await run_in_threadpool(ctx.audit.append, caller.subject, "telemetry.export",
                            target=",".join(asset_ids), details={
                                "tags": tag_names, "from_ms": start_ms, "to_ms": end_ms,
                                "format": format},
                            now_ms=int(time.time() * 1000))
    name = (f"telemetry-{iso(start_ms)}-{iso(end_ms)}.{format}"
            .replace(":", "").replace(".000Z", "Z"))
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    if format == "csv":
        return StreamingResponse(csv_lines(h, asset_ids, tag_names, start_ms, end_ms),
                                 media_type=MEDIA["csv"], headers=headers)
    data = await run_in_threadpool(parquet_bytes, h, asset_ids, tag_names, start_ms, end_ms)
    return Response(data, media_type=MEDIA["parquet"], headers=headers)


def bucket_step(start_ms: int, end_ms: int, points: int) -> int:
    """The narrowest whole-minute bucket width at which `[start_ms, end_ms)` touches at most
    `points` buckets aligned on multiples of it since the epoch (the history store's
    alignment): a range of s ms touches at most ⌈s / step⌉ + 1 of them. Wider than a day,
    whole days: buckets of UTC days, read from the archive's daily roll-ups."""
    span = end_ms - start_ms
    step = max(MINUTE_MS, -(-span // (points - 1)))
    unit = DAY_MS if step > DAY_MS else MINUTE_MS
    return -(-step // unit) * unit


@router.get("/analytics/historian")
async def historian_series(
        ctx: CtxDep, caller: Reader, assets: ListQ, tags: ListQ, start: FromQ, end: ToQ,
        points: Annotated[int, Query(ge=2, le=MAX_POINTS,
                                     description="at most this many buckets per series")
                          ] = 1_000) -> HistorianAnswer:
    """Each series downsampled server-side to at most `points` buckets of `step_ms` (whole
    minutes; at most 400 days and 50 series): count, min, count-weighted average and max per
    bucket, from the per-minute history. Buckets without data are left out."""
    start_ms, end_ms = time_range(start, end, HISTORIAN_MAX_DAYS)
    asset_ids, tag_names, known = series_of(ctx, caller, assets, tags, HISTORIAN_MAX_SERIES)
    step = bucket_step(start_ms, end_ms, points)
    wanted = [(a, t) for a in asset_ids for t in tag_names]
    buckets = await run_in_threadpool(historian(ctx).buckets, wanted, start_ms, end_ms, step)
    return HistorianAnswer(from_ms=start_ms, to_ms=end_ms, step_ms=step, series=[
        HistorianSeries(asset_id=a, site_id=ctx.fleet.assets[a].site_id, tag=t,
                        unit=known[t].unit,
                        points=[HistorianPoint(start_ms=b.start_ms, count=b.count, min=b.min,
                                               avg=b.mean, max=b.max)
                                for b in buckets[(a, t)]])
        for a, t in wanted])
