"""Poison records: mutated telemetry through the real flow with the real sinks (a Kafka topic
in, the history store in SQLite, Redis, the output topics) must crash nothing, land every
refused record in the dead-letter topic with a reason, and leave what the valid records
compute exactly as it is without the garbage around them.

Each Hypothesis example feeds a recording of two sites (720 valid polls) with 3,400 mutated
records interleaved — each right after the record it was made from, a third of them under
a key no device has — and compares every output with the same recording's run without them.
Three examples a run: 10,200 mutated records."""

from __future__ import annotations

import datetime as dt
import json
import random
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from bytewax.testing import run_main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.settings import EXAMPLE_MONITORING, Settings
from contracts.events import DeadLetter
from contracts.fleet import Fleet
from contracts.monitoring import load_monitoring
from flows.site_state import SiteSettings
from flows.telemetry_flow import RawMessage, build_flow
from infra.sim.fleetgen import generate_fleet
from infra.sim.record import record
from tests.flows.harness import Run
from tests.flows.harness import run_flow as run_any_flow
from tests.flows.mutations import mutate

TZ = ZoneInfo("Europe/Stockholm")
CONFIG = load_monitoring(EXAMPLE_MONITORING)
FLEET = Fleet.model_validate(generate_fleet(2, units_per_site=2))
START = int(dt.datetime(2026, 10, 12, 8, tzinfo=TZ).timestamp() * 1000)
CLEAN = [(s.device_id, s.model_dump_json()) for s in
         record(FLEET, START, START + 3 * 60_000, 1_000, seed=11)]
GARBAGE_PER_EXAMPLE = 3_400
OUTPUTS = ("status", "availability", "dlq", "breaches", "alerts")
FAST = SiteSettings(allowed_lateness_ms=2_000, stale_after_ms=5_000, finalize_every_ms=1_000)
run_flow = partial(run_any_flow, fleet=FLEET, config=CONFIG, site_settings=FAST, prefix="poison")


def without_refusals(run: Run) -> dict[str, Any]:
    """Everything the valid records compute: the outputs less the dead letters, the
    dead-letter-rate alerts (and their alarms) and the counts of refused and repeated
    records."""
    def alert_ok(a: dict[str, Any]) -> bool:
        return a.get("kind") != "dlq_rate" and a.get("rule_id") != "alert.dlq_rate"

    topics = {name: sorted(json.dumps({k: v for k, v in m.items() if k != "counts"},
                                      sort_keys=True) for m in msgs
                           if name not in ("alerts", "breaches") or alert_ok(m))
              for name, msgs in run.topics.items() if name != "dlq"}
    state: dict[str, Any] = {}
    for key, value in run.redis.items():
        if key.startswith("bessmon:dead-letters:"):
            continue
        if key.startswith("bessmon:site:"):
            snapshot = json.loads(value)
            snapshot.pop("counts")
            value = snapshot
        elif key.startswith(("bessmon:alerts:", "bessmon:alarms:")):
            value = {k: v for k, v in value.items() if alert_ok(json.loads(v))}
        state[key] = value
    history = {t: rows for t, rows in run.history.items() if t not in ("alerts", "breaches")}
    for table in ("alerts", "breaches"):
        history[table] = [r for r in run.history[table] if "dlq_rate" not in repr(r)]
    return {"topics": topics, "redis": state, "history": history}


