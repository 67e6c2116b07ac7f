"""Analytics benchmark (issue 20): fleet-30 — 30 sites × 40 battery units — at 1-minute
resolution in the analytics archive, a year by default, and the analytics views' queries over
it: the faults-and-trips timeline, the vendor table, a historian series downsampled, and a
one-month 10-tag export as CSV and as Parquet; and the archive's size on disk.

    .venv/bin/python -m bench.analytics [--sites 30] [--units 40] [--days 365]
                                        [--faults-per-month 1] [--keep DIR]

The data is synthetic and written straight in the archive's layout (numpy and pyarrow, not
through Kafka and the flows; not timed): per battery unit and minute the monitoring file's 10
canonical tags (`active_power_kw` a daily charge/discharge cycle at a vendor's round-trip
efficiency, `soh_pct` fading at a vendor's rate, …), one part per site and local day, rows
sorted by asset, tag and time as the archiver writes them; then each site-day's daily
roll-ups, by the archiver's own `rollup_day` (timed: `rollups_s`). Status intervals and
unavailability episodes (about `--faults-per-month` trips per unit, hours long) go to an
embedded history store, where the views read them. Timed, each once, in this process:

- `faults_s`: /analytics/faults' computation over the whole window — the episodes read, the
  reliability table by cause (contracts/reliability.py), the timeline sorted.
- `vendors_s`: /analytics/vendors' (api/routes/vendors.py `vendor_table`) over the whole
  window, every site, battery units.
- `historian_s`: /analytics/historian's: one unit's 10 tags over the whole window, at most
  1,000 points each (buckets under a day: read from the minutes).
- `historian_whole_days_s`: the same at most `days / 2` points each (buckets of whole days:
  read from the daily roll-ups).
- `export_month_10_tags_csv_s` / `…_parquet_s`: /telemetry/export's: one unit's 10 tags over
  the window's last 31 days, the whole file made.

A full year of fleet-30 is 1,200 units × 525,600 minutes × 10 tags = 6.3 billion rows (about
140 GB of Parquet here); a smaller run — fewer `--sites` or `--days`, or the telemetry of only
`--archive-sites` sites while the status intervals and episodes stay the whole fleet's — says
what it ran, with `archive_mb_full` scaled linearly to fleet-30 × 365 days (the queries'
times are not scaled: the JSON says what they ran on)."""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from api.routes.battery_health import fleet_health
from api.routes.historian import bucket_step, csv_lines, parquet_bytes
from api.routes.vendors import vendor_table
from connectors.archive import layout
from connectors.archive.historian import Historian
from connectors.archive.query import ArchiveReader
from connectors.archive.tables import DAILY, TELEMETRY
from connectors.archive.writer import ROW_GROUP_ROWS, rollup_day
from connectors.history import SqliteHistoryStore, StatusIntervalRow
from contracts.benchmarking import fleet_bench_assets
from contracts.events import Cause, UnavailabilityEpisode
from contracts.fleet import Fleet, Site
from contracts.reliability import Episode, fleet_population, reliability
from infra.sim.fleetgen import generate_fleet

START = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)  # after every generated site's commissioning
DAY_MS = 86_400_000
MINUTE_MS = 60_000
H = 3_600_000
TAGS = ("status_code", "active_power_kw", "available_power_kw", "available_energy_kwh",
        "soc_pct", "soh_pct", "load_pct", "alarm_word", "temperature_c", "cell_temp_max_c")
# Per battery vendor: (round-trip efficiency, SOH fade in % points a year), so the vendor
# table has differences to show.
VENDOR_TRAITS = {"Nordcell": (0.90, 1.8), "Voltara": (0.87, 2.4), "Brightmoor": (0.85, 3.1)}
FULL_UNITS, FULL_DAYS = 30 * 40, 365
T = TypeVar("T")


