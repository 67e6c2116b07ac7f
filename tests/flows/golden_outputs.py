"""Golden outputs of the telemetry flow: a fixed input set that exercises every rule, what
today's flow makes of it (every output topic, the hot state in Redis, the history tables),
and the comparison of a run with that — so that a rewrite of the flow's hot path can show
that nothing it produces changed.

The input set is generated here, deterministically (no committed input file): the simulator
records a small fleet's polls (infra/sim/record.py, seed `SEED`) with planned faults, then
hand-made changes and records are woven in. Sites and contracts:

- nordvik (Europe/Stockholm, 3 units, LTSA-NORDVIK: monthly), elbe (Europe/Berlin, 2 units,
  LTSA-ELBE: quarterly), mesa (America/Phoenix, 1 unit, LTSA-MESA: per contract year) —
  the example contracts (connectors.settings.EXAMPLE_CONTRACTS) — and nordvik2
  (Europe/Stockholm, 1 unit, no contract: technical availability).
- 25 minutes of polls every 2 s, 2026-10-25 00:45–01:10 UTC: across the end of summer time
  in Stockholm and Berlin (03:00 CEST → 02:00 CET at 01:00 UTC).

What it covers (`coverage` checks that the outputs still show each, so that nobody shrinks
the set silently):

- unit trip (nordvik-u01, fault across the DST change, with a ticket opened and resolved
  during it), DC-block trip (nordvik-u02-i1-b3, still down when the input ends: repair
  priorities), inverter trip (elbe-u01-i2), scheduled maintenance (nordvik-u03, code 4),
  derate by status code (elbe-u02, code 2 at 60 % available power), derate by the HVAC
  alarm bit (elbe-u01), unavailable by the emergency-stop alarm bit (nordvik2-u01), a grid
  outage (nordvik-u02, code 5: a cause LTSA-NORDVIK excludes), flapping status
  (nordvik2-u01 toggling fault/running every 20 s: data instability);
- limit breaches: cell temperature warning escalating to major (elbe-u02-i1-b1), SoC low
  (mesa-u01), overload (elbe-u02), inverter temperature (nordvik-u03-i1); a trend breach:
  the same cell temperature rising 4.5 °C/min, raised and cleared;
- a frozen value (elbe-u01-i1-b2's cell temperature unchanged for 18 min), comms loss
  (mesa-u01 silent for 90 s: telemetry gap, `unknown`/`comms_loss` status and alarm),
  out-of-order samples within the allowed lateness, a sample later than the lateness, a
  duplicate, a burst of refused records (the dead-letter-rate alert);
- dead letters of every reason the telemetry flow gives (`DLQ_REASONS`), records that name
  no site (the `unrouted` tallies), and refused ticket records (schema, unknown asset);
- the DST day's final intervals and day rows, the contract periods at the end of input
  (the run finishes to the end of each site's measurement period), the KPIs, the LD-risk
  warning and repair priorities of the hot state.

The flow runs with the monitoring file's own settings (infra/sim/monitoring.yaml: 30 s
allowed lateness, 10 s stale-after) and `SiteSettings.of(config,
account_from_contract_year=True)`, exactly what `bessmon flows --to-end` uses, so the same
golden files serve the in-process run and the run of the command with two processes.

The golden files (tests/flows/golden/{topics,redis,history}.json.gz, sorted-key compact JSON,
gzip without a timestamp; and inputs.sha256, the digest of the input set they were written
from) hold:

- `topics`: each output topic's messages grouped by the key their order is kept under — the
  Kafka key (asset for status and breaches, site for availability, scope for alerts) and,
  for the dead-letter topic, the refused record's own key (its device; the Kafka key there
  is the source, which several sites share) — each group in the order of the topic. Order
  across keys is not frozen: it varies with batching and with the number of workers;
- `redis`: every `bessmon:*` key less the live channels; JSON values parsed;
- `history`: every row of every table, sorted; JSON columns (`event`) parsed.

Normalised, because they legitimately vary from run to run, and nothing else:

- the run's own input topic names (random prefix), in the dead letters' `topic` field →
  `<telemetry>` / `<tickets>`;
- the wall-clock distance in the clock-skew dead letter's detail ("timestamp … is N s ahead
  of the receiving clock": the receiving clock of a replay is the record's Kafka create
  time, i.e. when the test produced it) → `<wall-clock> s`.

The clock-skew record (a timestamp in 2096) is refused and counts in nordvik's
dead-letter rate at the window's trusted clock: a record refused whole never moves that
clock (`flows/quality.py` DlqRate). (Until the golden files were regenerated for that fix,
its time moved the window to 2096 and raised a `dlq_rate` alert there.)

Numbers compare within 1e-9 (absolute, relative above 1), everything else exactly.

Regenerate the golden files from today's flow (needs the broker and Redis: the addresses in
KAFKA_BOOTSTRAP_SERVERS / REDIS_URL, else local ones are started as the test suite does):

    .venv/bin/python -m tests.flows.golden_outputs --write

Without `--write` the same command compares a fresh run with the golden files."""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import gzip
import hashlib
import json
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from connectors.settings import EXAMPLE_CONTRACTS, EXAMPLE_MONITORING
from contracts.contract import fleet_contracts, load_contracts
from contracts.fleet import Fleet
from contracts.monitoring import load_monitoring
from flows.site_state import SiteSettings
from infra.sim.fleetgen import fleet_yaml, generate_fleet
from infra.sim.model import MAINTENANCE
from infra.sim.record import PlannedFault, record
from tests.flows.harness import Record, Run