@pytest.fixture(scope="module")
def clean(kafka_bootstrap: str, redis_url: str,
          tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    run = run_flow(kafka_bootstrap, redis_url, 5, tmp_path_factory.mktemp("clean"),
                   [(k.encode(), v.encode()) for k, v in CLEAN])
    assert not run.topics["dlq"]
    assert any(m["state"] == "unavailable" for m in run.topics["status"]) or \
        run.topics["status"], "the recording computes statuses"
    return without_refusals(run)


def with_garbage(seed: int) -> tuple[list[tuple[bytes | None, bytes]], set[int]]:
    """The recording with GARBAGE_PER_EXAMPLE mutated records, each after its original."""
    rng = random.Random(seed)
    extra = Counter(rng.randrange(len(CLEAN)) for _ in range(GARBAGE_PER_EXAMPLE))
    records: list[tuple[bytes | None, bytes]] = []
    garbage: set[int] = set()
    for i, (device, text) in enumerate(CLEAN):
        records.append((device.encode(), text.encode()))
        for _ in range(extra[i]):
            if rng.random() < 1 / 3:  # a key no device has (or none at all)
                key: bytes | None = rng.choice([None, b"", b"ghost", rng.randbytes(8),
                                                 b"nordvik-u99", b"\xff" * 300])
            else:
                key = device.encode()
            garbage.add(len(records))
            records.append((key, mutate(rng, text)))
    return records, garbage


@pytest.mark.timeout(900)
@settings(max_examples=2, deadline=None, derandomize=False,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_poison_records_are_refused_and_change_nothing_else(
        seed: int, clean: dict[str, Any], kafka_bootstrap: str, redis_url: str,
        tmp_path: Path) -> None:
    records, garbage = with_garbage(seed)
    run = run_flow(kafka_bootstrap, redis_url, 6, tmp_path, records)  # no crash

    letters = [DeadLetter.model_validate(d) for d in run.topics["dlq"]]
    assert all(d.reason and d.detail for d in letters)
    refused = {d.offset for d in letters}
    assert refused <= garbage, "a valid record was refused"
    # What is not refused is a valid record repeating its original (same device and time,
    # e.g. a key renamed that nobody reads): dropped, counted as a duplicate — and so is a
    # poll used without its impossible values (those in the dead letter) that repeats one.
    snapshots = [json.loads(v) for k, v in run.redis.items() if k.startswith("bessmon:site:")]
    duplicates = sum(s["counts"].get("duplicate", 0) for s in snapshots)
    partial = sum(1 for d in letters if d.reason == "impossible_value")
    assert duplicates == len(garbage - refused) + partial
    # The data-quality tallies count every dead letter by source and reason.
    tallies = [json.loads(v) for k, h in run.redis.items()
               if k.startswith("bessmon:dead-letters:") for v in h.values()]
    assert sum(t["count"] for t in tallies) == len(letters)
    assert without_refusals(run) == clean


def test_mutations_cover_what_a_device_can_send() -> None:
    """The fuzzer's own check: its records reach many distinct refusal reasons."""
    from flows.telemetry import Normalizer, RawRecord, decode_sample

    normalizer = Normalizer(CONFIG, FLEET)
    rng = random.Random(3)
    reasons: Counter[str] = Counter()
    for _ in range(3_000):
        device, text = rng.choice(CLEAN)
        raw = RawRecord(device.encode() if rng.random() < 0.7 else b"ghost", mutate(rng, text))
        sample = decode_sample(raw, START)
        if isinstance(sample, DeadLetter):
            reasons[sample.reason] += 1
            continue
        _, dead = normalizer.normalize(sample, raw, START + 3_600_000)
        reasons[dead.reason if dead else "accepted"] += 1
    assert {"malformed_json", "schema", "impossible_value", "unknown_asset", "key_mismatch",
            "accepted"} <= set(reasons), reasons


KNOWN_REASONS = {"empty", "malformed_json", "schema", "unknown_asset", "unknown_device_type",
                 "mixed_units", "key_mismatch", "impossible_value", "clock_skew", "late"}


@settings(max_examples=400, deadline=None)
@given(index=st.integers(0, len(CLEAN) - 1), rng=st.randoms(use_true_random=False),
       foreign_key=st.booleans())
def test_one_mutated_record_in_a_site_step(index: int, rng: random.Random,
                                           foreign_key: bool) -> None:
    """The site step alone (no Bytewax), one mutated record after its original: it never
    raises, and everything it outputs encodes to the JSON of its schema and back."""
    from pydantic import BaseModel

    from flows.site_state import SiteState
    from flows.telemetry import Normalizer, RawRecord
    from flows.telemetry_flow import SiteRuntime

    device, text = CLEAN[index]
    site = FLEET.assets[device].site_id
    runtime = SiteRuntime(site, Normalizer(CONFIG, FLEET),
                          SiteState(FLEET, site, CONFIG, None, FAST))
    now = START + 3 * 60_000
    runtime.on_record("telemetry", RawRecord(device.encode(), text.encode()), now, now)
    key = b"ghost" if foreign_key else device.encode()
    out = runtime.on_record("telemetry", RawRecord(key, mutate(rng, text), "raw", 0, 1),
                            now, now)
    for item in out:
        if isinstance(item, BaseModel):
            raw = item.model_dump_json().encode("utf-8")  # strict: no lone surrogates
            assert type(item).model_validate_json(raw) == item
        if isinstance(item, DeadLetter):
            assert item.reason in KNOWN_REASONS and item.detail and item.offset == 1


def test_dead_letter_tallies_are_written_without_further_records() -> None:
    """A device that sends garbage and then nothing: its tally's newest count still reaches
    the hot state within about a second (a timer of the step, not the next record)."""
    import time as wall
    from datetime import timedelta

    from bytewax.connectors.kafka import KafkaSourceMessage
    from bytewax.inputs import SimplePollingSource
    from bytewax.testing import TestingSink

    from contracts.events import DeadLetterTally

    hot: list[Any] = []
    seen_before_end: list[int] = []

    class Garbage(SimplePollingSource[RawMessage]):
        def __init__(self) -> None:
            super().__init__(timedelta(milliseconds=50))
            self.sent = 0
            self.started = wall.monotonic()

        def next_item(self) -> RawMessage:
            counts = [t.count for t in hot if isinstance(t, DeadLetterTally)]
            if self.sent < 2:
                self.sent += 1
                return KafkaSourceMessage(b"rogue", b"{broken", topic="raw", partition=0,
                                          offset=self.sent)
            if 2 in counts or wall.monotonic() - self.started > 10:
                seen_before_end.extend(counts)
                raise StopIteration
            raise SimplePollingSource.Retry(timedelta(milliseconds=50))

    out: list[Any] = []
    run_main(build_flow(Settings(), FLEET, CONFIG, {}, source=Garbage(),
                        kafka_sink=TestingSink(out), hot_sink=TestingSink(hot),
                        history_sink=TestingSink([]), now_ms=lambda: int(wall.time() * 1000),
                        snapshots=False))
    assert seen_before_end == [1, 2]


def test_connector_dead_letters_are_tallied_with_their_site() -> None:
    """The live flow also reads `bess.dlq` for the connectors' dead letters (a value a device
    cannot have, an undecodable answer): counted under the device's site, never refused
    again; the flows' own letters and anything unreadable there are left alone."""
    from bytewax.connectors.kafka import KafkaSourceMessage

    from contracts.events import DeadLetterTally, dead_letter
    from flows.site_state import SiteState
    from flows.telemetry import Normalizer, RawRecord
    from flows.telemetry_flow import SiteRuntime, routing

    device = CLEAN[0][0]
    site = FLEET.assets[device].site_id
    letter = dead_letter(source="connectors.modbus", reason="impossible_value",
                         detail="soc_pct=412.0 outside [0, 100]", ts_ms=START, key=device,
                         payload="")
    own = letter.model_copy(update={"source": "flows.telemetry"})
    route = routing(FLEET)
    for value, where in ((letter, site), (own, "?")):
        msg: RawMessage = KafkaSourceMessage(b"k", value.model_dump_json().encode(), topic="dlq")
        assert route(("dead_letter", msg)) == where
    assert route(("dead_letter", KafkaSourceMessage(b"k", b"{broken", topic="dlq"))) == "?"
    runtime = SiteRuntime(site, Normalizer(CONFIG, FLEET),
                          SiteState(FLEET, site, CONFIG, None, FAST))
    out = runtime.on_record("dead_letter", RawRecord(b"k", letter.model_dump_json().encode()),
                            START, START)
    assert [(t.device, t.reason, t.count) for t in out if isinstance(t, DeadLetterTally)] == [
        (device, "impossible_value", 1)]
    assert len(out) == 1  # the letter itself is not written again
    assert runtime.on_record("dead_letter", RawRecord(b"k", own.model_dump_json().encode()),
                             START, START) == []
