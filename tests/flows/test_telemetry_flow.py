"""The telemetry flow wired in Bytewax: TestingSource/TestingSink on 1 and 2 workers (the
same final outputs), and against the real broker and Redis."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import pytest
import redis
from bytewax.connectors.kafka import KafkaSinkMessage, KafkaSourceMessage
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main
from confluent_kafka import TIMESTAMP_CREATE_TIME

from connectors.history import open_history
from connectors.history.rows import StatusIntervalRow
from connectors.kafka import CheckedProducer, read_topic
from connectors.live_log import live_channel, log_key, split
from connectors.redis_store import latest_key, site_key
from connectors.settings import EXAMPLE_MONITORING, Settings
from contracts.events import DeadLetter, SiteAvailability, StatusChange
from contracts.intervals import ExclusionWindow
from contracts.monitoring import load_monitoring
from flows.outputs import LatestValues
from flows.site_state import SiteSettings, SiteState
from flows.telemetry import Normalizer, RawRecord
from flows.telemetry_flow import RawMessage, SiteRuntime, build_flow
from infra.ports import free_port
from tests.contracts.builders import contract
from tests.flows.timelines import FLEET, T0, sample

CONFIG = load_monitoring(EXAMPLE_MONITORING)
CONTRACTS = {"s1": contract(site="s1", start="2026-09-01")}
FAST = SiteSettings(allowed_lateness_ms=2_000, stale_after_ms=5_000, finalize_every_ms=1_000,
                    publish_every_ms=1_000, kpi_every_ms=5_000, values_every_ms=5_000)


def records() -> list[tuple[bytes, bytes]]:
    out = []
    for t in range(20):
        out.append((b"u1", sample("u1", t, code=3 if 5 <= t < 8 else 0).model_dump_json()
                    .encode()))
        out.append((b"u2", sample("u2", t).model_dump_json().encode()))
        out.append((b"v1", sample("v1", t).model_dump_json().encode()))
    out.insert(3, (b"u1", b"{not json"))
    out.insert(5, (b"zz", b'{"v": 1, "device_id": "x", "ts_ms": 5, "assets": []}'))
    out.insert(7, (b"zz", sample("u1", 0).model_dump_json().replace('"u1', '"ghost')
                   .encode()))
    return out


def run(workers: int) -> tuple[list[KafkaSinkMessage[bytes, bytes]], list[Any]]:
    source: TestingSource[RawMessage] = TestingSource(
        [KafkaSourceMessage(k, v, topic="raw", partition=0, offset=i)
         for i, (k, v) in enumerate(records())])
    kafka_out: list[KafkaSinkMessage[bytes, bytes]] = []
    hot_out: list[Any] = []
    history_out: list[Any] = []
    flow = build_flow(Settings(), FLEET, CONFIG, CONTRACTS, source=source,
                      kafka_sink=TestingSink(kafka_out), hot_sink=TestingSink(hot_out),
                      history_sink=TestingSink(history_out), now_ms=lambda: T0 + 20_000,
                      site_settings=FAST)
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [f"127.0.0.1:{free_port()}"], 0, worker_count_per_proc=workers)
    return kafka_out, hot_out


def by_topic(out: list[KafkaSinkMessage[bytes, bytes]], topic: str) -> list[dict[str, Any]]:
    return [json.loads(m.value) for m in out if m.topic == topic]


def test_flow_outputs_statuses_snapshots_values_and_dead_letters() -> None:
    s = Settings()
    kafka_out, hot_out = run(1)
    dlq = [DeadLetter.model_validate(d) for d in by_topic(kafka_out, s.topic_dlq)]
    assert sorted(d.reason for d in dlq) == ["malformed_json", "schema", "unknown_asset"]
    status = [StatusChange.model_validate(d) for d in by_topic(kafka_out, s.topic_status)]
    assert [(c.ts_ms - T0, c.state) for c in status if c.asset_id == "u1"] == [
        (0, "available"), (5000, "unavailable"), (8000, "available")]
    snapshots = [x for x in hot_out if isinstance(x, SiteAvailability)]
    assert [SiteAvailability.model_validate(a) for a in by_topic(kafka_out,
                                                                   s.topic_availability)] \
        == snapshots
    final = {x.site_id: x for x in snapshots}
    s1 = final["s1"]
    assert s1.ts_ms == T0 + 19_000
    # u1 lost [5 s, 8 s) of 19 s observed live.
    assert next(u for u in s1.units if u.id == "u1").last_hour_pct == pytest.approx(
        100 * (1 - 3 / 19))
    assert s1.contract is not None and s1.contract.contract_id == "LTSA-T" \
        and s1.contract.kind == "ltsa"
    # Published at u1's last poll, before u2's: 39 polls; the malformed record keyed u1.
    assert s1.counts == {"polls": 39, "late": 0, "duplicate": 0, "refused": 1,
                         "dlq.malformed_json": 1}
    assert final["s2"].contract is not None and final["s2"].contract.kind == "technical" \
        and final["s2"].contract.contract_id == \
        "technical-s2"
    assert {v.unit_id for v in hot_out if isinstance(v, LatestValues)} == {"u1", "u2", "v1"}


def test_one_and_two_workers_give_the_same_final_outputs() -> None:
    def final(result: tuple[list[KafkaSinkMessage[bytes, bytes]], list[Any]]) -> Any:
        kafka_out, hot_out = result
        statuses = sorted(m.value for m in kafka_out if m.topic == Settings().topic_status)
        dead = sorted(m.value for m in kafka_out if m.topic == Settings().topic_dlq)
        last = {x.site_id: x.model_dump_json() for x in hot_out
                if isinstance(x, SiteAvailability)}
        return statuses, dead, last

    assert final(run(1)) == final(run(2))


@pytest.mark.timeout(120)
def test_flow_against_the_real_broker_and_redis(settings: Settings, redis_url: str) -> None:
    producer = CheckedProducer(settings.require_kafka())
    for key, value in records():
        producer.produce(settings.topic_telemetry, key.decode(), value)
    producer.flush()
    client = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub()
    pubsub.subscribe(live_channel("site:s1"))
    pubsub.get_message(timeout=1)
    # The production wiring, stopping at the end of the topic instead of tailing it.
    run_main(build_flow(settings, FLEET, CONFIG, CONTRACTS, tail=False, now_ms=None,
                        site_settings=FAST))
    dlq = read_topic(settings.require_kafka(), settings.topic_dlq, count=3, timeout_s=30)
    assert sorted(json.loads(m.value() or b"")["reason"] for m in dlq) == [
        "malformed_json", "schema", "unknown_asset"]
    status = read_topic(settings.require_kafka(), settings.topic_status, idle_s=2)
    u1 = [json.loads(m.value() or b"") for m in status if m.key() == b"u1"]
    assert [(s["ts_ms"] - T0, s["state"]) for s in u1] == [
        (0, "available"), (5000, "unavailable"), (8000, "available")]
    snapshot = SiteAvailability.model_validate_json(client.get(site_key("s1")) or b"")
    assert snapshot.ts_ms == T0 + 19_000
    latest = json.loads(client.get(latest_key("u1")) or b"{}")
    assert latest["assets"]["u1"]["status_code"] == 0
    published = []
    while (msg := pubsub.get_message(timeout=0.5)) is not None:
        if msg["type"] == "message":
            published.append(split(msg["data"]))
    assert published and SiteAvailability.model_validate_json(published[-1][1]) == snapshot
    # Each publish numbered, in order, and kept in the channel's log for resuming clients.
    seqs = [seq for seq, _ in published]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert client.xlen(log_key("site:s1")) >= len(published)
    pubsub.close()
    client.close()


def test_a_ticket_on_a_unit_is_linked_to_its_unavailability_episode() -> None:
    from contracts.events import TicketEvent, UnavailabilityEpisode

    ticket = TicketEvent(provider="jira", ticket_id="OPS-7", asset_id="u1", status="open",
                         opened_ms=T0 + 6_000, updated_ms=T0 + 6_000,
                         summary="u1 tripped on overcurrent", url="https://jira/OPS-7")
    bad = b'{"provider": "jira"}'
    tickets: TestingSource[RawMessage] = TestingSource(
        [KafkaSourceMessage(b"jira:OPS-7", ticket.model_dump_json().encode(), topic="tickets"),
         KafkaSourceMessage(b"jira:?", bad, topic="tickets")])
    source: TestingSource[RawMessage] = TestingSource(
        [KafkaSourceMessage(k, v, topic="raw", partition=0, offset=i)
         for i, (k, v) in enumerate(records())])
    kafka_out: list[KafkaSinkMessage[bytes, bytes]] = []
    hot_out: list[Any] = []
    history_out: list[Any] = []
    run_main(build_flow(Settings(), FLEET, CONFIG, CONTRACTS, source=source,
                        ticket_source=tickets, kafka_sink=TestingSink(kafka_out),
                        hot_sink=TestingSink(hot_out), history_sink=TestingSink(history_out),
                        now_ms=lambda: T0 + 20_000, site_settings=FAST))
    episodes = [e for e in history_out if isinstance(e, UnavailabilityEpisode)
                and e.asset_id == "u1"]
    assert episodes, "u1's fault (5 s to 8 s) made no episode"
    final = episodes[-1]
    assert (final.start_ms - T0, final.end_ms and final.end_ms - T0) == (5000, 8000)
    assert [t.ticket_id for t in final.tickets] == ["OPS-7"]
    dlq = by_topic(kafka_out, Settings().topic_dlq)
    assert any(d["source"] == "flows.tickets" and d["payload"] == bad.decode() for d in dlq)


def test_device_clocks_are_judged_by_when_records_were_produced() -> None:
    """Live, a flow catching up an hour behind (a restart) raises no clock-skew alert for
    records produced on time; a device whose timestamps are 2 minutes behind the time its
    record was produced does get one (max_clock_skew_s is 60)."""
    def run_with(skew_ms: int) -> list[dict[str, Any]]:
        messages: list[RawMessage] = [KafkaSourceMessage(
            b"u2", sample("u2", t).model_dump_json().encode(), topic="raw", partition=0,
            offset=t, timestamp=(TIMESTAMP_CREATE_TIME, T0 + t * 1000 + skew_ms))
            for t in range(20)]
        kafka_out: list[KafkaSinkMessage[bytes, bytes]] = []
        run_main(build_flow(Settings(), FLEET, CONFIG, CONTRACTS,
                            source=TestingSource(messages), kafka_sink=TestingSink(kafka_out),
                            hot_sink=TestingSink([]), history_sink=TestingSink([]),
                            now_ms=lambda: T0 + 3_600_000, site_settings=FAST))
        return [a for a in by_topic(kafka_out, Settings().topic_alerts)
                if a["kind"] == "clock_skew"]

    assert run_with(300) == []
    (skewed,) = run_with(120_000)
    assert (skewed["scope_id"], skewed["state"]) == ("u2", "raised")
    assert skewed["details"]["skew_s"] == 120.0


def test_a_site_gone_silent_is_a_comms_loss_alarm_from_the_steps_timer() -> None:
    """Every device of a site quiet: no poll is left to notice it, so the step's timer does
    (live only): once per quiet spell, a little after the devices would be stale, each unit
    that was heard of becomes a comms-loss alarm at the event time the site would be at;
    the next poll clears its unit's."""
    from contracts.events import BreachEvent
    from flows.site_state import SiteState
    from flows.telemetry import Normalizer, RawRecord
    from flows.telemetry_flow import SiteRuntime

    runtime = SiteRuntime("s1", Normalizer(CONFIG, FLEET),
                          SiteState(FLEET, "s1", CONFIG, CONTRACTS["s1"], FAST))
    wall = T0 + 300  # each record arrives 0.3 s after its sample
    for t in range(5):
        for unit in ("u1", "u2"):
            runtime.on_record("telemetry", RawRecord(
                unit.encode(), sample(unit, t).model_dump_json().encode()), wall + t * 1000)
    last = wall + 4 * 1000
    assert runtime.silence_due_ms() == last + FAST.stale_after_ms + 1_000
    assert runtime.on_silence(last + 3_000) == []  # not stale yet, and looked at once
    assert runtime.silence_due_ms() is None
    runtime.silence_checked = False
    alarms = runtime.on_silence(last + 6_000)
    assert [(a.asset_id, a.rule_id, a.state, a.ts_ms - T0) for a in alarms
            if isinstance(a, BreachEvent)] == [("u1", "status.unknown", "raised", 10_000),
                                               ("u2", "status.unknown", "raised", 10_000)]
    assert runtime.silence_due_ms() is None  # one look per quiet spell
    back = runtime.on_record("telemetry", RawRecord(
        b"u1", sample("u1", 11).model_dump_json().encode()), last + 7_000)
    assert [(a.asset_id, a.state) for a in back if isinstance(a, BreachEvent)
            and a.kind == "status"] == [("u1", "cleared")]
    # (its data-quality side, a telemetry gap, is an alarm of its own: alert.telemetry_gap)
    assert runtime.silence_due_ms() == last + 7_000 + FAST.stale_after_ms + 1_000


