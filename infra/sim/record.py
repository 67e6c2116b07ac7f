"""Recorded telemetry from the simulator's physics, without Modbus: a fleet's polls over a
span of time as `TelemetrySample`s (the raw topic's values), for replays, backfill tests,
benchmarks and demos. Deterministic for a seed."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from contracts.events import AssetReading, TelemetrySample
from contracts.fleet import Fleet
from contracts.textfiles import text_lines
from infra.sim.model import DEFAULT_FADE, FAULT, MAINTENANCE, Fade, Fault, UnitModel


@dataclass(frozen=True)
class PlannedFault:
    asset_id: str
    start_ms: int
    end_ms: int
    code: int = FAULT


def record(fleet: Fleet, start_ms: int, end_ms: int, step_ms: int, *, seed: int = 0,
           faults: Sequence[PlannedFault] = (), fault_rate_per_day: float = 0.0,
           device_type: str | None = "bess-unit-v1", fade: Fade = DEFAULT_FADE
           ) -> Iterator[TelemetrySample]:
    """Every unit's poll every `step_ms` in `[start_ms, end_ms)`, in time order. Besides the
    planned faults, each unit trips (or goes to maintenance) at random, `fault_rate_per_day`
    times a day on average, for 10 min to 4 h. Every unit's state of health fades at
    `fade`'s rates (default: the model's)."""
    rng = random.Random(seed)
    units = [u for s in fleet.sites for u in s.units]
    zones = {u.id: s.tz for s in fleet.sites for u in s.units}
    models = {u.id: UnitModel(u, random.Random(rng.random()), tz=zones[u.id], fade=fade)
              for u in units}
    assets_of = {u.id: [u.id, *(a for inv in u.inverters for a in (inv.id, *(b.id for b in
                                                                            inv.blocks)))]
                 for u in units}
    planned = sorted(faults, key=lambda f: f.start_ms)
    p_fault = fault_rate_per_day * step_ms / 86_400_000
    t = start_ms
    while t < end_ms:
        while planned and planned[0].start_ms <= t:
            f = planned.pop(0)
            unit_id = fleet.assets[f.asset_id].unit_id
            assert unit_id is not None
            models[unit_id].faults[f.asset_id] = Fault(f.code, f.end_ms / 1000)
        for unit in units:
            model = models[unit.id]
            if p_fault and rng.random() < p_fault:
                duration = rng.uniform(600, 4 * 3600)
                model.faults[rng.choice(assets_of[unit.id])] = Fault(
                    rng.choice((FAULT, FAULT, FAULT, MAINTENANCE)), t / 1000 + duration)
            model.step(t / 1000, step_ms / 1000)
            readings = model.readings(t / 1000)
            yield TelemetrySample(
                device_id=unit.id, device_type=device_type, ts_ms=t,
                assets=tuple(AssetReading(id=a, tags={k: round(v, 4) for k, v in
                                                      readings[a].items()})
                             for a in assets_of[unit.id]))
        t += step_ms


def write_jsonl(samples: Iterator[TelemetrySample], path: Path) -> int:
    """One sample per line; returns how many."""
    n = 0
    with path.open("w", encoding="utf-8") as f:
        for sample in samples:
            f.write(sample.model_dump_json(exclude_defaults=False) + "\n")
            n += 1
    return n


def read_jsonl(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) of a recording, skipping blank lines."""
    for number, line in text_lines(path):
        if line.strip():
            yield number, line.rstrip("\r\n")


def device_of(line: str) -> str:
    """The line's device id (its Kafka key), or "" when it names none — a line that is no
    sample still goes to the flow, which refuses it with its reason."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        return ""
    value = record.get("device_id") if isinstance(record, dict) else None
    return value if isinstance(value, str) else ""