GOLDEN_DIR = Path(__file__).parent / "golden"
PARTS = ("topics", "redis", "history")
TOLERANCE = 1e-9

MIN_MS = 60_000
START_MS = int(dt.datetime(2026, 10, 25, 0, 45, tzinfo=dt.UTC).timestamp() * 1000)
END_MS = START_MS + 25 * MIN_MS
STEP_MS = 2_000
DST_MS = int(dt.datetime(2026, 10, 25, 1, 0, tzinfo=dt.UTC).timestamp() * 1000)  # 03→02 CET
SEED = 7
UNITS = {"nordvik": 3, "elbe": 2, "mesa": 1, "nordvik2": 1}
DLQ_REASONS = {"empty", "malformed_json", "schema", "unknown_asset", "unknown_device_type",
               "mixed_units", "key_mismatch", "impossible_value", "clock_skew", "late"}
FUTURE_MS = 4_000_000_000_000  # 2096: a device clock far ahead (a clock_skew dead letter)


def at(minutes: float) -> int:
    """The time `minutes` after the start of the recording."""
    return START_MS + round(minutes * MIN_MS)


def fleet_data() -> dict[str, Any]:
    data: dict[str, Any] = generate_fleet(len(UNITS), units_per_site=max(UNITS.values()))
    for site in data["sites"]:
        site["units"] = site["units"][:UNITS[site["id"]]]
    return data


FLEET = Fleet.model_validate(fleet_data())
CONFIG = load_monitoring(EXAMPLE_MONITORING)
CONTRACTS = fleet_contracts(load_contracts(EXAMPLE_CONTRACTS), FLEET)
SITE_SETTINGS = SiteSettings.of(CONFIG, account_from_contract_year=True)  # `flows --to-end`
FAULTS = (
    PlannedFault("nordvik-u01", at(12), at(18)),  # unit trip across the DST change
    PlannedFault("nordvik-u02-i1-b3", at(3), at(30)),  # DC-block trip, open at the end
    PlannedFault("nordvik-u03", at(8), at(14), code=MAINTENANCE),  # scheduled maintenance
    PlannedFault("elbe-u01-i2", at(6), at(10)),  # inverter trip
    PlannedFault("nordvik-u02", at(22), at(24), code=5),  # grid outage: an excluded cause
)


def write_fleet_file(path: Path) -> Path:
    path.write_text(fleet_yaml(fleet_data(), source="tests/flows/golden_outputs.py"))
    return path


# -- the input set --------------------------------------------------------------------------


def _tags(poll: dict[str, Any], asset_id: str) -> dict[str, Any]:
    for reading in poll["assets"]:
        if reading["id"] == asset_id:
            tags: dict[str, Any] = reading["tags"]
            return tags
    raise KeyError(asset_id)


