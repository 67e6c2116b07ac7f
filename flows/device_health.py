"""The device-health input of the telemetry flow: the connectors' state changes and poll
figures (`bess.device.health`, contracts/events.py `DeviceHealth` and `DeviceStats`), each
placed at its site and passed on to the hot state (each device's current state and last
window, flows/redis_sink.py) and the history store (every change and window). No state is
kept between records: a record is checked and placed on its own, so the input needs no key.

A record that is no such event — not JSON, the wrong shape, numbers that disagree — or that
names a device the fleet cannot place (no `site_id`, or one of no site, and a device id of no
battery unit) is a dead letter with the reason, source `flows.device_health`."""

from __future__ import annotations

from collections.abc import Callable

from pydantic import ValidationError

from contracts.events import DeadLetter, DeviceHealth, DeviceStats, device_health_event
from contracts.fleet import Fleet
from flows.telemetry import RawRecord

SOURCE = "flows.device_health"
HealthOut = DeviceHealth | DeviceStats | DeadLetter


def health_decoder(fleet: Fleet, now_ms: Callable[[], int] | None
                   ) -> Callable[[RawRecord], HealthOut]:
    """Record → its event, its site filled in, or a dead letter. `now_ms` stamps the dead
    letters of records with no time of their own (0 in replays)."""
    sites = {s.id for s in fleet.sites}
    unit_sites = {a.id: a.site_id for a in fleet.assets.values() if a.kind == "unit"}

    def decode(record: RawRecord) -> HealthOut:
        now = now_ms() if now_ms is not None else 0
        if not record.value:
            return record.dead(SOURCE, "empty", "record has no value", now)
        try:
            event = device_health_event(record.value)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "record"
            return record.dead(SOURCE, "schema",
                               f"{where}: {first['msg']} ({exc.error_count()} problem(s))", now)
        except ValueError as exc:
            return record.dead(SOURCE, "malformed_json", str(exc)[:500], now)
        ts_ms = event.ts_ms if isinstance(event, DeviceHealth) else event.end_ms
        if event.site_id is not None:
            if event.site_id not in sites:
                return record.dead(SOURCE, "unknown_asset",
                                   f"device {event.device_id!r} names site {event.site_id!r}, "
                                   "which is no site of the fleet", ts_ms)
            return event
        site = unit_sites.get(event.device_id)
        if site is None:
            return record.dead(SOURCE, "unknown_asset",
                               f"device {event.device_id!r} names no site and is no battery "
                               "unit of the fleet", ts_ms)
        return event.model_copy(update={"site_id": site})

    return decode
