"""`bessmon up` on an empty history seeds each contract's current year from the simulator
before the flows start (infra/seed.py), and the live flows take over from it: the contract
view has real months from the first minute, and its live tiles, period table and the
history agree (issue: a fresh stack billed the months before it started as data gaps)."""

from __future__ import annotations

import datetime as dt
import itertools
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors.settings import EXAMPLE_CONTRACTS
from contracts.contract import load_contracts
from contracts.engine import ContractContext
from contracts.fleet import load_fleet
from tests.stack import RunningStack, start_stack, wait_gone

pytestmark = pytest.mark.timeout(420)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    running = start_stack(Path(tmp_path_factory.mktemp("seeded")), "--seed-history",
                          "contract-year", timeout_s=300)
    pids = {int(p) for p in running.state()["children"].values()}  # type: ignore[attr-defined]
    yield running
    assert running.stop() == 0
    assert wait_gone(sorted(pids)) == []


def compliance(stack: RunningStack, contract_id: str, period: str) -> dict[str, Any]:
    response = httpx.get(f"{stack.url}api/v1/contracts/{contract_id}/compliance",
                         params={"period": period},
                         headers={"Authorization": f"Bearer {stack.token}"}, timeout=30)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_each_contract_year_has_real_months_and_one_set_of_numbers(
        stack: RunningStack) -> None:
    assert any(line.startswith("history seeded in") for line in stack.output), stack.output
    fleet = load_fleet(Path(str(stack.state()["fleet_file"])))
    now_us = int(time.time() * 1_000_000)
    for contract in load_contracts(EXAMPLE_CONTRACTS).values():
        cal = ContractContext(fleet, contract).calendar
        year = cal.contract_year(now_us)
        assert year is not None
        year_start_us = cal.year_bounds(year)[0]
        first = cal.containing(year_start_us, contract.measurement_period).label
        current = cal.containing(now_us, contract.measurement_period).label
        span = first if first == current else f"{first}..{current}"
        # The live tiles need the flows' first KPI step (every 10 s of event time).
        deadline = time.monotonic() + 90
        while True:
            body = compliance(stack, contract.id, span)
            if body["open_period"] is not None or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert body["open_period"] is not None, body
        # Monitored from the start of the contract year (the seed), to the poll step (None:
        # throughout the range).
        since = body["monitored_from_ms"]
        assert since is None or since * 1000 - year_start_us < 1_800_000_000, since
        periods = body["evaluation"]["periods"]
        assert periods and all(p["availability_pct"] is not None for p in periods), periods
        # The closed periods are the seeded past's (the simulator's units run: mostly up).
        for p in periods[:-1]:
            assert 50.0 < p["availability_pct"] <= 100.0, p
        live = body["open_period"]
        assert live["period"] == current
        # The open period so far: the seeded days and the live minutes, on both sides (the
        # KPIs are up to 10 s older than the snapshot's final time the table is cut at).
        assert live["actual_pct"] == pytest.approx(periods[-1]["availability_pct"], abs=0.01)
        year_ld = sum(p["ld"] for p in periods)
        assert live["ld_year_to_date"] == pytest.approx(year_ld, rel=1e-6, abs=0.01), \
            (live, periods)


def test_the_seeded_and_the_live_statuses_never_overlap(stack: RunningStack) -> None:
    """The seed's last statuses are closed where the live flows took over."""
    deadline = time.monotonic() + 60
    db = stack.run_dir / "history.db"
    while True:  # the live flows' first final statuses, and the seed's closed by them
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            rows = conn.execute("SELECT asset_id, start_ms, end_ms FROM status_intervals "
                                "ORDER BY asset_id, start_ms").fetchall()
        started = int(time.time() * 1000) - 120_000
        if any(start > started for _, start, _ in rows) or time.monotonic() > deadline:
            break
        time.sleep(2)
    seeded_before = dt.datetime.now(dt.UTC) - dt.timedelta(days=20)
    assert any(start < seeded_before.timestamp() * 1000 for _, start, _ in rows)
    for asset, mine in itertools.groupby(rows, key=lambda r: r[0]):
        for (_, _, end), (_, start, _) in itertools.pairwise(list(mine)):
            assert end is not None and end <= start, (asset, end, start)
