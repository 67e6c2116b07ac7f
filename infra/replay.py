"""`bessmon replay`: recorded telemetry through the real broker and the telemetry flow, in
event time — for backfills, tests and demos.

At `--speed max` the recording goes into topics of its own (one partition: the file's time
order is the topics' order), the flow runs over them to their end and makes everything final
up to the end of the last measurement period, and the command prints each site's final
periods (availability rules §7) and, with `--status-out`, writes the status intervals it derived
(availability rules §1 CSV) — `bessmon contracts evaluate` on that file gives the same numbers. Its
results go to the history store (a backfill recomputes past months there) and its own topics, never
to the hot state in Redis, which stays the live stack's. At `--speed N` the
recording goes into the running stack's telemetry topic, N times faster than it happened."""

from __future__ import annotations

import csv
import json
import logging
import sqlite3
import time
import uuid
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Literal

from bytewax.testing import run_main

from connectors.kafka import CheckedProducer, ensure_topics, read_topic
from connectors.settings import Settings
from contracts.contract import Contract, fleet_contracts, load_contracts
from contracts.events import PeriodAvailability, StatusChange
from contracts.fleet import Fleet
from contracts.intervals import ExclusionWindow
from contracts.monitoring import MonitoringConfig
from contracts.periods import from_us
from flows.site_state import DAY_MS, HOUR_MS, SiteSettings
from flows.telemetry_flow import build_flow, fewer_collections, window_reader
from infra.services import local_services
from infra.sim.record import device_of, read_jsonl

log = logging.getLogger(__name__)
NEVER_MS = 2**62  # a period no event time reaches


def produce(settings: Settings, topic: str, recording: Path, speed: float | None,
            progress: Callable[[int], None] = lambda n: None) -> int:
    """Send every line of the recording to `topic`, keyed by device; paced by the samples'
    own timestamps when `speed` is a number."""
    producer = CheckedProducer(settings.require_kafka())
    first_ts: int | None = None
    wall0 = time.monotonic()
    n = 0
    for _, line in read_jsonl(recording):
        if speed is not None:
            ts = int(json.loads(line)["ts_ms"])
            first_ts = ts if first_ts is None else first_ts
            due = wall0 + (ts - first_ts) / 1000 / speed
            delay = due - time.monotonic()
            if delay > 0:
                producer.flush()
                time.sleep(delay)
        producer.produce(topic, device_of(line), line.encode())
        n += 1
        if n % 10_000 == 0:
            progress(n)
    producer.flush()
    progress(n)
    return n


# Records the replay's source hands on at once (live: 1,000). At 1-minute polls 10,000 polls
# of a 6-unit site are more than a day, so few of the history's hours are cut by a batch and
# merged with their other part (+7 % over 30 days at 1,000).
REPLAY_BATCH = 10_000


