"""Per-site status and rolling availability in event time: the logic of the
site-availability flow, free of Bytewax so it can be tested exhaustively.

One tracker per site receives that site's samples (one sample = one poll of one battery unit
controller: the unit, its inverters and blocks). For every asset it derives the status
(contracts.status), emits a `StatusChange` when it changes, keeps each unit's loss as exact
segments in event time, and emits a `SiteAvailability` snapshot at most every
`publish_every_ms` of event time, or at once when a status changed.

Event time only: the site's clock is the newest sample timestamp it has seen. A unit silent
for `stale_after_ms` of that clock turns `unknown` with cause `comms_loss` (loss 1). A sample
older than what a unit has already accounted for is late and becomes a dead letter."""

from __future__ import annotations

from dataclasses import dataclass, field

from contracts.availability import Timeline, local_midnight_ms
from contracts.events import (
    DeadLetter,
    SiteAvailability,
    State,
    StatusChange,
    TelemetrySample,
    UnitAvailability,
)
from contracts.fleet import Asset, Fleet, Site
from contracts.rules import Rollup
from contracts.status import COMMS_LOSS, Status, StatusRules, classify

WINDOW_15M_MS = 15 * 60 * 1000
Output = StatusChange | SiteAvailability | DeadLetter


@dataclass
class UnitTrack:
    last_ts_ms: int | None = None  # newest sample of this unit
    covered_ms: int | None = None  # loss accounted for up to here
    statuses: dict[str, Status] = field(default_factory=dict)  # own status per asset
    effective: Status = COMMS_LOSS  # the unit's status including its children (spec §3)
    timeline: Timeline = field(default_factory=Timeline)