@pytest.mark.timeout(120)
def test_a_live_flow_started_afresh_resumes_over_the_history(settings: Settings) -> None:
    """The production wiring with `resume` (what `bessmon flows` runs): an earlier run left
    u1 unavailable since a day before this run's first poll and never closed that status.
    Each site reads its history once before its first poll: the open row is closed where
    this run takes over (its first poll less the allowed lateness), so u1 has one status at
    a time, and the contract is accounted from the earlier run's status on. A site with
    nothing in the history (s2) starts as without `resume`."""
    earlier = StatusIntervalRow("u1", "s1", T0 - 86_400_000, None, "unavailable", None, "fault")
    store = open_history(settings)
    store.write_status([earlier])
    store.close()
    producer = CheckedProducer(settings.require_kafka())
    for key, value in records():
        producer.produce(settings.topic_telemetry, key.decode(), value)
    producer.flush()
    run_main(build_flow(settings, FLEET, CONFIG, CONTRACTS, tail=False, now_ms=None,
                        site_settings=FAST, resume=True))
    store = open_history(settings)
    u1 = store.status_intervals(["u1"], T0 - 2 * 86_400_000, T0 + 60_000)
    v1 = store.status_intervals(["v1"], T0 - 2 * 86_400_000, T0 + 60_000)
    store.close()
    resumed = T0 - FAST.allowed_lateness_ms
    assert [(r.start_ms - T0, None if r.end_ms is None else r.end_ms - T0, r.state)
            for r in u1] == [(-86_400_000, resumed - T0, "unavailable"),
                             (0, 5_000, "available"), (5_000, 8_000, "unavailable"),
                             (8_000, None, "available")]
    assert v1[0].start_ms == T0
    status = read_topic(settings.require_kafka(), settings.topic_availability, idle_s=2)
    kpis = [SiteAvailability.model_validate_json(m.value() or b"").contract for m in status
            if m.key() == b"s1" and b'"kind":"snapshot"' in (m.value() or b"")]
    # The day u1 was down before this run is in the month so far: well under 100 %.
    month = [k for k in kpis if k is not None][-1]
    assert month.actual_pct is not None and month.actual_pct < 60.0


