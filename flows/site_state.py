"""Everything the flows know about one site, fed poll by poll — the logic of the telemetry
flow, free of Bytewax (see STYLE.md): statuses per asset in event time, the live view,
final status intervals, the contract's incremental accounting and its KPIs (worked out by
contracts/kpis.py).

Live and final: a poll updates the live view at once (dashboard latency), but an asset's
status only becomes final once the site's watermark — its newest sample time minus the
allowed lateness — has passed, so that samples arriving out of order within the lateness
land in the right place. Final statuses feed `bess.status`, the history and the contract
accumulators, which therefore give the batch numbers (contracts/incremental.py)."""

from __future__ import annotations

import datetime as dt
import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from connectors.history.rows import AvailabilityRow, StatusIntervalRow
from contracts.alarm_sources import StatusAlarms, alert_alarms
from contracts.availability import Timeline
from contracts.contract import Contract
from contracts.engine import ContractContext, unit_weight
from contracts.events import (
    Alert,
    ContractKpis,
    DeadLetter,
    PeriodAvailability,
    SiteAvailability,
    State,
    StatusChange,
    TicketEvent,
    UnitAvailability,
    UnitPeriod,
)
from contracts.fleet import Fleet, Site
from contracts.incremental import ContractAccumulator
from contracts.intervals import ExclusionWindow, StatusInterval
from contracts.kpis import contract_kpis, ld_warning
from contracts.monitoring import AlarmsConfig, MonitoringConfig
from contracts.periods import from_us, local_midnight_us
from contracts.repair import AssetStatus, repair_priorities
from contracts.rules import Rollup, Rules
from contracts.status import COMMS_LOSS, Status, StatusRules, classify
from flows.breaches import BreachEngine
from flows.episodes import EpisodeTracker
from flows.frame import Frame, Shape, picker
from flows.minutes import MinuteTags
from flows.outputs import LatestValues, Output, RepairList, SiteTicket, UnitMinute
from flows.quality import DeviceLimits, DeviceQuality, DlqRate, Flapping
from flows.status_timeline import Change, Piece, UnitTimeline
from flows.telemetry import Poll, Readings

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


def technical_contract(site: Site) -> Contract:
    """For a site without an LTSA: plain technical availability — energy-weighted, derates
    pro rata, gaps lost, nothing excluded — measured per calendar month."""
    start = min(u.commissioned for u in site.units)
    return Contract.model_validate({
        "id": f"technical-{site.id}", "site": site.id, "start": start, "term_years": 60,
        "measurement_period": "month",
        "availability": {"weight": "energy", "derate": "pro_rata",
                         "data_gap_policy": "unavailable", "excluded_causes": [],
                         "maintenance_allowance_hours": 0},
        "guarantee": {"default_pct": 0.0},
        "ld": {"currency": "EUR", "step_pct": 0.01, "rate_per_pct": 0,
               "cap_per_contract_year": 0},
        "early_warning_margin_pct": 0.0})


@dataclass
class UnitLive:
    """What the dashboard shows of a unit: its newest statuses and a loss timeline."""

    statuses: dict[str, Status] = field(default_factory=dict)
    effective: Status = COMMS_LOSS
    ts_ms: int | None = None
    timeline: Timeline = field(default_factory=Timeline)  # the unit, children rolled up
    asset_timelines: dict[str, Timeline] = field(default_factory=dict)  # each asset's own
    # Each asset's own timeline is extended lazily: from here to the newest poll every asset
    # held its status in `statuses` and the unit reported without a stale gap (the usual
    # case, nothing to do per asset), added when that ends or the timelines are read.
    assets_from_ms: int | None = None
    published_values_ms: int | None = None
    minute_ms: int | None = None  # the minute being downsampled
    minute: MinuteTags = field(default_factory=MinuteTags)
    closed: UnitMinute | None = None  # the last minute, not out yet

    def __setstate__(self, state: dict[str, object]) -> None:
        # A recovery snapshot from before unit-minutes held the closed minute as its rows.
        closed = state.get("closed")
        if isinstance(closed, list):
            state["closed"] = None if not closed else UnitMinute(
                closed[0].site_id, closed[0].start_ms,
                tuple((r.asset_id, r.tag) for r in closed),
                np.array([[r.count, r.min, r.max, r.mean, r.last] for r in closed],
                         dtype=np.float64))
        # … and each asset's timeline up to the newest poll.
        state.setdefault("assets_from_ms", state.get("ts_ms"))
        # … and the minute being downsampled as a dictionary of aggregates.
        minute = state.get("minute")
        if isinstance(minute, dict):
            state["minute"] = MinuteTags(minute)
        self.__dict__.update(state)