def unit_day(site: Site, unit_index: int, vendor: str | None, start_ms: int, end_ms: int,
             window_start_ms: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Each tag's per-minute values of one unit over `[start_ms, end_ms)`."""
    t = np.arange(start_ms, end_ms, MINUTE_MS, dtype=np.int64)
    phase = 2 * np.pi * ((t % DAY_MS) / DAY_MS + unit_index / 97)
    rated = 2500.0
    eff, fade = VENDOR_TRAITS.get(vendor or "", (0.88, 2.5))
    cycle = np.sin(phase)  # > 0 discharging
    power = np.where(cycle > 0, cycle * rated * 0.6 * eff, cycle * rated * 0.6)
    years = (t - window_start_ms) / (365.25 * DAY_MS)
    soh = 99.0 - fade * years + rng.normal(0, 0.05, t.size)
    soc = 50 - 40 * np.cos(phase)
    temp = 25 + 5 * np.sin(phase) + rng.normal(0, 0.3, t.size)
    return {
        "status_code": np.full(t.size, 2.0), "active_power_kw": power,
        "available_power_kw": np.full(t.size, rated),
        "available_energy_kwh": soc / 100 * 5000 * soh / 100, "soc_pct": soc, "soh_pct": soh,
        "load_pct": np.abs(power) / rated * 100, "alarm_word": np.zeros(t.size),
        "temperature_c": temp, "cell_temp_max_c": temp + 4}


def write_site_day(root: Path, site: Site, day: dt.date, window: tuple[int, int],
                   rng: np.random.Generator) -> int:
    """One site-day of telemetry as one part, in the archive's layout; its row count."""
    day_start, day_end = layout.day_bounds(day, site.tz)
    start_ms, end_ms = max(day_start, window[0]), min(day_end, window[1])
    if end_ms <= start_ms:
        return 0
    minutes = (end_ms - start_ms) // MINUTE_MS
    times = np.arange(start_ms, end_ms, MINUTE_MS, dtype=np.int64)
    series_names: list[str] = []
    tag_names: list[str] = []
    columns: dict[str, list[np.ndarray]] = {"start_ms": [], "mean": []}
    for k, unit in enumerate(site.units):
        values = unit_day(site, k, unit.vendor, start_ms, end_ms, window[0], rng)
        for tag in TAGS:  # rows sorted by (asset_id, tag, start_ms)
            series_names.append(unit.id)
            tag_names.append(tag)
            columns["start_ms"].append(times)
            columns["mean"].append(values[tag])
    order = sorted(range(len(series_names)), key=lambda i: (series_names[i], tag_names[i]))
    n = len(order) * minutes
    mean = np.concatenate([columns["mean"][i] for i in order])
    start = np.concatenate([columns["start_ms"][i] for i in order])

    def repeated(names: list[str]) -> pa.Array:
        dictionary = sorted(set(names))
        index = np.repeat(np.array([dictionary.index(names[i]) for i in order],
                                   dtype=np.int32), minutes)
        return pa.DictionaryArray.from_arrays(pa.array(index), pa.array(dictionary)).cast(
            pa.string())

    table = pa.Table.from_arrays([
        pa.array(np.full(n, site.id, dtype=object), pa.string()),
        repeated(series_names), repeated(tag_names), pa.array(start),
        pa.array(np.full(n, 60, dtype=np.int64)), pa.array(mean - 0.5),
        pa.array(mean + 0.5), pa.array(mean), pa.array(mean)], schema=TELEMETRY.schema)
    directory = layout.day_dir(root, TELEMETRY.name, site.id, day)
    directory.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, directory / "part-000001.parquet", compression="zstd",
                   row_group_size=ROW_GROUP_ROWS)  # as the archiver writes
    return n