def replay(settings: Settings, fleet: Fleet, config: MonitoringConfig,
           contracts: dict[str, Contract], recording: Path, *,
           status_out: Path | None = None, telemetry_history: bool = True,
           finish_at: Literal["period", "input"] = "period",
           say: Callable[[str], None] = print) -> list[PeriodAvailability]:
    """Replay at maximum speed through its own topics; returns the final periods.
    `telemetry_history=False` leaves the per-minute tag values out of the history;
    `finish_at="input"` makes time final only up to the newest sample, not to the end of its
    measurement period (a past that a live flow takes over from: infra/seed.py)."""
    with ExitStack() as stack:
        if not (settings.kafka_bootstrap_servers and settings.redis_url):
            kafka, redis_url = stack.enter_context(local_services(
                settings.run_dir / "logs", kafka=settings.kafka_bootstrap_servers,
                redis_url=settings.redis_url))
            settings = settings.model_copy(update={"kafka_bootstrap_servers": kafka,
                                                   "redis_url": redis_url})
        run = f"replay-{uuid.uuid4().hex[:8]}"
        settings = settings.model_copy(update={
            "topic_telemetry": f"{run}.telemetry.raw", "topic_tickets": f"{run}.tickets.raw",
            "topic_status": f"{run}.status", "topic_availability": f"{run}.availability",
            "topic_dlq": f"{run}.dlq", "topic_breaches": f"{run}.breaches",
            "topic_alerts": f"{run}.alerts", "topic_partitions": 1})
        topics = [settings.topic_telemetry, settings.topic_tickets, settings.topic_status,
                  settings.topic_availability, settings.topic_dlq, settings.topic_breaches,
                  settings.topic_alerts]
        ensure_topics(settings.require_kafka(), topics, partitions=1)
        for warning in step_warnings(recording, config):
            say(warning)
        started = time.monotonic()
        n = produce(settings, settings.topic_telemetry, recording, None,
                    lambda k: say(f"  sent {k:,} samples"))
        say(f"replaying {n:,} samples through {settings.topic_telemetry} …")
        # The hot state is left alone: a backfill of past months must not replace what the
        # live stack shows now (its results go to the history and the replay's topics).
        # No recovery (a replay interrupted is run again), hence no state snapshots.
        flow = build_flow(settings, fleet, config, contracts, tail=False, now_ms=None,
                          site_settings=replace(replay_settings(config),
                                                telemetry_minutes=telemetry_history,
                                                finish_at=finish_at),
                          finish_at_eof=True, hot=False, snapshots=False,
                          batch_size=REPLAY_BATCH,
                          windows=approved_site_windows(settings, contracts))
        with fewer_collections():
            run_main(flow)
        say(f"done in {time.monotonic() - started:.1f} s")
        # The flow's sinks flushed every batch to the broker before it returned: each topic is
        # read to its end as it stands, not until a second of silence.
        periods = [PeriodAvailability.model_validate_json(m.value() or b"")
                   for m in read_topic(settings.require_kafka(), settings.topic_availability,
                                       to_end=True, timeout_s=120)
                   if b'"kind":"period"' in (m.value() or b"")]
        dead = read_topic(settings.require_kafka(), settings.topic_dlq, to_end=True, timeout_s=30)
        if dead:
            say(f"{len(dead):,} records refused (see {settings.topic_dlq})")
        if status_out is not None:
            replayed_to = max((p.end_ms for p in periods), default=None)
            changes = [StatusChange.model_validate_json(m.value() or b"")
                       for m in read_topic(settings.require_kafka(), settings.topic_status,
                                           to_end=True, timeout_s=120)]
            write_status_csv(changes, fleet, status_out, replayed_to)
            say(f"status intervals written to {status_out}")
        return periods