def _shape(poll: dict[str, Any], frozen: dict[str, float]) -> None:
    """The hand-made conditions, in place on one recorded poll."""
    device, t = poll["device_id"], poll["ts_ms"]
    if device == "elbe-u02":
        if at(4) <= t < at(9):  # derated by its controller: 60 % of rated power
            _tags(poll, device).update(status_code=2, available_power_kw=1500.0)
        cell = _tags(poll, "elbe-u02-i1-b1")
        if at(10) <= t < at(18):  # rising 4.5 °C/min: a trend, then the 40 and 45 °C limits
            cell["cell_temp_max_c"] = round(cell["cell_temp_max_c"] + 4.5 * (t - at(10))
                                            / MIN_MS, 4)
        elif at(18) <= t < at(21):  # holding hot: the trend clears, the limit stands
            cell["cell_temp_max_c"] = round(cell["cell_temp_max_c"] + 36.0, 4)
        if at(22) <= t < at(22) + 20_000:
            _tags(poll, device)["load_pct"] = 102.0  # overload
    elif device == "elbe-u01":
        if at(15) <= t < at(19):
            _tags(poll, device)["alarm_word"] = 4  # HVAC failure: derated to half
        cell = _tags(poll, "elbe-u01-i1-b2")
        if at(2) <= t < at(20):  # a stuck sensor for 18 min (frozen after 15)
            cell["cell_temp_max_c"] = frozen.setdefault("elbe-u01-i1-b2",
                                                        cell["cell_temp_max_c"])
    elif device == "mesa-u01" and at(16) <= t < at(17):
        _tags(poll, device)["soc_pct"] = 4.0  # SoC low (minor below 5 %)
    elif device == "nordvik2-u01":
        if at(5) <= t < at(8) and (t - at(5)) // 20_000 % 2 == 0:
            _tags(poll, device)["status_code"] = 3  # flapping: fault / running every 20 s
        elif at(15) <= t < at(16):
            _tags(poll, device)["alarm_word"] = 1  # emergency stop, whatever the code says
    elif device == "nordvik-u03" and at(21) <= t < at(21.5):
        _tags(poll, "nordvik-u03-i1")["temperature_c"] = 62.0  # inverter too hot


def _text(poll: dict[str, Any]) -> bytes:
    return json.dumps(poll, separators=(",", ":")).encode()


def _refused_after(poll: dict[str, Any]) -> list[Record]:
    """Records refused whole, each right after the poll it is made from."""
    device, t = poll["device_id"], poll["ts_ms"]
    key = device.encode()
    if device == "nordvik-u01" and t == at(1):
        return [(key, b"")]  # empty
    if device == "nordvik-u02" and t == at(2):
        return [(key, b"{broken")]  # malformed_json
    if device == "elbe-u01" and t == at(3):
        return [(key, json.dumps({"device_id": device, "ts_ms": t}).encode())]  # schema
    if device == "nordvik-u01" and t == at(5):  # unknown_asset, naming no site: unrouted
        ghost = {**poll, "device_id": "ghost-u01",
                 "assets": [{"id": "ghost-u01", "tags": poll["assets"][0]["tags"]}]}
        return [(b"ghost-u01", _text(ghost))]
    if device == "elbe-u02" and t == at(6):
        return [(key, _text({**poll, "device_type": "acme-9000"}))]  # unknown_device_type
    if device == "mesa-u01" and t == at(8):
        return [(None, b"[1, 2]")]  # schema, without a key: unrouted
    if device == "nordvik-u01" and t == at(9):  # mixed_units: another unit's asset in it
        other = {"id": "nordvik-u02", "tags": poll["assets"][0]["tags"]}
        return [(key, _text({**poll, "assets": [*poll["assets"], other]}))]
    if device == "elbe-u01" and t == at(10):
        return [(b"elbe-u02", _text(poll))]  # key_mismatch
    if device == "elbe-u02" and t == at(11):  # a burst: the site's dead-letter rate
        return [(key, b"{broken " + str(i).encode()) for i in range(6)]
    if device == "nordvik-u02" and t == at(13):
        return [(key, _text({**poll, "ts_ms": FUTURE_MS}))]  # clock_skew
    return []