def status_and_episodes(fleet: Fleet, window: tuple[int, int], per_month: float,
                        rng: np.random.Generator
                        ) -> tuple[list[StatusIntervalRow], list[UnavailabilityEpisode]]:
    """Per battery unit: trips at about `per_month` a month, 1-24 h each, available between."""
    statuses: list[StatusIntervalRow] = []
    episodes: list[UnavailabilityEpisode] = []
    lo, hi = window
    for site in fleet.sites:
        for unit in site.units:
            t = lo
            while t < hi:
                gap = int(rng.exponential(30 * DAY_MS / per_month)) if per_month > 0 else hi
                up_to = min(hi, t + max(gap, H))
                statuses.append(StatusIntervalRow(unit.id, site.id, t, up_to, "available"))
                if up_to >= hi:
                    break
                down_to = min(hi, up_to + int(rng.uniform(1, 24) * H))
                cause: Cause = "fault" if rng.random() < 0.7 else "grid_outage"
                statuses.append(StatusIntervalRow(unit.id, site.id, up_to, down_to,
                                                  "unavailable", None, cause))
                hours = (down_to - up_to) / H
                episodes.append(UnavailabilityEpisode(
                    episode_id=f"{unit.id}:{up_to}", asset_id=unit.id, site_id=site.id,
                    start_ms=up_to, end_ms=down_to, state="unavailable", cause=cause,
                    lost_hours=hours, lost_mwh=hours * 2.5))
                t = down_to
    return statuses, episodes


def size_mb(root: Path) -> float:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 1e6


