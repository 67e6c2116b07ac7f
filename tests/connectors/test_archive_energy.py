"""The archive's energy read (connectors/archive/query.py `ArchiveReader.energy`): per asset,
the energy charged and discharged as contracts/benchmarking.py `integrate_minutes` makes it
from the same minutes — each minute's latest version when a day has two parts."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from connectors.archive import layout
from connectors.archive.query import ArchiveReader
from connectors.archive.tables import TELEMETRY, to_arrow
from contracts.benchmarking import integrate_minutes

DAY = dt.date(2026, 3, 2)
T0 = 1_772_409_600_000  # 2026-03-02T00:00:00Z
MINUTE = 60_000


def part(root: Path, n: int, rows: list[tuple[str, str, int, float]]) -> Path:
    path = layout.day_dir(root, TELEMETRY.name, "s", DAY) / f"part-{n:06d}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(to_arrow(TELEMETRY, [("s", a, t, T0 + m * MINUTE, 60, v, v, v, v)
                                        for a, t, m, v in rows]), path)
    return path


@pytest.mark.parametrize("late", [False, True])
def test_the_energy_of_the_latest_minutes(tmp_path: Path, late: bool) -> None:
    means = [-600.0, -300.0, 0.0, 240.0, 480.0]
    rows = [("a", "active_power_kw", m, v) for m, v in enumerate(means)]
    rows += [("a", "soc_pct", 0, 99.0), ("b", "active_power_kw", 0, 60.0)]
    files = [part(tmp_path, 1, rows)]
    if late:  # minute 1 rewritten: now discharging
        files.append(part(tmp_path, 2, [("a", "active_power_kw", 1, 120.0)]))
        means[1] = 120.0
    got = ArchiveReader(tmp_path).energy(files, ["a", "b"], "active_power_kw", T0,
                                         T0 + 10 * MINUTE)
    expected = integrate_minutes(means)
    assert got["a"][:2] == (pytest.approx(expected.charge_kwh),
                            pytest.approx(expected.discharge_kwh))
    assert got["a"][2] == T0 + 4 * MINUTE
    assert got["b"] == (0.0, 1.0, T0)
    assert ArchiveReader(tmp_path).energy(files, ["a"], "active_power_kw", T0 + MINUTE * 5,
                                          T0 + 10 * MINUTE) == {}