def recorded_polls() -> list[dict[str, Any]]:
    """The simulator's polls of the fleet, with the hand-made conditions."""
    frozen: dict[str, float] = {}
    polls = []
    for sample in record(FLEET, START_MS, END_MS, STEP_MS, seed=SEED, faults=FAULTS):
        poll: dict[str, Any] = json.loads(sample.model_dump_json())
        _shape(poll, frozen)
        polls.append(poll)
    return polls


def input_records() -> list[Record]:
    """The telemetry topic's records, in order: the polls with comms loss, out-of-order,
    late, duplicate and impossible values, and the refused records woven in."""
    out: list[Record] = []
    held: list[tuple[int, Record]] = []  # (deliver after this time, record)
    for poll in recorded_polls():
        device, t = poll["device_id"], poll["ts_ms"]
        while held and held[0][0] < t:
            out.append(held.pop(0)[1])
        if device == "mesa-u01" and at(11) <= t < at(12.5):
            continue  # silent for 90 s: comms loss
        if device == "nordvik-u03" and t == at(4):  # impossible value: used without it
            bad = copy.deepcopy(poll)
            _tags(bad, device)["soc_pct"] = 412.0
            out.append((device.encode(), _text(bad)))
            continue
        record_ = (device.encode(), _text(poll))
        if device == "nordvik-u01" and t == at(20):
            held.append((at(22), record_))  # 2 min late: beyond the 30 s allowed
            continue
        if device == "elbe-u01" and t == at(7):
            held.append((at(7) + 10_000, record_))  # 10 s out of order: within it
            held.sort(key=lambda h: h[0])
            continue
        out.append(record_)
        if device == "mesa-u01" and t == at(3):
            out.append(record_)  # a duplicate
        out += _refused_after(poll)
    out += [r for _, r in held]
    return out


def ticket_records() -> list[Record]:
    """The ticket topic's records: a ticket on the tripped unit (opened, then resolved),
    one on an asset no site has, and one that is no ticket."""
    def ticket(status: str, updated_ms: int, **extra: Any) -> bytes:
        return json.dumps({"provider": "jira", "ticket_id": "OPS-1", "asset_id": "nordvik-u01",
                           "status": status, "opened_ms": at(12.5), "updated_ms": updated_ms,
                           "summary": "nordvik-u01 tripped", **extra}).encode()

    ghost = json.dumps({"provider": "jira", "ticket_id": "OPS-2", "asset_id": "ghost-u01",
                        "status": "open", "opened_ms": at(5), "updated_ms": at(5)}).encode()
    return [(b"jira:OPS-1", ticket("open", at(12.5))),
            (b"jira:OPS-2", ghost),
            (b"jira:OPS-3", b"{not a ticket"),
            (b"jira:OPS-1", ticket("resolved", at(18.5), resolved_ms=at(18.5)))]


# -- canonical form -------------------------------------------------------------------------

_SKEW = re.compile(r"is -?[0-9.]+ s ahead of the receiving clock")


def _normal(value: Any, topics: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _normal(v, topics) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normal(v, topics) for v in value]
    if isinstance(value, str):
        if value in topics:
            return topics[value]
        return _SKEW.sub("is <wall-clock> s ahead of the receiving clock", value)
    return value


def _parsed(raw: bytes | str) -> Any:
    text = raw.decode() if isinstance(raw, bytes) else raw
    try:
        return json.loads(text)
    except ValueError:
        return text


def _group_key(topic: str, message: dict[str, Any]) -> str:
    field = {"status": "asset_id", "breaches": "asset_id", "availability": "site_id",
             "alerts": "scope_id", "dlq": "key"}[topic]
    return str(message.get(field) or "")


