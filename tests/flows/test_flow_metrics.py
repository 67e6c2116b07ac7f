"""The flows' figures (connectors/metrics.py) against what was fed: the real flow with the
real sinks (tests/flows/harness.py) on a short recording with malformed records mixed in
counts every record read, each dead letter by its source and reason — as many as reach the
dead-letter topic with that reason — and times its writes to the history store."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo

from prometheus_client import REGISTRY

from connectors.settings import EXAMPLE_MONITORING
from contracts.fleet import Fleet
from contracts.monitoring import load_monitoring
from flows.site_state import SiteSettings
from infra.sim.fleetgen import generate_fleet
from infra.sim.record import record
from tests.flows.harness import run_flow as run_any_flow

TZ = ZoneInfo("Europe/Stockholm")
CONFIG = load_monitoring(EXAMPLE_MONITORING)
FLEET = Fleet.model_validate(generate_fleet(2, units_per_site=2))
START = int(dt.datetime(2026, 10, 12, 8, tzinfo=TZ).timestamp() * 1000)
FAST = SiteSettings(allowed_lateness_ms=2_000, stale_after_ms=5_000, finalize_every_ms=1_000)
run_flow = partial(run_any_flow, fleet=FLEET, config=CONFIG, site_settings=FAST,
                   prefix="metrics")


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_records_in_and_dead_letters_by_reason_match_what_was_fed(
        kafka_bootstrap: str, redis_url: str, tmp_path: Path) -> None:
    samples = list(record(FLEET, START, START + 60_000, 1_000, seed=3))
    device = samples[0].device_id.encode()
    records: list[tuple[bytes | None, bytes]] = [
        (s.device_id.encode(), s.model_dump_json().encode()) for s in samples]
    # Malformed JSON (7), a valid JSON that is no sample (3), and one naming no known device
    # (2): each a dead letter of its own reason.
    records[10:10] = [(device, b'{"device_id": "x", "ts_ms": ')] * 7
    records[40:40] = [(device, json.dumps({"hello": "world"}).encode())] * 3
    ghost = samples[5].model_copy(update={"device_id": "ghost-u01"})
    records += [(b"ghost-u01", ghost.model_dump_json().encode())] * 2
    names = ("bessmon_flow_records_in_total", "bessmon_flow_dead_letters_total",
             "bessmon_flow_outputs_total", "bessmon_history_write_duration_seconds_count",
             "bessmon_flow_sink_write_duration_seconds_count")
    before = {(s.name, tuple(sorted(s.labels.items()))): s.value for m in REGISTRY.collect()
              for s in m.samples if s.name in names}

    run = run_flow(kafka_bootstrap, redis_url, 7, tmp_path, records)

    def delta(name: str, **labels: str) -> float:
        return value(name, **labels) - before.get((name, tuple(sorted(labels.items()))), 0.0)

    assert delta("bessmon_flow_records_in_total", input="telemetry") == len(records)
    on_topic = Counter((m["source"], m["reason"]) for m in run.topics["dlq"])
    assert on_topic[("flows.telemetry", "malformed_json")] == 7, on_topic
    assert on_topic[("flows.telemetry", "schema")] == 3, on_topic
    assert sum(on_topic.values()) == 12, on_topic
    for (source, reason), n in on_topic.items():
        assert delta("bessmon_flow_dead_letters_total", source=source, reason=reason) == n, \
            (source, reason)
    assert delta("bessmon_flow_outputs_total", kind="DeadLetter") == 12
    statuses = len(run.topics["status"])
    assert statuses > 0 and delta("bessmon_flow_outputs_total", kind="StatusChange") == statuses
    # Every history write timed, per table; the sinks' batches too.
    assert delta("bessmon_history_write_duration_seconds_count", table="status") >= 1
    for sink in ("history", "redis", "kafka"):
        assert delta("bessmon_flow_sink_write_duration_seconds_count", sink=sink) >= 1, sink