def timed(what: str, fn: Callable[[], T]) -> tuple[float, T]:
    started = time.monotonic()
    out = fn()
    took = time.monotonic() - started
    print(f"{what}: {took:.3f} s", flush=True)
    return took, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=30)
    parser.add_argument("--units", type=int, default=40, help="battery units per site")
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--faults-per-month", type=float, default=1.0)
    parser.add_argument("--archive-sites", type=int, default=None,
                        help="archive the telemetry of only the first N sites (default all): "
                             "the status intervals and episodes stay the whole fleet's")
    parser.add_argument("--keep", type=Path, default=None,
                        help="make the archive and history here, and leave them")
    args = parser.parse_args()

    fleet = Fleet.model_validate(generate_fleet(args.sites, units_per_site=args.units))
    start_ms = int(START.timestamp() * 1000)
    window = (start_ms, start_ms + args.days * DAY_MS)
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-analytics-"))
    root = work / "archive"
    rng = np.random.default_rng(7)
    try:
        made = time.monotonic()
        rows = 0
        for site in fleet.sites[:args.archive_sites]:
            for day in layout.days_overlapping(*window, site.tz):
                rows += write_site_day(root, site, day, window, rng)
        made_s = time.monotonic() - made
        rolled = time.monotonic()
        for site in fleet.sites[:args.archive_sites]:  # as `bessmon archive run` does
            for day in layout.days_overlapping(*window, site.tz):
                rollup_day(root, site, day)
        rollups_s = time.monotonic() - rolled
        archive_mb = size_mb(root)
        rollups_mb = size_mb(root / DAILY.name)
        history = SqliteHistoryStore(work / "history.db")
        statuses, episodes = status_and_episodes(fleet, window, args.faults_per_month, rng)
        history.write_status(statuses)
        history.write_episodes(episodes)
        print(f"archive: {rows:,} telemetry rows of {args.sites} sites × {args.units} units "
              f"× {len(TAGS)} tags × {args.days} days, {archive_mb:,.1f} MB; "
              f"{len(statuses):,} status intervals and {len(episodes):,} episodes in the "
              f"history store; made in {made_s:.1f} s; daily roll-ups {rollups_mb:,.1f} MB "
              f"in {rollups_s:.1f} s", flush=True)

        site_ids = [s.id for s in fleet.sites]
        h = Historian(history, ArchiveReader(root), fleet)

        def faults() -> int:
            population = {a.asset_id: a for a in fleet_population(fleet, site_ids)}
            stored = history.episodes(list(population), *window)
            reliability((Episode(e.asset_id, e.start_ms, e.end_ms, e.state, e.cause)
                         for e in stored), population.values(), *window, "cause")
            stored.sort(key=lambda e: (-e.start_ms, e.asset_id))
            return len(stored)

        faults_s, _ = timed("faults timeline", faults)
        units = fleet_bench_assets(fleet, site_ids, "unit")
        vendors_s, answer = timed("vendor table", lambda: vendor_table(
            fleet, history, h, units, "unit", *window))
        unit = fleet.sites[0].units[0].id
        series = [(unit, tag) for tag in TAGS]
        step = bucket_step(*window, 1_000)
        historian_s, _ = timed("historian, 10 series × 1,000 points",
                               lambda: h.buckets(series, *window, step))
        few = max(2, args.days // 2)
        daily = bucket_step(*window, few)  # whole days: from the roll-ups
        historian_days_s, _ = timed(f"historian, 10 series × {few} points "
                                    f"({daily // DAY_MS}-day buckets)",
                                    lambda: h.buckets(series, *window, daily))
        first = fleet.sites[0]  # an archived site: the battery-health view of one site
        health_s, health = timed(f"battery health, {len(first.units)} units",
                                 lambda: fleet_health(h, [(first, u) for u in first.units],
                                                      {}, *window, 500))
        month = (max(window[0], window[1] - 31 * DAY_MS), window[1])
        csv_s, csv_chars = timed("export one month × 10 tags, CSV", lambda: sum(
            len(chunk) for chunk in csv_lines(h, [unit], list(TAGS), *month)))
        parquet_s, data = timed("export one month × 10 tags, Parquet",
                                lambda: parquet_bytes(h, [unit], list(TAGS), *month))
        export_rows = pq.read_table(io.BytesIO(data)).num_rows
        history.close()
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    archived_sites = min(args.sites, args.archive_sites or args.sites)
    scale = FULL_UNITS * FULL_DAYS / (archived_sites * args.units * args.days)
    # The fitted fade at the duty seen against the vendor's set one (VENDOR_TRAITS).
    fitted = [(u.vendor, VENDOR_TRAITS.get(u.vendor or "", (0, 2.5))[1],
               None if u.fit is None or u.fit.at_duty_per_year is None
               else round(u.fit.at_duty_per_year.value, 2)) for u in health[:3]]
    print(f"battery health (vendor, fade set, fitted %/year): {fitted}", flush=True)
    vendors = [(v.key[0], None if v.efficiency_pct is None else round(v.efficiency_pct, 1),
                None if v.fade_pct_per_year is None else round(v.fade_pct_per_year, 2))
               for v in answer.vendors]
    print(f"vendors (efficiency %, fade %/year): {vendors}; export: {export_rows:,} rows, "
          f"CSV {csv_chars / 1e6:.1f} MB, Parquet {len(data) / 1e6:.1f} MB", flush=True)
    # The last line, for scripts: one JSON object.
    print(json.dumps({
        "bench": "analytics", "sites": args.sites, "units_per_site": args.units,
        "days": args.days, "archived_sites": archived_sites, "tags": len(TAGS),
        "telemetry_rows": rows,
        "episodes": len(episodes), "status_intervals": len(statuses),
        "archive_mb": round(archive_mb, 1), "rollups_mb": round(rollups_mb, 1),
        "rollups_s": round(rollups_s, 1),
        "archive_mb_full": round(archive_mb * scale) if not math.isclose(scale, 1) else None,
        "faults_s": round(faults_s, 3), "vendors_s": round(vendors_s, 3),
        "historian_s": round(historian_s, 3),
        "historian_whole_days_s": round(historian_days_s, 3),
        "export_month_10_tags_s": round(max(csv_s, parquet_s), 3),
        "export_month_10_tags_csv_s": round(csv_s, 3),
        "export_month_10_tags_parquet_s": round(parquet_s, 3),
        "export_rows": export_rows,
        # The battery-health view of one site (its units' buckets read, fitted, projected).
        "health_fit_s": round(health_s, 3), "health_units": len(health)}), flush=True)


if __name__ == "__main__":
    main()