class SiteTracker:
    def __init__(
        self,
        fleet: Fleet,
        site_id: str,
        *,
        stale_after_ms: int = 10_000,
        publish_every_ms: int = 1_000,
        rules: StatusRules | None = None,
    ) -> None:
        self.site: Site = fleet.site(site_id)
        self.assets: dict[str, Asset] = fleet.assets
        self.stale_after_ms = stale_after_ms
        self.publish_every_ms = publish_every_ms
        self.rules = rules or StatusRules()
        self.units = {u.id: UnitTrack() for u in self.site.units}
        self.rollups = {u.id: Rollup(u.id, self.assets) for u in self.site.units}
        self.now_ms: int | None = None
        self.last_published_ms: int | None = None

    # -- input ---------------------------------------------------------------------------

    def on_sample(self, sample: TelemetrySample) -> list[Output]:
        unit_id = self._unit_of(sample)
        if isinstance(unit_id, DeadLetter):
            return [unit_id]
        track = self.units[unit_id]
        ts = sample.ts_ms
        if track.covered_ms is not None and ts <= track.covered_ms:
            reason = "duplicate" if ts == track.last_ts_ms else "late"
            return [self._dead(sample, reason, f"unit {unit_id} already accounted up to "
                               f"{track.covered_ms}, sample at {ts}")]
        out: list[Output] = []
        self._advance(unit_id, track, ts, out)
        self._apply(unit_id, track, sample, out)
        track.last_ts_ms = track.covered_ms = ts
        if self.now_ms is None or ts > self.now_ms:
            self.now_ms = ts
            # Only silent units are accounted ahead: a live one may still report up to now.
            for other_id, other in self.units.items():
                if other.last_ts_ms is not None and ts > other.last_ts_ms + self.stale_after_ms:
                    self._advance(other_id, other, ts, out)
        self._trim()
        if out or self._publish_due():
            out.append(self.snapshot())
        return out

    # -- state ---------------------------------------------------------------------------

    def _unit_of(self, sample: TelemetrySample) -> str | DeadLetter:
        unit_id = None
        for reading in sample.assets:
            asset = self.assets.get(reading.id)
            if asset is None or asset.site_id != self.site.id or asset.kind == "site":
                return self._dead(sample, "unknown_asset",
                                  f"asset {reading.id!r} is not an asset of site {self.site.id}")
            if unit_id is not None and asset.unit_id != unit_id:
                return self._dead(sample, "mixed_units",
                                  f"one sample reports units {unit_id} and {asset.unit_id}")
            unit_id = asset.unit_id
        assert unit_id is not None
        return unit_id

    def _advance(self, unit_id: str, track: UnitTrack, to_ms: int, out: list[Output]) -> None:
        """Account the unit's loss up to `to_ms`: its current status until it goes stale,
        communication loss after that."""
        if track.covered_ms is None or track.last_ts_ms is None or to_ms <= track.covered_ms:
            return
        stale_at = track.last_ts_ms + self.stale_after_ms
        if track.covered_ms < stale_at:
            end = min(to_ms, stale_at)
            track.timeline.add(track.covered_ms, end, track.effective.loss)
            track.covered_ms = end
        if to_ms > stale_at:
            if track.effective != COMMS_LOSS:
                for asset_id in [unit_id, *self._descendants(unit_id)]:
                    if track.statuses.get(asset_id) != COMMS_LOSS:
                        out.append(self._change(asset_id, stale_at, COMMS_LOSS,
                                                track.statuses.get(asset_id)))
                        track.statuses[asset_id] = COMMS_LOSS
                track.effective = COMMS_LOSS
            track.timeline.add(track.covered_ms, to_ms, COMMS_LOSS.loss)
            track.covered_ms = to_ms

    def _apply(self, unit_id: str, track: UnitTrack, sample: TelemetrySample,
               out: list[Output]) -> None:
        own_losses: dict[str, float] = {}
        for reading in sample.assets:
            asset = self.assets[reading.id]
            status = classify(reading.tags, asset.rated_power_kw, asset.rated_energy_kwh,
                              self.rules)
            previous = track.statuses.get(reading.id)
            if status != previous:
                out.append(self._change(reading.id, sample.ts_ms, status, previous))
                track.statuses[reading.id] = status
            # Children count by state only; gaps and unknown children cost nothing (spec §3).
            if reading.id == unit_id or status.state != "unknown":
                own_losses[reading.id] = status.loss
        loss = self.rollups[unit_id].loss(own_losses.get(unit_id, 0.0), own_losses)
        own = track.statuses.get(unit_id, COMMS_LOSS)
        if loss <= own.loss:
            track.effective = own
        else:
            worst = max((s for a, s in track.statuses.items() if a != unit_id),
                        key=lambda s: s.loss)
            track.effective = (Status("unavailable", None, worst.cause) if loss >= 1.0
                               else Status("derated", 1.0 - loss, worst.cause))

    def _descendants(self, asset_id: str) -> list[str]:
        out: list[str] = []
        for child in self.assets[asset_id].children:
            out += [child, *self._descendants(child)]
        return out

    def _trim(self) -> None:
        assert self.now_ms is not None
        keep_from = min(self.now_ms - WINDOW_15M_MS, local_midnight_ms(self.now_ms, self.site.tz))
        for track in self.units.values():
            track.timeline.trim(keep_from)

    def _publish_due(self) -> bool:
        return (self.now_ms is not None and (self.last_published_ms is None
                or self.now_ms - self.last_published_ms >= self.publish_every_ms))

    # -- output --------------------------------------------------------------------------

    def snapshot(self) -> SiteAvailability:
        """The site now: per-unit status and availability, site totals energy-weighted."""
        assert self.now_ms is not None
        now = self.now_ms
        windows = {"15m": now - WINDOW_15M_MS, "today": local_midnight_ms(now, self.site.tz)}
        site_totals = {name: [0.0, 0.0] for name in windows}
        units = []
        counts: dict[State, int] = {"available": 0, "derated": 0, "unavailable": 0, "unknown": 0}
        for unit in self.site.units:
            track = self.units[unit.id]
            pct: dict[str, float | None] = {}
            for name, start in windows.items():
                observed, lost = track.timeline.totals(start, now)
                pct[name] = None if observed == 0 else 100.0 * (1.0 - lost / observed)
                site_totals[name][0] += unit.rated_energy_kwh * observed
                site_totals[name][1] += unit.rated_energy_kwh * lost
            status = track.effective
            counts[status.state] += 1
            units.append(UnitAvailability(
                id=unit.id, state=status.state, cause=status.cause,
                derate_fraction=status.derate_fraction,
                last_15m_pct=pct["15m"], today_pct=pct["today"]))
        site_pct = {name: None if observed == 0 else 100.0 * (1.0 - lost / observed)
                    for name, (observed, lost) in site_totals.items()}
        self.last_published_ms = now
        return SiteAvailability(
            site_id=self.site.id, name=self.site.name, customer=self.site.customer,
            region=self.site.region, ts_ms=now, last_15m_pct=site_pct["15m"],
            today_pct=site_pct["today"], units_by_state=counts, units=tuple(units))

    def _change(self, asset_id: str, ts_ms: int, status: Status,
                previous: Status | None) -> StatusChange:
        return StatusChange(asset_id=asset_id, site_id=self.site.id, ts_ms=ts_ms,
                            state=status.state, derate_fraction=status.derate_fraction,
                            cause=status.cause,
                            previous_state=previous.state if previous else None)

    def _dead(self, sample: TelemetrySample, reason: str, detail: str) -> DeadLetter:
        return DeadLetter(source="flows.site_availability", reason=reason, detail=detail,
                          ts_ms=sample.ts_ms, key=sample.device_id,
                          payload=sample.model_dump_json())