def test_a_live_site_reads_its_approved_windows_again_and_accounts_with_new_ones() -> None:
    """Live, a site reads its contract's approved windows every WINDOWS_EVERY_MS of the
    receiving clock (here from a list standing in for the API's store, and a history that
    holds nothing yet); a new one makes the accounting start again with it, an unchanged
    set does nothing, and a store that cannot be read is tried again later."""
    approved: list[ExclusionWindow] = []
    reads: list[tuple[list[str], int, int]] = []
    broken = False

    def windows() -> list[ExclusionWindow]:
        if broken:
            raise sqlite3.OperationalError("database is locked")
        return list(approved)

    def history(assets: list[str], start_ms: int, end_ms: int) -> list[StatusIntervalRow]:
        reads.append((assets, start_ms, end_ms))
        return []

    state = SiteState(FLEET, "s1", CONFIG, CONTRACTS["s1"], FAST)
    runtime = SiteRuntime("s1", Normalizer(CONFIG, FLEET), state, history, windows)
    wall = T0 + 5_000

    def poll(t: int) -> None:
        s = sample("u1", t)
        runtime.on_record("telemetry", RawRecord(b"u1", s.model_dump_json().encode()),
                          wall + t * 1000)

    poll(0)
    first = state.accumulator
    assert first is not None and state.windows == () and len(reads) == 1  # resumed: nothing
    window = ExclusionWindow("s1", T0 + 2_000_000, T0 + 9_000_000, "grid_outage")
    approved.append(window)
    poll(10)  # not due yet
    assert state.windows == () and state.accumulator is first
    poll(40)
    assert state.windows == (window,) and state.accumulator is not first
    again = state.accumulator
    poll(80)  # read again: unchanged
    assert state.accumulator is again
    broken, approved[:] = True, []
    poll(120)  # unreadable: kept as it is
    assert state.windows == (window,) and state.accumulator is again
    broken = False
    poll(160)
    assert state.windows == () and state.accumulator is not again
