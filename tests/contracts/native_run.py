"""One run of the contract accumulator, for tests/contracts/test_native.py to run in a process
of each form (compiled, or Python with BESSMON_NATIVE=0): random intervals of every state,
cause and asset, shuffled within the lateness, with exclusion windows of every kind; halfway
a recovery snapshot is written — or, given one, the run resumes from it.

    python -m tests.contracts.native_run OUT_DIR [SNAPSHOT]

OUT_DIR receives snapshot.pkl (the accumulator halfway; not when resuming) and result.pkl:
{"compiled": bool, "totals": each unit's Totals by day, "periods": (label, availability,
LD) of each final period}."""

from __future__ import annotations

import pickle
import random
import sys
from pathlib import Path

import contracts.ledger
from contracts.incremental import ContractAccumulator
from contracts.intervals import ExclusionWindow, StatusInterval
from contracts.native import is_compiled
from tests.contracts.builders import FLEET, at, contract

HOUR = 3_600_000_000
LATENESS = HOUR
STATES = ["available", "available", "derated", "unavailable", "unknown"]
CAUSES = [None, "fault", "scheduled_maintenance", "grid_outage", "comms_loss"]
WINDOWS = ["grid_outage", "force_majeure", "scheduled_maintenance", "customer_request"]


def inputs() -> tuple[list[StatusInterval], list[ExclusionWindow], int]:
    rng = random.Random(17)
    start, end = at("2026-06-01 00:00"), at("2026-08-01 00:00")
    rows = []
    for asset_id in ["u1", "u1-i1", "u1-i1-b1", "u1-i1-b2", "u1-i2", "u2"]:
        t = start
        while t < end:
            step = rng.randrange(1, 40) * 600_000_000
            state = rng.choice(STATES)
            rows.append(StatusInterval(
                asset_id, t, t + step, state,  # type: ignore[arg-type]
                rng.choice([0.25, 0.5]) if state == "derated" else None,
                rng.choice(CAUSES)))  # type: ignore[arg-type]
            t += step
    windows = [ExclusionWindow(rng.choice(["alpha", "u1", "u2"]), w,
                               w + rng.randrange(1, 30) * HOUR,
                               rng.choice(WINDOWS))  # type: ignore[arg-type]
               for w in sorted(rng.randrange(start, end - 30 * HOUR) for _ in range(12))]
    rows.sort(key=lambda x: x.start_us + rng.randrange(LATENESS))
    return rows, windows, start


def main(out: Path, snapshot: Path | None) -> None:
    rows, windows, start = inputs()
    half = len(rows) // 2
    if snapshot is None:
        acc = ContractAccumulator(FLEET, contract(), allowed_lateness_us=LATENESS,
                                  start_us=start)
        for w in windows:
            acc.add_window(w)
        for i, row in enumerate(rows[:half]):
            acc.add(row)
            if i % 50 == 0:
                acc.advance()
        (out / "snapshot.pkl").write_bytes(pickle.dumps(acc, protocol=pickle.HIGHEST_PROTOCOL))
    else:
        acc = pickle.loads(snapshot.read_bytes())
    for i, row in enumerate(rows[half:]):
        acc.add(row)
        if i % 50 == 0:
            acc.advance()
    acc.advance(max(x.end_us for x in rows))
    periods = [(p.period.label, p.availability, str(p.ld.amount))
               for p in acc.evaluate(["2026-06", "2026-07"])]
    (out / "result.pkl").write_bytes(pickle.dumps({
        "compiled": is_compiled(contracts.ledger),
        "totals": {uid: dict(days) for uid, days in acc.booked.items()},
        "periods": periods}))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else None)