def poll_step_ms(recording: Path, lines: int = 2_000) -> int | None:
    """The usual time between two polls of one device (the median over the recording's first
    `lines` lines), or None when they hold no two polls of a device."""
    newest: dict[str, int] = {}
    gaps: list[int] = []
    for number, (_, line) in enumerate(read_jsonl(recording)):
        if number >= lines:
            break
        try:
            record = json.loads(line)
            device, ts = str(record["device_id"]), int(record["ts_ms"])
        except (ValueError, KeyError, TypeError):
            continue  # the flow refuses it with its reason
        if device in newest and ts > newest[device]:
            gaps.append(ts - newest[device])
        newest[device] = ts
    return sorted(gaps)[len(gaps) // 2] if gaps else None


def step_warnings(recording: Path, config: MonitoringConfig) -> list[str]:
    """What to say when the recording's devices are polled less often than the monitoring
    config expects: silence past `stale_after_s` is communication loss, and past
    `gap_factor` poll intervals a telemetry gap (a recording of 1-minute polls replayed
    with a live config's 10 s and 1 s would be comms-lost five sixths of the time, with a
    gap alert at every poll)."""
    step_ms = poll_step_ms(recording)
    if step_ms is None:
        return []
    step_s = step_ms / 1000
    q = config.quality
    out = []
    if step_ms > q.stale_after_s * 1000:
        out.append(f"warning: {recording} polls each device every {step_s:g} s but "
                   f"quality.stale_after_s is {q.stale_after_s:g}: every unit counts as "
                   f"communication lost between its polls (use at least {step_s:g})")
    for name, device_type in sorted(config.device_types.items()):
        if step_ms > q.gap_factor * device_type.poll_interval_s * 1000:
            out.append(f"warning: {recording} polls each device every {step_s:g} s but "
                       f"device type {name} expects a poll every "
                       f"{device_type.poll_interval_s:g} s: every poll is a telemetry gap "
                       f"(set its poll_interval_s to {step_s:g})")
    return out


def for_poll_step(config: MonitoringConfig, step_s: float) -> MonitoringConfig:
    """The monitoring config as for devices polled every `step_s`: each device type's poll
    interval is the step, and silence counts as communication loss after three steps (or
    the config's own `stale_after_s`, when longer)."""
    return config.model_copy(update={
        "quality": config.quality.model_copy(update={
            "stale_after_s": max(config.quality.stale_after_s, 3 * step_s)}),
        "device_types": {name: t.model_copy(update={"poll_interval_s": step_s})
                         for name, t in config.device_types.items()}})


def replay_settings(config: MonitoringConfig) -> SiteSettings:
    """A replay's site settings: contract time booked from the start of the first poll's
    contract year (the batch numbers), and the live-only work left out or made hourly — the
    hot state's newest values and repair list (a replay leaves the hot state alone), the
    site snapshots on the replay's availability topic (an hour of event time apart instead of
    a second) and the contract KPIs with their LD-risk warnings (a day apart instead of 10 s:
    each walks the contract year so far; at 1-minute polls they were a third of a replay's
    time, and hourly still a third of a contract year's). Time is made final an hour at a
    time rather than every 5 s (the same intervals, in fewer and larger steps; an open
    episode's lost hours are told hourly). What becomes final — statuses, days, periods,
    episodes, breaches, quality alerts, the history — is the live flow's."""
    return replace(SiteSettings.of(config, account_from_contract_year=True),
                   finalize_every_ms=HOUR_MS, publish_every_ms=HOUR_MS,
                   kpi_every_ms=DAY_MS, values_every_ms=NEVER_MS, repair_list=False)


def write_status_csv(changes: list[StatusChange], fleet: Fleet, path: Path,
                     open_until_ms: int | None) -> None:
    """The final status intervals of this replay (its own status topic's changes: nothing of
    earlier replays or of a live stack sharing the history), as availability rules §1's CSV: each
    change lasts until the asset's next one; the last ends where the replay made time final
    (`open_until_ms`; left out when None)."""
    by_asset: dict[str, list[StatusChange]] = {}
    for change in changes:
        by_asset.setdefault(change.asset_id, []).append(change)
    tz_of = {a.id: fleet.site(a.site_id).tz for a in fleet.assets.values()}
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["asset_id", "start", "end", "state", "derate_fraction", "cause"])
        for asset_id in sorted(by_asset):
            mine = sorted(by_asset[asset_id], key=lambda c: c.ts_ms)
            ends = [c.ts_ms for c in mine[1:]] + [open_until_ms]
            tz = tz_of[asset_id]
            for c, end_ms in zip(mine, ends, strict=True):
                if end_ms is None or end_ms <= c.ts_ms:
                    continue
                writer.writerow([
                    asset_id, from_us(c.ts_ms * 1000, tz).isoformat(),
                    from_us(end_ms * 1000, tz).isoformat(), c.state,
                    "" if c.derate_fraction is None else repr(c.derate_fraction),
                    c.cause or ""])


def approved_site_windows(settings: Settings, contracts: Mapping[str, Contract]
                          ) -> dict[str, list[ExclusionWindow]]:
    """Each contract's approved exclusion windows (docs/exclusions.md) by its site id, from
    the API's store (none when there is no store yet)."""
    try:
        return {site_id: window_reader(settings, contract.id)()
                for site_id, contract in contracts.items()}
    except sqlite3.Error as exc:
        log.warning("approved exclusion windows not read from %s (%s): none counted",
                    settings.api_db_path, exc)
        return {}


def load_site_contracts(settings: Settings, fleet: Fleet) -> dict[str, Contract]:
    """The contracts of the fleet's sites; one for another site is ignored, with a warning."""
    every = load_contracts(settings.contracts_dir)
    contracts = fleet_contracts(every, fleet)
    for site_id in sorted(set(every) - set(contracts)):
        log.warning("contract %s is for site %s, which is not in the fleet: ignored",
                    every[site_id].id, site_id)
    return contracts
