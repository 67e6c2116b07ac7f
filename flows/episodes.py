"""Unavailability episodes of a site's assets, linked to the tickets open on the asset or its
parents during the episode — "why is this unit down, and who is on it".

A plain, picklable class for a Bytewax stateful step keyed by site: it receives the site's
`StatusChange`s and the tickets routed to the site (`ticket_site`), and emits
`UnavailabilityEpisode`s. Event time only; its clock is the newest status change it has seen.

An episode of an asset opens when its state leaves `available` (derated, unavailable or
unknown) and closes when it returns to `available`; changes between non-available states
extend it. Its `state` is the worst state it went through (unavailable > unknown > derated),
its `cause` the first cause that was not None. Lost hours are capacity-weighted in event time
(`Status.loss`: 1 per hour unavailable or unknown, `1 − derate_fraction` derated); lost MWh are
lost hours × the asset's rated energy (`rated_energy_mwh`). A ticket on an asset covers it and
everything below it, and is linked to an episode when `[opened_ms, resolved_ms or ∞)` overlaps
`[start_ms, end_ms or ∞)`; only a ticket's latest version (by `updated_ms`) counts.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from contracts.events import (
    Cause,
    State,
    StatusChange,
    TicketEvent,
    TicketRef,
    UnavailabilityEpisode,
)
from contracts.fleet import Asset, Fleet
from contracts.status import Status

MS_PER_HOUR = 3_600_000
WORST: dict[State, int] = {"available": 0, "derated": 1, "unknown": 2, "unavailable": 3}
TicketKey = tuple[str, str]  # (provider, ticket_id)


def rated_energy_mwh(assets: dict[str, Asset], asset_id: str) -> float:
    """A unit's and a block's own rated energy; an inverter's is the sum of its blocks', or,
    without blocks, its share of the unit's energy by rated power among the unit's inverters
    (the weighting availability rules §3 uses for inverters)."""
    asset = assets[asset_id]
    if asset.kind == "inverter" and asset.children:
        return sum(rated_energy_mwh(assets, b) for b in asset.children)
    if asset.kind == "inverter" and asset.parent_id is not None:
        unit = assets[asset.parent_id]
        powers = [assets[i].rated_power_kw or 0.0 for i in unit.children]
        return (unit.rated_energy_kwh or 0.0) * (asset.rated_power_kw or 0.0) / sum(powers) / 1e3
    return (asset.rated_energy_kwh or 0.0) / 1e3


def ticket_site(fleet: Fleet, ticket: TicketEvent) -> str | None:
    """The site whose tracker a ticket goes to; None when its asset is missing or unknown to
    the fleet — the caller dead-letters those, the tracker would ignore them."""
    asset = fleet.assets.get(ticket.asset_id) if ticket.asset_id else None
    return asset.site_id if asset else None


def _ticket_end(ticket: TicketEvent) -> int | None:
    """When the ticket stopped being open, None while it is open. A resolved ticket without
    `resolved_ms` counts as resolved at `updated_ms`; a reopened one (status not resolved)
    is open from `opened_ms` on, whatever an earlier resolution said."""
    if ticket.status != "resolved":
        return None
    return ticket.resolved_ms if ticket.resolved_ms is not None else ticket.updated_ms


def _overlaps(ticket: TicketEvent, start_ms: int, end_ms: int | None) -> bool:
    ticket_end = _ticket_end(ticket)
    return ((end_ms is None or ticket.opened_ms < end_ms)
            and (ticket_end is None or start_ms < ticket_end))


def _ref(ticket: TicketEvent) -> TicketRef:
    return TicketRef(provider=ticket.provider, ticket_id=ticket.ticket_id,
                     status=ticket.status, summary=ticket.summary, url=ticket.url)


@dataclass
class _Episode:
    asset_id: str
    start_ms: int
    state: State  # the worst so far
    cause: Cause | None  # the first not None
    loss: float  # the current rate, per unit of time
    since_ms: int  # lost time accounted up to here
    lost_ms: float = 0.0  # capacity-weighted milliseconds up to since_ms
    end_ms: int | None = None
    tickets: dict[TicketKey, TicketEvent] = field(default_factory=dict)

    def account(self, to_ms: int) -> None:
        if to_ms > self.since_ms:
            self.lost_ms += self.loss * (to_ms - self.since_ms)
            self.since_ms = to_ms

    def lost_hours_at(self, as_of_ms: int) -> float:
        return (self.lost_ms + self.loss * max(0, as_of_ms - self.since_ms)) / MS_PER_HOUR


def _worsen(episode: _Episode, change: StatusChange) -> bool:
    """Take the worse state and the first cause; True if either changed."""
    changed = False
    if WORST[change.state] > WORST[episode.state]:
        episode.state = change.state
        changed = True
    if episode.cause is None and change.cause is not None:
        episode.cause = change.cause
        changed = True
    return changed


class EpisodeTracker:
    """The episodes of one site's assets and the tickets that concern them.

    Emits an episode when it opens (end None), when its worst state or cause changes, when its
    linked tickets change (a link added or dropped, or a linked ticket's reference — status,
    summary, url — changed), and when it closes (final numbers). An open episode's lost hours
    are reported up to the tracker's clock.

    Closed episodes are kept for `keep_closed_ms` of event time after their end, so that a
    ticket arriving late still links to them (and they are re-emitted); resolved tickets are
    forgotten once resolved before that horizon (episodes keep their own copy of the tickets
    linked to them). Status changes for assets outside the site are ignored, and so is a
    change older than the asset's last one (the status stream is ordered per asset).
    Leaving `available` in the very millisecond it was reached continues the episode.

    Only the site's own slice of the fleet is kept, so a snapshot of the state stays small."""

    def __init__(self, fleet: Fleet, site_id: str, *,
                 keep_closed_ms: int = 7 * 24 * MS_PER_HOUR) -> None:
        every = fleet.assets
        assets = {a.id: a for a in every.values() if a.site_id == site_id}
        if site_id not in assets:
            raise KeyError(site_id)

        def line(asset_id: str) -> tuple[str, ...]:
            parent = assets[asset_id].parent_id
            return (asset_id,) if parent is None else (asset_id, *line(parent))

        def below(asset_id: str) -> tuple[str, ...]:
            return (asset_id, *(d for c in assets[asset_id].children for d in below(c)))

        self.site_id = site_id
        self.assets = set(assets)
        self.lineage = {a: line(a) for a in assets}  # asset, its parent, …, the site
        self.subtree = {a: below(a) for a in assets}  # asset and everything below it
        self.energy_mwh = {a: rated_energy_mwh(every, a) for a in assets
                           if assets[a].kind != "site"}
        self.keep_closed_ms = keep_closed_ms
        self.now_ms: int | None = None
        self.last_change_ms: dict[str, int] = {}
        self.open: dict[str, _Episode] = {}
        self.closed: dict[str, deque[_Episode]] = {}  # by asset, oldest first
        self.tickets: dict[TicketKey, TicketEvent] = {}
        self.tickets_by_asset: dict[str, set[TicketKey]] = {}
        self.next_prune_ms = 0

    # -- input ---------------------------------------------------------------------------

    def on_status(self, change: StatusChange) -> list[UnavailabilityEpisode]:
        asset_id, ts = change.asset_id, change.ts_ms
        if asset_id not in self.energy_mwh or ts < self.last_change_ms.get(asset_id, ts):
            return []
        self.last_change_ms[asset_id] = ts
        self.now_ms = ts if self.now_ms is None else max(self.now_ms, ts)
        loss = Status(change.state, change.derate_fraction, change.cause).loss
        episode = self.open.get(asset_id)
        out: list[UnavailabilityEpisode] = []
        if change.state == "available":
            if episode is not None:
                episode.account(ts)
                episode.end_ms = ts
                self._relink_at_close(episode)
                del self.open[asset_id]
                self.closed.setdefault(asset_id, deque()).append(episode)
                out.append(self._emit(episode))
        elif episode is None:
            episode = self._reopened(asset_id, ts) or self._opened(asset_id, ts, change)
            episode.loss = loss
            _worsen(episode, change)
            out.append(self._emit(episode))
        else:
            episode.account(ts)
            episode.loss = loss
            if _worsen(episode, change):
                out.append(self._emit(episode))
        self._prune()
        return out

    def on_ticket(self, ticket: TicketEvent) -> list[UnavailabilityEpisode]:
        """Keep the ticket's latest version and re-emit the episodes whose links it changes.
        Tickets without an asset of this site, and versions older than the one kept, give
        nothing (route with `ticket_site`, which sends the former to the dead letters)."""
        if ticket.asset_id is None or ticket.asset_id not in self.assets:
            return []
        key = (ticket.provider, ticket.ticket_id)
        previous = self.tickets.get(key)
        if previous is not None and ticket.updated_ms < previous.updated_ms:
            return []
        self.tickets[key] = ticket
        self.tickets_by_asset.setdefault(ticket.asset_id, set()).add(key)
        scope = list(self.subtree[ticket.asset_id])
        if previous is not None and previous.asset_id != ticket.asset_id:
            assert previous.asset_id is not None
            self.tickets_by_asset[previous.asset_id].discard(key)
            covered = set(scope)
            scope += [a for a in self.subtree[previous.asset_id] if a not in covered]
        covers = set(self.subtree[ticket.asset_id])
        out = []
        for asset_id in scope:
            for episode in self._episodes_of(asset_id):
                linked = episode.tickets.get(key)
                if asset_id in covers and _overlaps(ticket, episode.start_ms, episode.end_ms):
                    episode.tickets[key] = ticket
                    if linked is None or _ref(linked) != _ref(ticket):
                        out.append(self._emit(episode))
                elif linked is not None:
                    del episode.tickets[key]
                    out.append(self._emit(episode))
        self._prune()
        return out

    def open_episodes(self, now_ms: int | None = None) -> list[UnavailabilityEpisode]:
        """The episodes still open, lost hours counted up to `now_ms` (the caller's event
        time) or the tracker's clock, whichever is later; by asset id."""
        return [self._emit(self.open[a], now_ms) for a in sorted(self.open)]

    # -- state ---------------------------------------------------------------------------

    def _opened(self, asset_id: str, ts: int, change: StatusChange) -> _Episode:
        episode = _Episode(asset_id, ts, change.state, change.cause, 0.0, ts)
        for ancestor in self.lineage[asset_id]:
            for key in self.tickets_by_asset.get(ancestor, ()):
                ticket = self.tickets[key]
                if _overlaps(ticket, ts, None):
                    episode.tickets[key] = ticket
        self.open[asset_id] = episode
        return episode

    def _reopened(self, asset_id: str, ts: int) -> _Episode | None:
        """Available for no time at all (closed and left again in one millisecond) does not
        end the episode: reopening it also keeps ids unique."""
        closed = self.closed.get(asset_id)
        if not closed or closed[-1].end_ms != ts:
            return None
        episode = closed.pop()
        episode.end_ms = None
        for ancestor in self.lineage[asset_id]:
            for key in self.tickets_by_asset.get(ancestor, ()):
                if _overlaps(self.tickets[key], episode.start_ms, None):
                    episode.tickets[key] = self.tickets[key]
        self.open[asset_id] = episode
        return episode

    def _relink_at_close(self, episode: _Episode) -> None:
        """A ticket opened at or after the end (linked while the end was open) drops out."""
        for key, ticket in list(episode.tickets.items()):
            if not _overlaps(ticket, episode.start_ms, episode.end_ms):
                del episode.tickets[key]

    def _episodes_of(self, asset_id: str) -> Iterable[_Episode]:
        yield from self.closed.get(asset_id, ())
        if asset_id in self.open:
            yield self.open[asset_id]

    def _prune(self) -> None:
        """Every 10 minutes of event time, forget closed episodes and resolved tickets that
        ended before the horizon."""
        if self.now_ms is None or self.now_ms < self.next_prune_ms:
            return
        self.next_prune_ms = self.now_ms + 600_000
        horizon = self.now_ms - self.keep_closed_ms
        for asset_id in list(self.closed):
            episodes = self.closed[asset_id]
            while episodes and (episodes[0].end_ms or 0) < horizon:
                episodes.popleft()
            if not episodes:
                del self.closed[asset_id]
        for key, ticket in list(self.tickets.items()):
            end = _ticket_end(ticket)
            if end is not None and end < horizon:
                del self.tickets[key]
                assert ticket.asset_id is not None
                self.tickets_by_asset[ticket.asset_id].discard(key)

    # -- output --------------------------------------------------------------------------

    def _emit(self, episode: _Episode, now_ms: int | None = None) -> UnavailabilityEpisode:
        if episode.end_ms is not None:
            lost_hours = episode.lost_ms / MS_PER_HOUR
        else:
            lost_hours = episode.lost_hours_at(max(self.now_ms or 0, now_ms or 0))
        refs = sorted(episode.tickets.values(),
                      key=lambda t: (t.opened_ms, t.provider, t.ticket_id))
        return UnavailabilityEpisode(
            episode_id=f"{episode.asset_id}:{episode.start_ms}", asset_id=episode.asset_id,
            site_id=self.site_id, start_ms=episode.start_ms, end_ms=episode.end_ms,
            state=episode.state, cause=episode.cause, lost_hours=lost_hours,
            lost_mwh=lost_hours * self.energy_mwh[episode.asset_id],
            tickets=tuple(_ref(t) for t in refs))