def canonical(run: Run) -> dict[str, Any]:
    """A run's outputs as the golden files hold them (see the module docstring)."""
    telemetry, tickets = run.input_topics
    names = {telemetry: "<telemetry>", tickets: "<tickets>"}
    topics: dict[str, dict[str, list[Any]]] = {}
    for name, messages in run.topics.items():
        groups: dict[str, list[Any]] = {}
        for message in messages:
            groups.setdefault(_group_key(name, message), []).append(message)
        topics[name] = dict(sorted(groups.items()))
    state: dict[str, Any] = {}
    for key, value in run.redis.items():
        state[key] = ({k.decode(): _parsed(v) for k, v in value.items()}
                      if isinstance(value, dict) else _parsed(value))
    history = {table: [[_parsed(c) if isinstance(c, str) and c.startswith(("{", "["))
                        else c for c in row] for row in rows]
               for table, rows in run.history.items()}
    out: dict[str, Any] = _normal({"topics": topics, "redis": state, "history": history},
                                  names)
    return out


# -- comparison -----------------------------------------------------------------------------


def _number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def first_difference(expected: Any, actual: Any, path: str = "$") -> str | None:
    """Where `actual` first differs from `expected`, None when it does not: structure and
    strings exactly, numbers within `TOLERANCE` (absolute, relative above 1)."""
    if _number(expected) and _number(actual):
        if isinstance(expected, int) and isinstance(actual, int):
            same = expected == actual
        else:
            a, b = float(expected), float(actual)
            same = (math.isnan(a) and math.isnan(b)) or \
                abs(a - b) <= TOLERANCE * max(1.0, abs(a), abs(b))
        return None if same else f"{path}: expected {expected!r}, got {actual!r}"
    if type(expected) is not type(actual):
        return (f"{path}: expected {type(expected).__name__} {_short(expected)}, got "
                f"{type(actual).__name__} {_short(actual)}")
    if isinstance(expected, dict):
        missing = sorted(set(expected) - set(actual))
        extra = sorted(set(actual) - set(expected))
        if missing or extra:
            return f"{path}: keys missing {missing[:5]}, unexpected {extra[:5]}"
        for key in sorted(expected):
            found = first_difference(expected[key], actual[key], f"{path}[{key!r}]")
            if found:
                return found
        return None
    if isinstance(expected, list):
        for i, (e, a) in enumerate(zip(expected, actual, strict=False)):
            found = first_difference(e, a, f"{path}[{i}]")
            if found:
                return found
        if len(expected) != len(actual):
            n = min(len(expected), len(actual))
            more = expected[n] if len(expected) > n else actual[n]
            return (f"{path}: expected {len(expected)} items, got {len(actual)} (first "
                    f"{'missing' if len(expected) > n else 'unexpected'}: {_short(more)})")
        return None
    return None if expected == actual else \
        f"{path}: expected {_short(expected)}, got {_short(actual)}"


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, bytes) else repr(value)
    return text if len(text) <= 300 else text[:300] + "…"


def unordered(outputs: dict[str, Any]) -> dict[str, Any]:
    """The outputs with each topic's groups sorted too: for runs whose order within a key
    is not guaranteed either (none so far; kept for diagnostics)."""
    out = copy.deepcopy(outputs)
    for name, groups in out["topics"].items():
        out["topics"][name] = {k: sorted(v, key=lambda m: json.dumps(m, sort_keys=True))
                               for k, v in groups.items()}
    return out


# -- golden files ---------------------------------------------------------------------------


def golden_path(part: str) -> Path:
    return GOLDEN_DIR / f"{part}.json.gz"


INPUTS_DIGEST = GOLDEN_DIR / "inputs.sha256"


def input_digest(records: Sequence[Record], tickets: Sequence[Record]) -> str:
    """SHA-256 of the input set (every record's key and value, length-prefixed): tells a
    changed input set (the simulator, the generator) from a changed flow."""
    digest = hashlib.sha256()
    for topic, items in (("telemetry", records), ("tickets", tickets)):
        digest.update(f"{topic} {len(items)}\n".encode())
        for key, value in items:
            digest.update(b"-" if key is None else f"{len(key)}:".encode() + key)
            digest.update(f"{len(value)}:".encode() + value)
    return digest.hexdigest()