@dataclass(frozen=True)
class SiteSettings:
    allowed_lateness_ms: int = 30_000
    stale_after_ms: int = 10_000
    finalize_every_ms: int = 5_000  # watermark steps smaller than this wait (batching)
    publish_every_ms: int = 1_000  # live snapshots at most this often (event time) …
    kpi_every_ms: int = 10_000  # … and the contract windows and KPIs at most this often
    values_every_ms: int = 5_000  # newest tag values per unit for the hot state
    idle_after_ms: int = 600_000  # a unit silent this long no longer holds the watermark
    telemetry_minutes: bool = True  # downsample every tag per minute for the history
    # Book contract time from the start of the first poll's contract year (replays and
    # backfills: gives the batch numbers) rather than from the first poll (a live start,
    # where the flow has no history before it).
    account_from_contract_year: bool = False
    # The open episodes ranked by LD at stake (contracts/repair.py), for the hot state only:
    # a replay, which leaves the hot state alone, skips it (a third of its time at 1-minute
    # polls, where every poll is a KPI refresh).
    repair_list: bool = True
    # Where the input's end (replays) makes time final: the end of the newest sample's
    # measurement period, or just past the newest sample (a seeded past the live flow
    # takes over from: its last statuses stay open).
    finish_at: Literal["period", "input"] = "period"

    @classmethod
    def of(cls, config: MonitoringConfig, *, account_from_contract_year: bool = False
           ) -> SiteSettings:
        q = config.quality
        return cls(allowed_lateness_ms=int(q.allowed_lateness_s * 1000),
                   stale_after_ms=int(q.stale_after_s * 1000),
                   account_from_contract_year=account_from_contract_year)


class SiteState:
    def __init__(self, fleet: Fleet, site_id: str, config: MonitoringConfig,
                 contract: Contract | None, settings: SiteSettings,
                 windows: Sequence[ExclusionWindow] = ()) -> None:
        """`windows`: the contract's approved exclusion windows (docs/exclusions.md), booked
        when the accounting starts (the first poll, or `resume`)."""
        # Only this site: the state is pickled for recovery and must stay site-sized.
        fleet = Fleet(sites=(fleet.site(site_id),))
        self.site = fleet.site(site_id)
        self.assets = fleet.assets
        self.fleet = fleet
        self.settings = settings
        self.status_rules = StatusRules.of(config.status)
        # The tags a status is worked out from, each once.
        self.status_tags = tuple(dict.fromkeys(self.status_rules.tags))
        self.technical = contract is None
        self.contract = contract or technical_contract(self.site)
        self.rules = Rules.of(self.contract)
        self.windows = tuple(windows) if contract is not None else ()
        self.weights = {u.id: unit_weight(self.contract, u) for u in self.site.units}
        self.rollups = {u.id: Rollup(u.id, fleet.assets) for u in self.site.units}
        self.timelines = {
            u.id: UnitTimeline(u.id, (u.id, *self._descendants(u.id)),
                               settings.stale_after_ms)
            for u in self.site.units}
        self.live = {u.id: UnitLive() for u in self.site.units}
        self.breaches = BreachEngine(config, fleet.assets)
        self.status_alarms = StatusAlarms(config.alarms, fleet.assets)
        self.config_quality = config.quality
        self.device_limits = {name: DeviceLimits.of(config, name)
                              for name in (None, *config.device_types)}
        self.quality: dict[str, DeviceQuality] = {}  # by device
        self.dlq_rate = DlqRate(site_id, config.quality, site_id=site_id)
        self.flapping: dict[str, Flapping] = {}  # by asset
        self.episodes = EpisodeTracker(fleet, site_id)
        self.ld_alert: Alert | None = None
        self.periods_done_ms: int | None = None  # periods ending by here were emitted
        self.days_done_ms: int | None = None  # days ending by here were emitted
        self.accumulator: ContractAccumulator | None = None  # from the first poll on
        self.newest_ms: int | None = None  # the site's newest sample
        self.unit_newest: dict[str, int] = {}  # each unit's newest sample
        self.final_ms: int | None = None
        self.published_ms: int | None = None
        self.kpis_ms: int | None = None
        self.kpis: tuple[dict[str, float | None], ContractKpis | None] = ({}, None)
        self.counts = {"polls": 0, "late": 0, "duplicate": 0, "refused": 0}
        self.status_cache: dict[str, tuple[tuple[float | None, ...], Status]] = {}
        # By unit: its last poll's shape, what picks the rules' tags out of its frame, their
        # values and the statuses they gave.
        self.unit_statuses: dict[str, tuple[Shape, Callable[[list[float]], object] | None,
                                            object, dict[str, Status]]] = {}

    def _descendants(self, asset_id: str) -> list[str]:
        out: list[str] = []
        for child in self.assets[asset_id].children:
            out += [child, *self._descendants(child)]
        return out

    # -- input -------------------------------------------------------------------------

    def on_dead(self, dead: DeadLetter) -> list[Output]:
        """A record of this site's devices refused whole: counts against the DLQ rate."""
        self.counts["refused"] += 1
        self._count(dead)
        return [dead, *self.dlq_rate.observe(dead.ts_ms, False)]  # counts at the site's clock

    def _count(self, dead: DeadLetter) -> None:
        """Dead letters by reason, in the snapshot's counts as `dlq.<reason>`."""
        key = f"dlq.{dead.reason}"
        self.counts[key] = self.counts.get(key, 0) + 1

    def on_ticket(self, ticket: TicketEvent) -> list[Output]:
        """The episodes whose links the ticket changes, and the ticket itself when it is the
        newest version seen (for the site's ticket list in the hot state)."""
        known = self.episodes.tickets.get((ticket.provider, ticket.ticket_id))
        newest = known is None or ticket.updated_ms >= known.updated_ms
        episodes: list[Output] = list(self.episodes.on_ticket(ticket))
        return [SiteTicket(self.site.id, ticket), *episodes] if newest else episodes

    def on_poll(self, poll: Poll, dead: DeadLetter | None = None,
                received_ms: int | None = None) -> list[Output]:
        """Take a normalized poll of one of the site's units (and the dead letter of the
        values refused in it, if any); `received_ms` is the clock a device's timestamps are
        judged by — when the record was produced, or failing that received (None in
        replays)."""
        out: list[Output] = [] if dead is None else [dead]
        self.counts["polls"] += 1
        if dead is not None:
            self.counts["refused"] += 1
            self._count(dead)
        out += self.dlq_rate.observe(poll.ts_ms, dead is None, trusted=True)
        frame = Frame.of(poll.readings)
        statuses = self._statuses(poll.unit_id, poll.readings, frame)
        refused = self.timelines[poll.unit_id].add(poll.ts_ms, statuses)
        if refused is not None:
            self.counts[refused] += 1
            if refused == "late":
                late = DeadLetter(
                    source="flows.site", reason="late", ts_ms=poll.ts_ms, key=poll.device_id,
                    detail=f"sample of {poll.unit_id} at {poll.ts_ms} is older than the "
                           f"final watermark {self.final_ms}",
                    payload=_poll_json(poll))
                self._count(late)
                out.append(late)
            return out  # a duplicate is dropped: its twin was taken
        quality = self.quality.get(poll.device_id)
        if quality is None:
            quality = self.quality[poll.device_id] = DeviceQuality(
                poll.device_id, self.device_limits.get(poll.device_type,
                                                       self.device_limits[None]),
                site_id=self.site.id)
        out += quality.observe(poll.ts_ms, poll.ts_ms if received_ms is None else received_ms,
                               dict(poll.readings))
        changed = self._live(poll, frame, statuses, out)
        if self.newest_ms is None:  # the first poll
            if self.accumulator is None:  # (else resumed from the history)
                self.accumulator = self._new_accumulator(poll.ts_ms)
            # Every unit is expected from the first poll on: one not heard of holds the
            # watermark until it is idle, like one that fell behind.
            self.unit_newest = dict.fromkeys(self.timelines, poll.ts_ms)
            self.newest_ms = poll.ts_ms
        if poll.ts_ms > self.unit_newest[poll.unit_id]:
            self.unit_newest[poll.unit_id] = poll.ts_ms
            self.newest_ms = max(poll.ts_ms, self.newest_ms or poll.ts_ms)
            every = self.settings.finalize_every_ms
            # The watermark is never past the newest sample less the lateness: unless that
            # bound makes finalizing due, the slowest unit need not be looked for.
            if self._step_due(self.final_ms, self.newest_ms - self.settings.allowed_lateness_ms,
                              every):
                watermark = self.watermark()
                if self._step_due(self.final_ms, watermark, every):
                    self.finalize(watermark, out)
        if changed or self._due(self.published_ms, self.settings.publish_every_ms):
            out.extend(self.snapshot())
        return out

    def resume_from(self, first_ms: int) -> tuple[list[str], int, int]:
        """What `resume` needs of the history, before the first poll at `first_ms`: the
        site's assets and the time range of their status intervals to read."""
        cal = ContractContext(self.fleet, self.contract).calendar
        year = cal.contract_year(first_ms * 1000)
        year_start_ms = (cal.year_bounds(year)[0] if year else cal.start_us) // 1000
        return list(self.assets), year_start_ms, first_ms

    def resume(self, rows: Sequence[StatusIntervalRow], first_ms: int) -> list[Output]:
        """Start over a history that already holds final statuses of the site — an earlier
        run's, or a past seeded from the simulator — before the first poll at `first_ms`
        (`rows`: what `resume_from` asked for). Time before `first_ms` less the allowed
        lateness is final: the contract is accounted from the site's first status in the
        contract year, as the API's evaluation of the history does (api/history_evaluation.py),
        so that the live tiles and the period table agree. The rows still open there — an
        earlier run's last statuses, which it never closed — are closed there (returned, for
        the history), so that no asset holds two statuses at once. No rows: nothing to do
        (the accounting starts with the first poll)."""
        assert self.newest_ms is None and self.accumulator is None, "resume before any poll"
        _, year_start_ms, _ = self.resume_from(first_ms)
        resume_ms = first_ms - self.settings.allowed_lateness_ms
        rows = sorted((r for r in rows if r.asset_id in self.assets and r.start_ms < resume_ms
                       and (r.end_ms is None or r.end_ms > year_start_ms)),
                      key=lambda r: (r.start_ms, r.asset_id))
        start_ms = max(year_start_ms, rows[0].start_ms) if rows else resume_ms
        if start_ms >= resume_ms:
            return []
        acc = self.accumulator = self._accumulator(start_ms * 1000)
        self._book_rows(rows, start_ms, resume_ms)
        acc.advance(resume_ms * 1000)
        self.final_ms = resume_ms
        for timeline in self.timelines.values():
            timeline.final_ms = resume_ms
        # The days and periods before the one resumed in were final (and written) already.
        cal = acc.ctx.calendar
        self.days_done_ms = local_midnight_us(from_us(resume_ms * 1000, self.site.tz).date(),
                                              self.site.tz) // 1000
        if cal.contract_year(resume_ms * 1000) is not None:
            self.periods_done_ms = cal.containing(
                resume_ms * 1000, self.contract.measurement_period).start_us // 1000
        return [replace(r, end_ms=resume_ms) for r in rows
                if r.end_ms is None or r.end_ms > resume_ms]

    def _book_rows(self, rows: Sequence[StatusIntervalRow], lo_ms: int, hi_ms: int) -> None:
        """The history's status rows booked over `[lo_ms, hi_ms)` (an open one runs to
        `hi_ms`), in time order, by the same rule as the flow's own pieces."""
        for r in sorted(rows, key=lambda r: (r.start_ms, r.asset_id)):
            asset = self.assets.get(r.asset_id)
            start_ms = max(r.start_ms, lo_ms)
            end_ms = hi_ms if r.end_ms is None else min(r.end_ms, hi_ms)
            if asset is not None and asset.unit_id is not None and start_ms < end_ms:
                self._book(asset.unit_id, Piece(r.asset_id, start_ms, end_ms,
                                                Status(r.state, r.derate_fraction, r.cause)))

    def rebook_from(self) -> tuple[list[str], int, int] | None:
        """What `rebook` needs of the history: the site's assets and the final time before
        the accumulator's kept inputs (days old: written long since); None when the
        accounting has not started or keeps everything."""
        acc = self.accumulator
        if acc is None or acc.kept_from_us <= acc.start_us:
            return None
        return list(self.assets), acc.start_us // 1000, acc.kept_from_us // 1000

    def rebook(self, windows: Sequence[ExclusionWindow],
               rows: Sequence[StatusIntervalRow] = ()) -> None:
        """The contract's approved exclusion windows changed while the flow runs (one was
        approved or revoked): the accounting is made again from its start with them, as the
        history's evaluation makes it — final time before the accumulator's kept inputs from
        the history's `rows` (what `rebook_from` asked for), the rest from the kept inputs —
        and the KPIs are refreshed at the next snapshot. Before the accounting starts, the
        windows are only kept for it."""
        self.windows = tuple(windows) if not self.technical else ()
        acc = self.accumulator
        if acc is None:
            return
        split_us = acc.kept_from_us
        new = self.accumulator = self._accumulator(acc.start_us)
        self._book_rows(rows, acc.start_us // 1000, split_us // 1000)
        kept = sorted((x for items in acc.kept.values() for x in items
                       if isinstance(x, StatusInterval) and x.end_us > split_us),
                      key=lambda x: (x.start_us, x.asset_id))
        for x in kept:
            new.add(replace(x, start_us=max(x.start_us, split_us)) if x.start_us < split_us
                    else x)
        new.advance(acc.frontier_us)
        self.kpis_ms = None

    def watermark(self) -> int:
        """Time before which statuses are final: the slowest reporting unit's newest sample
        minus the allowed lateness — so a unit whose records come in a lagging partition
        (catching up after an outage) holds the site back instead of turning late. A unit
        silent for `idle_after` no longer holds it back (its silence is communication loss)."""
        assert self.newest_ms is not None
        idle_before = self.newest_ms - self.settings.idle_after_ms
        slowest = min(self.unit_newest.values(), default=self.newest_ms)
        if slowest < idle_before:  # some unit is idle: the slowest of the others
            slowest = min((t for t in self.unit_newest.values() if t >= idle_before),
                          default=self.newest_ms)
        return slowest - self.settings.allowed_lateness_ms

    def _new_accumulator(self, first_ms: int) -> ContractAccumulator:
        start_us = first_ms * 1000
        if self.settings.account_from_contract_year:
            cal = ContractAccumulator(self.fleet, self.contract,
                                      allowed_lateness_us=0).ctx.calendar
            year = cal.contract_year(start_us)
            start_us = cal.year_bounds(year)[0] if year else cal.start_us
        return self._accumulator(start_us)

    def _accumulator(self, start_us: int) -> ContractAccumulator:
        """The contract's accounting from `start_us`, with the approved exclusion windows
        (booked now: later, their time could be final already)."""
        acc = ContractAccumulator(self.fleet, self.contract, allowed_lateness_us=0,
                                  start_us=start_us)
        for window in self.windows:
            acc.add_window(window)
        return acc

    def _statuses(self, unit_id: str, readings: Readings, frame: Frame) -> dict[str, Status]:
        """Each asset's status by the rules — worked out again only when one of the tags the
        rules read changed (most polls change none): when none of the unit's did and its
        poll has the shape of the one before, that poll's statuses (the dictionary is shared:
        it is never changed); otherwise asset by asset."""
        known = self.unit_statuses.get(unit_id)
        if known is not None and known[0] == frame.shape:
            shape, pick, picked, statuses = known
            now = None if pick is None else pick(frame.values)
            if now == picked:
                return statuses
        else:
            shape, pick = frame.shape, picker(frame.shape, self.status_tags)
            now = None if pick is None else pick(frame.values)
        statuses = self._asset_statuses(readings)
        self.unit_statuses[unit_id] = (shape, pick, now, statuses)
        return statuses

    def _asset_statuses(self, readings: Readings) -> dict[str, Status]:
        cache, keys = self.status_cache, self.status_tags
        out: dict[str, Status] = {}
        for asset_id, tags in readings:
            key = tuple(map(tags.get, keys))
            known = cache.get(asset_id)
            if known is not None and known[0] == key:
                out[asset_id] = known[1]
                continue
            asset = self.assets[asset_id]
            status = out[asset_id] = classify(tags, asset.rated_power_kw,
                                              asset.rated_energy_kwh, self.status_rules)
            cache[asset_id] = (key, status)
        return out

    def silent(self, now_ms: int) -> list[Output]:
        """The comms-loss alarms of the units silent at `now_ms` (event time) — for a site
        none of whose devices reports any more, so that no poll drives the live view."""
        out: list[Output] = []
        stale = self.settings.stale_after_ms
        for unit in self.site.units:
            live = self.live[unit.id]
            if live.ts_ms is not None and now_ms - live.ts_ms > stale:
                out += self.status_alarms.observe(unit.id, now_ms, COMMS_LOSS)
        return out

    def alarms_of_alerts(self, items: list[Output]) -> list[Output]:
        """The alarm events of the alerts among a step's outputs (contracts/alarm_sources.py)."""
        return list(alert_alarms(self.status_alarms.config, items))

    def __setstate__(self, state: dict[str, object]) -> None:
        # A recovery snapshot taken before status alarms existed: none active.
        self.__dict__.update(state)
        if "status_alarms" not in state:
            self.status_alarms = StatusAlarms(AlarmsConfig(), self.assets)
        if "windows" not in state:  # … or before exclusion windows were booked
            self.windows = ()
        if "unit_statuses" not in state:  # … or before statuses were kept per unit
            self.unit_statuses = {}

    def _step_due(self, last_ms: int | None, now_ms: int, every: int) -> bool:
        """A periodic step (finalizing, the contract windows) is due once per `every` of
        event time, at an offset of its own per site: the sites of a fleet do not all do
        their heavier work in the same instant."""
        if last_ms is None:
            return True
        offset = zlib.crc32(self.site.id.encode()) % every
        return (now_ms - offset) // every > (last_ms - offset) // every

    def _due(self, last: int | None, every: int) -> bool:
        assert self.newest_ms is not None
        return last is None or self.newest_ms - last >= every

    def _live(self, poll: Poll, frame: Frame, statuses: dict[str, Status],
              out: list[Output]) -> bool:
        """Update the live view with an in-order poll; True when a unit's status changed."""
        live = self.live[poll.unit_id]
        if live.ts_ms is not None and poll.ts_ms <= live.ts_ms:
            return False  # out of order: the final timeline places it; the live view moved on
        same = statuses == live.statuses  # the usual case: nothing changed
        if live.ts_ms is not None:
            gap = poll.ts_ms - live.ts_ms
            stale = self.settings.stale_after_ms
            fresh_until = live.ts_ms + min(gap, stale)
            live.timeline.add(live.ts_ms, fresh_until, live.effective.loss)
            if gap > stale:
                live.timeline.add(fresh_until, poll.ts_ms, COMMS_LOSS.loss)
                _flush_assets(live, fresh_until)
                for asset_id in live.statuses:
                    _asset_timeline(live, asset_id).add(fresh_until, poll.ts_ms,
                                                        COMMS_LOSS.loss)
                live.assets_from_ms = poll.ts_ms
            elif not same:
                _flush_assets(live, poll.ts_ms)
        else:
            live.assets_from_ms = poll.ts_ms
        live.statuses = statuses
        live.ts_ms = poll.ts_ms
        out.extend(self.breaches.observe_poll(poll.ts_ms, poll.readings))
        alarms = self.status_alarms
        if not same:
            for asset_id, status in statuses.items():
                out.extend(alarms.observe(asset_id, poll.ts_ms, status))
        elif poll.unit_id in alarms.active and poll.unit_id in statuses:
            # back from silence (or still as it was): its own status, not comms loss
            out.extend(alarms.observe(poll.unit_id, poll.ts_ms, statuses[poll.unit_id]))
        effective = live.effective if same else self._effective(poll.unit_id, statuses)
        changed = effective != live.effective
        live.effective = effective
        if self.settings.telemetry_minutes:
            self._downsample(live, poll, frame, out)
        if live.published_values_ms is None or \
                poll.ts_ms - live.published_values_ms >= self.settings.values_every_ms:
            live.published_values_ms = poll.ts_ms
            out.append(LatestValues(self.site.id, poll.unit_id, poll.ts_ms, poll.readings,
                                    self._asset_windows(live, poll.ts_ms)))
        return changed

    def _asset_windows(self, live: UnitLive, now_ms: int
                       ) -> tuple[tuple[str, Status, float | None, float | None], ...]:
        """Every asset's live status and its own availability over the last hour and today
        (its children not rolled in: that is the unit's figure)."""
        tz = self.site.tz
        hour_ago = now_ms - HOUR_MS
        midnight = local_midnight_us(from_us(now_ms * 1000, tz).date(), tz) // 1000
        out: list[tuple[str, Status, float | None, float | None]] = []
        _flush_assets(live, now_ms)
        for asset_id, status in live.statuses.items():
            timeline = live.asset_timelines.get(asset_id)
            if timeline is None:
                out.append((asset_id, status, None, None))
                continue
            timeline.trim(min(hour_ago, midnight))
            out.append((asset_id, status, timeline.availability_pct(hour_ago, now_ms),
                        timeline.availability_pct(midnight, now_ms)))
        return tuple(out)

    def _downsample(self, live: UnitLive, poll: Poll, frame: Frame, out: list[Output]) -> None:
        """Per-minute count, min, max, mean and last of every tag (in-order polls; a minute
        is closed by the first poll of a later one). Every unit of a fleet closes its minute
        in the same second, so each one's rows wait a delay of its own (under
        `MINUTE_SPREAD_MS`): the history is written evenly, not in a burst each minute that
        holds up the live feed."""
        minute_ms = poll.ts_ms - poll.ts_ms % 60_000
        if live.minute_ms is not None and minute_ms != live.minute_ms:
            if live.closed is not None:
                out.append(live.closed)
            live.closed = UnitMinute(self.site.id, live.minute_ms, *live.minute.block())
            live.minute = MinuteTags()
        live.minute_ms = minute_ms
        live.minute.add_frame(frame)
        if live.closed is not None and poll.ts_ms >= live.closed.start_ms + 60_000 + \
                _spread(poll.unit_id):
            out.append(live.closed)
            live.closed = None

    def _effective(self, unit_id: str, statuses: Mapping[str, Status]) -> Status:
        """The unit's status with its children rolled up (availability rules §3)."""
        own = statuses.get(unit_id, COMMS_LOSS)
        losses = {a: s.loss for a, s in statuses.items()
                  if a == unit_id or s.state != "unknown"}
        loss = self.rollups[unit_id].loss(losses.get(unit_id, 0.0), losses)
        if loss <= own.loss:
            return own
        worst = max((s for a, s in statuses.items() if a != unit_id), key=lambda s: s.loss)
        return (Status("unavailable", None, worst.cause) if loss >= 1.0
                else Status("derated", 1.0 - loss, worst.cause))

    # -- final time --------------------------------------------------------------------

    def finalize(self, to_ms: int, out: list[Output]) -> None:
        """Make statuses final up to `to_ms` and book them in the contract accounting."""
        acc = self.accumulator
        if acc is None or (self.final_ms is not None and to_ms <= self.final_ms):
            return
        start_ms = acc.start_us // 1000
        if to_ms <= start_ms:
            return
        for unit_id, timeline in self.timelines.items():
            changes, pieces = timeline.finalize(to_ms)
            for change in changes:
                out.extend(self._final_change(change))
            for piece in pieces:
                self._book(unit_id, piece)
        acc.advance(to_ms * 1000)
        self.final_ms = to_ms
        for quality in self.quality.values():
            out.extend(quality.tick(to_ms))
        for flapping in self.flapping.values():
            out.extend(flapping.tick(to_ms))
        out.extend(self._final_days(to_ms))
        out.extend(self._final_periods(to_ms))

    def finish(self) -> list[Output]:
        """The input has ended (a replay): everything up to the end of the newest sample's
        measurement period becomes final (`finish_at` "input": up to just past the newest
        sample)."""
        out: list[Output] = []
        if self.accumulator is not None and self.newest_ms is not None:
            if self.settings.finish_at == "input":
                self.finalize(self.newest_ms + 1, out)
            else:
                period = self.accumulator.ctx.calendar.containing(
                    self.newest_ms * 1000, self.contract.measurement_period)
                self.finalize(period.end_us // 1000, out)
            out.extend(self.snapshot())
        for live in self.live.values():  # the newest minutes, the last one as recorded
            if live.closed is not None:
                out.append(live.closed)
                live.closed = None
            if live.minute:
                assert live.minute_ms is not None
                out.append(UnitMinute(self.site.id, live.minute_ms, *live.minute.block()))
                live.minute = MinuteTags()
        return out

    def _final_days(self, to_ms: int) -> list[Output]:
        """Each unit's site-local days that became final, for the history."""
        acc = self.accumulator
        assert acc is not None
        tz = self.site.tz
        done = self.days_done_ms if self.days_done_ms is not None else acc.start_us // 1000
        day = from_us(done * 1000, tz).date()
        out: list[Output] = []
        view = None
        while True:
            start = local_midnight_us(day, tz) // 1000
            end = local_midnight_us(day + dt.timedelta(days=1), tz) // 1000
            if end > to_ms:
                return out
            view = view or acc.view()
            for uid, total in view.day(start * 1000).items():
                if total.window_us:
                    a = total.availability
                    out.append(AvailabilityRow(uid, self.site.id, "day", start, end,
                                               *total.hours(),
                                               None if a is None else 100.0 * a))
            self.days_done_ms = end
            day += dt.timedelta(days=1)

    def _final_periods(self, to_ms: int) -> list[Output]:
        """The contract's measurement periods that became final."""
        acc = self.accumulator
        assert acc is not None
        cal = acc.ctx.calendar
        kind = self.contract.measurement_period
        start = acc.start_us if self.periods_done_ms is None else self.periods_done_ms * 1000
        out: list[Output] = []
        if cal.contract_year(start) is None:
            return out
        period = cal.containing(start, kind)
        while period.end_us <= to_ms * 1000 and cal.contract_year(period.start_us
                                                                   ) is not None:
            result = acc.evaluate([period.label])[0]
            out.append(PeriodAvailability(
                site_id=self.site.id, contract_id=self.contract.id,
                currency=self.contract.ld.currency, measurement_period=kind,
                period=period.label,
                start_ms=period.start_us // 1000, end_ms=period.end_us // 1000,
                contract_year=result.contract_year,
                availability_pct=None if result.availability is None
                else 100.0 * result.availability,
                guaranteed_pct=result.guaranteed_pct, shortfall_pct=result.shortfall_pct,
                ld=float(result.ld.amount), bonus=float(result.bonus.amount),
                units=tuple(UnitPeriod(
                    asset_id=u.asset_id, window_hours=u.totals.hours()[0],
                    excluded_hours=u.totals.hours()[1], lost_hours=u.totals.hours()[2],
                    availability_pct=None if u.availability is None
                    else 100.0 * u.availability) for u in result.units)))
            self.periods_done_ms = period.end_us // 1000
            period = cal.following(period)
        return out

    def _final_change(self, change: Change) -> list[Output]:
        s = change.status
        event = StatusChange(
            asset_id=change.asset_id, site_id=self.site.id, ts_ms=change.ts_ms, state=s.state,
            derate_fraction=s.derate_fraction, cause=s.cause,
            previous_state=change.previous.state if change.previous else None)
        out: list[Output] = [event, *self.episodes.on_status(event)]
        flapping = self.flapping.get(change.asset_id)
        if flapping is None:
            flapping = self.flapping[change.asset_id] = Flapping(
                change.asset_id, self.config_quality, site_id=self.site.id)
        out.extend(flapping.observe(event))
        previous = change.previous
        if previous is not None and change.previous_since_ms is not None:
            out.append(StatusIntervalRow(change.asset_id, self.site.id,
                                         change.previous_since_ms, change.ts_ms,
                                         previous.state, previous.derate_fraction,
                                         previous.cause))
        out.append(StatusIntervalRow(change.asset_id, self.site.id, change.ts_ms, None,
                                     s.state, s.derate_fraction, s.cause))
        return out

    def _book(self, unit_id: str, piece: Piece) -> None:
        """Hand a final piece to the accumulator: the unit's own always; a child's only when
        it costs something (a child with no row costs nothing either, availability rules §3)."""
        assert self.accumulator is not None
        s = piece.status
        interval = StatusInterval(piece.asset_id, piece.start_ms * 1000, piece.end_ms * 1000,
                                  s.state, s.derate_fraction, s.cause)
        if piece.asset_id == unit_id or self.rules.child_loss(interval) > 0:
            self.accumulator.add(interval)

    # -- output ------------------------------------------------------------------------

    def snapshot(self) -> list[Output]:
        """The site now: live unit statuses, windows and, every `kpi_every`, the contract
        (and the LD-risk early warning when its level moves)."""
        assert self.newest_ms is not None
        now = self.newest_ms
        tz = self.site.tz
        hour_ago, midnight = now - HOUR_MS, local_midnight_us(
            from_us(now * 1000, tz).date(), tz) // 1000
        # Σ weight · observed and Σ weight · lost over the units, last hour and today.
        hour_observed = hour_lost = today_observed = today_lost = 0.0
        units = []
        counts: dict[State, int] = {"available": 0, "derated": 0, "unavailable": 0, "unknown": 0}
        alarms: list[Output] = []
        stale, trim_before = self.settings.stale_after_ms, min(hour_ago, midnight)
        for unit in self.site.units:
            live = self.live[unit.id]
            status = live.effective if live.ts_ms is not None and \
                now - live.ts_ms <= stale else COMMS_LOSS
            if status is COMMS_LOSS and live.ts_ms is not None:
                alarms += self.status_alarms.observe(unit.id, now, COMMS_LOSS)
            weight, timeline = self.weights[unit.id], live.timeline
            observed, lost = timeline.totals(hour_ago, now)
            hour_pct = None if observed == 0 else 100.0 * (1.0 - lost / observed)
            hour_observed += weight * observed
            hour_lost += weight * lost
            observed, lost = timeline.totals(midnight, now)
            today_pct = None if observed == 0 else 100.0 * (1.0 - lost / observed)
            today_observed += weight * observed
            today_lost += weight * lost
            timeline.trim(trim_before)
            counts[status.state] += 1
            units.append(UnitAvailability(
                id=unit.id, state=status.state, cause=status.cause,
                derate_fraction=status.derate_fraction, last_hour_pct=hour_pct,
                today_pct=today_pct))
        windows: dict[str, float | None] = {
            name: None if observed == 0 else 100.0 * (1.0 - lost / observed)
            for name, observed, lost in (("last_hour", hour_observed, hour_lost),
                                         ("today", today_observed, today_lost))}
        alerts: list[Output] = alarms
        repair: list[Output] = []
        if self._step_due(self.kpis_ms, now, self.settings.kpi_every_ms):
            # By the contract's rules on final time only (contracts/kpis.py).
            self.kpis = ({}, None) if self.accumulator is None else contract_kpis(
                self.accumulator, self.final_ms,
                kind="technical" if self.technical else "ltsa")
            self.kpis_ms = now
            self.ld_alert, raised = ld_warning(self.ld_alert, self.kpis[1],
                                               site_id=self.site.id,
                                               contract_id=self.contract.id, now_ms=now)
            alerts += raised
            if self.settings.repair_list:
                repair.append(self.repair_list())
        windows.update(self.kpis[0])
        self.published_ms = now
        return [*alerts, SiteAvailability(
            site_id=self.site.id, name=self.site.name, customer=self.site.customer,
            region=self.site.region, ts_ms=now, final_ms=self.final_ms, windows=windows,
            units_by_state=counts, units=tuple(units), contract=self.kpis[1],
            counts=dict(self.counts)), *repair]

    def repair_list(self) -> RepairList:
        """The open episodes ranked by what one more hour of each costs under the contract
        (contracts/repair.py), priced at final time — as the KPIs are — with each asset's
        final status now. Only computed when an episode is open."""
        acc, final_ms = self.accumulator, self.final_ms
        opened = self.episodes.open_episodes(final_ms) if self.episodes.open else []
        if acc is None or final_ms is None or not opened or final_ms * 1000 <= acc.start_us:
            return RepairList(self.site.id, final_ms, ())
        # Every asset's final status now (what the accumulator was last given of it).
        current = {asset_id: AssetStatus(s.state, s.derate_fraction, s.cause)
                   for timeline in self.timelines.values()
                   for asset_id, (_, s) in timeline.current.items()}
        pairs = [(e, current[e.asset_id]) for e in opened
                 if e.asset_id in current and current[e.asset_id].state != "available"]
        items = repair_priorities(acc, final_ms * 1000, pairs, current=current,
                                  windows=self.windows,
                                  kind="technical" if self.technical else "ltsa")
        return RepairList(self.site.id, final_ms, tuple(items))


def _poll_json(poll: Poll) -> str:
    import json

    return json.dumps({"device_id": poll.device_id, "ts_ms": poll.ts_ms,
                       "assets": [{"id": a, "tags": t} for a, t in poll.readings]},
                      default=lambda x: None if isinstance(x, float) and math.isnan(x) else x)


def _flush_assets(live: UnitLive, to_ms: int) -> None:
    """Each asset's status held since `live.assets_from_ms`, added to its own timeline up to
    `to_ms`; what follows is pending from there (`UnitLive.assets_from_ms`)."""
    start = live.assets_from_ms
    if start is not None and to_ms > start:
        for asset_id, status in live.statuses.items():
            _asset_timeline(live, asset_id).add(start, to_ms, status.loss)
    live.assets_from_ms = to_ms


def _asset_timeline(live: UnitLive, asset_id: str) -> Timeline:
    timeline = live.asset_timelines.get(asset_id)
    if timeline is None:
        timeline = live.asset_timelines[asset_id] = Timeline()
    return timeline


MINUTE_SPREAD_MS = 50_000


def _spread(unit_id: str) -> int:
    """A unit's delay before writing a closed minute (stable across restarts)."""
    return zlib.crc32(unit_id.encode()) % MINUTE_SPREAD_MS