def write_golden(outputs: dict[str, Any], digest: str) -> list[Path]:
    GOLDEN_DIR.mkdir(exist_ok=True)
    INPUTS_DIGEST.write_text(digest + "\n")
    paths = [INPUTS_DIGEST]
    for part in PARTS:
        text = json.dumps(outputs[part], sort_keys=True, separators=(",", ":"))
        path = golden_path(part)
        path.write_bytes(gzip.compress(text.encode(), compresslevel=9, mtime=0))
        paths.append(path)
    return paths


def read_golden() -> dict[str, Any]:
    return {part: json.loads(gzip.decompress(golden_path(part).read_bytes()))
            for part in PARTS}


# -- what the input set must keep covering --------------------------------------------------


def _messages(outputs: dict[str, Any], topic: str) -> Iterator[dict[str, Any]]:
    for group in outputs["topics"][topic].values():
        yield from group


def coverage(outputs: dict[str, Any]) -> list[str]:
    """The claims of the module docstring the outputs do not show (empty: all shown)."""
    status = list(_messages(outputs, "status"))
    breaches = list(_messages(outputs, "breaches"))
    alerts = list(_messages(outputs, "alerts"))
    letters = list(_messages(outputs, "dlq"))
    periods = [m for m in _messages(outputs, "availability") if m.get("kind") == "period"]
    redis_state, history = outputs["redis"], outputs["history"]
    snapshots = {k.rsplit(":", 1)[1]: v for k, v in redis_state.items()
                 if k.startswith("bessmon:site:")}
    local = dt.datetime.fromtimestamp(DST_MS / 1000, dt.UTC).astimezone(
        FLEET.site("nordvik").tz)
    dst_day = int(dt.datetime.combine(local.date(), dt.time(), FLEET.site("nordvik").tz)
                  .timestamp() * 1000)
    # status_intervals: asset_id, start_ms, site_id, end_ms, state, derate_fraction, cause
    intervals = history["status_intervals"]
    # availability: asset_id, bucket, start_ms, site_id, end_ms, window_h, excluded_h, …
    days = history["availability"]
    episodes = [row[-1] for row in history["episodes"]]

    def has_status(state: str, cause: str | None = None, asset: str = "") -> bool:
        return any(m["state"] == state and (cause is None or m["cause"] == cause)
                   and m["asset_id"].startswith(asset) for m in status)

    def breach(rule: str, severity: str | None = None) -> bool:
        return any(b["rule_id"] == rule and (severity is None or b["severity"] == severity)
                   for b in breaches if b["state"] == "raised") and \
            any(b["rule_id"] == rule for b in breaches if b["state"] == "cleared")

    claims = {
        "unit trip": has_status("unavailable", "fault", "nordvik-u01"),
        "DC-block trip": has_status("unavailable", "fault", "nordvik-u02-i1-b3"),
        "inverter trip": has_status("unavailable", "fault", "elbe-u01-i2"),
        "scheduled maintenance": has_status("unavailable", "scheduled_maintenance",
                                            "nordvik-u03"),
        "grid outage": has_status("unavailable", "grid_outage", "nordvik-u02"),
        "unavailable by alarm bit": any(m["asset_id"] == "nordvik2-u01" and m["ts_ms"] == at(15)
                                        and m["state"] == "unavailable" for m in status),
        "derate by status code": any(m["state"] == "derated" and m["asset_id"] == "elbe-u02"
                                     and abs((m["derate_fraction"] or 0) - 0.6) < 1e-6
                                     for m in status),
        "derate by alarm bit": any(m["state"] == "derated" and m["asset_id"] == "elbe-u01"
                                   and m["derate_fraction"] == 0.5 for m in status),
        "comms loss": has_status("unknown", "comms_loss", "mesa-u01"),
        "trend breach": breach("cell-temp-rising"),
        "limit breach, escalated": breach("cell-temp-high", "warning")
        and breach("cell-temp-high", "major"),
        "soc-low breach": breach("soc-low"),
        "overload breach": breach("overload"),
        "inverter temperature breach": breach("inverter-temp-high"),
        **{f"{kind} alert": any(a["kind"] == kind for a in alerts)
           for kind in ("telemetry_gap", "frozen_value", "dlq_rate", "data_instability")},
        **{f"dead letter {reason}": any(d["reason"] == reason for d in letters)
           for reason in sorted(DLQ_REASONS)},
        "refused tickets": {(d["source"], d["reason"]) for d in letters} >= {
            ("flows.tickets", "schema"), ("flows.tickets", "unknown_asset")},
        "unrouted tallies": "bessmon:dead-letters:unrouted" in redis_state,
        "late count": sum(s["counts"].get("late", 0) for s in snapshots.values()) >= 1,
        "duplicate count": sum(s["counts"].get("duplicate", 0)
                               for s in snapshots.values()) >= 1,
        "every site": set(snapshots) == {s.id for s in FLEET.sites},
        "an interval across the DST change": any(
            r[2] == "nordvik" and r[1] < DST_MS and r[3] is not None and r[3] > DST_MS
            and r[4] != "available" for r in intervals),
        "the 25-hour DST day": any(r[1] == "day" and r[3] == "nordvik" and r[2] == dst_day
                                   and r[4] - r[2] == 25 * 3_600_000 for r in days),
        "a contract period": any(p["contract_id"] == "LTSA-NORDVIK" for p in periods),
        "technical availability": any(p["site_id"] == "nordvik2" for p in periods),
        "a ticket linked to an episode": any(
            e["asset_id"] == "nordvik-u01" and any(t["ticket_id"] == "OPS-1"
                                                   for t in e.get("tickets", []))
            for e in episodes),
        "repair priorities": any(v["items"] for k, v in redis_state.items()
                                 if k.startswith("bessmon:repair:")),
    }
    return [name for name, shown in claims.items() if not shown]


# -- regeneration ---------------------------------------------------------------------------


def run_golden_inputs(kafka: str, redis_url: str, db: int, tmp: Path,
                      records: Sequence[Record], tickets: Sequence[Record]) -> dict[str, Any]:
    """The flow in this process, one worker, on the input set; its canonical outputs."""
    from tests.flows.harness import run_flow

    run = run_flow(kafka, redis_url, db, tmp, records, fleet=FLEET, config=CONFIG,
                   contracts=CONTRACTS, site_settings=SITE_SETTINGS, tickets=tickets,
                   prefix="golden")
    return canonical(run)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run the telemetry flow on the golden input set and compare its outputs "
                    "with the golden files (or rewrite them).")
    parser.add_argument("--write", action="store_true",
                        help="rewrite the golden files from today's flow (else: compare)")
    parser.add_argument("--db", type=int, default=9, help="Redis database to use")
    args = parser.parse_args(argv)
    from infra.services import Service, start_broker, start_redis

    with tempfile.TemporaryDirectory(prefix="bessmon-golden-") as tmp_dir:
        tmp = Path(tmp_dir)
        services: list[Service] = []
        kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        redis_url = os.environ.get("REDIS_URL")
        try:
            if not kafka:
                services.append(start_broker(tmp))
                kafka = services[-1].address
            if not redis_url:
                services.append(start_redis(tmp))
                redis_url = services[-1].address
            started = time.monotonic()
            records, tickets = input_records(), ticket_records()
            outputs = run_golden_inputs(kafka, redis_url, args.db, tmp, records, tickets)
            took = time.monotonic() - started
        finally:
            for service in services:
                service.stop()
    missing = coverage(outputs)
    if missing:
        print(f"the input set no longer covers: {', '.join(missing)}", file=sys.stderr)
        return 1
    digest = input_digest(records, tickets)
    if args.write:
        paths = write_golden(outputs, digest)
        size = sum(p.stat().st_size for p in paths)
        print(f"wrote {', '.join(str(p) for p in paths)} ({size:,} bytes; run {took:.1f} s)")
        return 0
    if INPUTS_DIGEST.read_text().strip() != digest:
        print("the input set changed (simulator or generator) since the golden files were "
              "written", file=sys.stderr)
    found = first_difference(read_golden(), outputs)
    if found:
        print(f"outputs differ from the golden files: {found}", file=sys.stderr)
        return 1
    print(f"outputs equal the golden files (run {took:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
