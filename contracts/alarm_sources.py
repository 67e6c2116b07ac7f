"""Alarms besides limit and trend breaches: an asset's status and the early-warning alerts.

A limit or trend breach is an alarm from the start (flows/breaches.py). These conditions
become alarms in the same lifecycle (contracts/alarms.py: active-unacknowledged →
acknowledged → cleared), through the same event (`BreachEvent` on `bess.breaches`, the
alarm hashes in Redis), so that they are listed, acknowledged, shelved and notified like
any breach:

- **Status** (`kind="status"`): an asset unavailable, derated or silent (comms loss). One
  alarm per condition — the asset's state and cause — raised when the condition starts,
  cleared when it ends; a new condition (a fault becoming comms loss) clears the old alarm
  and raises its own. A derate's changing fraction is the same condition. The severity is
  configuration by asset level and cause (`alarms.status` in the monitoring file, see
  `AlarmsConfig`); a condition configured `off` (or not listed) raises none.
- **Alerts** (`kind="alert"`): a site's warning level (watch, LD risk), data quality
  (gaps, frozen values, clock skew, refused records), data instability and the control
  loop's actions and failed commands. Each alert raised is an alarm raised, its clearing
  the alarm's clearing; its severity the alert's own unless `alarms.alerts` says otherwise.
  Alerts about bessmon itself (a sink that cannot write) stay alerts.

Ids keep the breach form `rule:severity:asset:raised_ms`, so the API finds an alarm's site
from its id whatever raised it; rule ids are `status.<state>` and `alert.<kind>`.

Pure: the caller feeds statuses and alerts in event time; the state (the current condition
per asset) is small and picklable."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from contracts.events import Alert, BreachEvent, Cause, Severity, State
from contracts.fleet import Asset
from contracts.monitoring import AlarmsConfig
from contracts.status import Status

STATUS_RULE = "status."
ALERT_RULE = "alert."


@dataclass(frozen=True, slots=True)
class Condition:
    """What an asset's status alarm is about: its state and cause (not the derate
    fraction, which moves with every poll of a derated unit)."""

    state: State
    cause: Cause | None


def status_severity(config: AlarmsConfig, asset_kind: str, state: State,
                    cause: Cause | None) -> Severity | None:
    """The severity of an asset of `asset_kind` being in `state` for `cause`: the cause's
    entry first, then the state's; None when neither is configured or it is `off`."""
    if state == "available":
        return None
    table = config.status.get(asset_kind)  # type: ignore[call-overload]
    if not table:
        return None
    value = table.get(cause) if cause is not None else None
    if value is None:
        value = table.get(state)
    return None if value is None or value == "off" else value


def _pct(x: float) -> str:
    return f"{x * 100:.0f} %"


def status_message(asset_id: str, status: Status) -> str:
    cause = f" ({status.cause.replace('_', ' ')})" if status.cause else ""
    if status.state == "derated":
        left = "" if status.derate_fraction is None \
            else f" to {_pct(status.derate_fraction)} of its capacity"
        return f"{asset_id} derated{left}{cause}"
    if status.state == "unknown":
        return f"{asset_id} not reporting{cause}"
    return f"{asset_id} {status.state}{cause}"


class StatusAlarms:
    """The status alarms of a set of assets (a site's, in the flows)."""

    def __init__(self, config: AlarmsConfig, assets: Mapping[str, Asset]) -> None:
        self.config = config
        self.kinds = {a.id: (a.kind, a.site_id) for a in assets.values()}
        self.active: dict[str, tuple[Condition, BreachEvent | None]] = {}  # by asset

    def condition(self, asset_id: str) -> Condition | None:
        known = self.active.get(asset_id)
        return None if known is None else known[0]

    def observe(self, asset_id: str, ts_ms: int, status: Status) -> list[BreachEvent]:
        """The alarms cleared and raised by the asset's status at `ts_ms` (none when its
        condition did not change). Time only moves forward per asset: an older status
        than the active alarm's is ignored."""
        known = self.kinds.get(asset_id)
        if known is None:
            return []
        condition = Condition(status.state, status.cause)
        before = self.active.get(asset_id)
        if before is not None and before[0] == condition:
            return []
        if before is not None and before[1] is not None and ts_ms < before[1].ts_ms:
            return []
        out: list[BreachEvent] = []
        if before is not None and before[1] is not None:
            raised = before[1]
            out.append(raised.model_copy(update={
                "state": "cleared", "ts_ms": ts_ms, "value": _available(status),
                "message": f"{raised.message}: cleared, now {status_message(asset_id, status)}"
                           [:1000]}))
        kind, site_id = known
        severity = status_severity(self.config, kind, status.state, status.cause)
        event = None
        if severity is not None:
            rule_id = f"{STATUS_RULE}{status.state}"
            event = BreachEvent(
                breach_id=f"{rule_id}:{severity}:{asset_id}:{ts_ms}", rule_id=rule_id,
                kind="status", asset_id=asset_id, site_id=site_id, tag="status",
                severity=severity, state="raised", raised_ms=ts_ms, ts_ms=ts_ms,
                value=_available(status), threshold=1.0,
                message=status_message(asset_id, status))
            out.append(event)
        if status.state == "available" and event is None:
            self.active.pop(asset_id, None)
        else:
            self.active[asset_id] = (condition, event)
        return out

    def raised(self) -> list[BreachEvent]:
        """The status alarms active now."""
        return [e for _, e in self.active.values() if e is not None]


def _available(status: Status) -> float:
    """The share of its capacity the asset offers: the alarm event's value."""
    if status.state == "available":
        return 1.0
    if status.state == "derated" and status.derate_fraction is not None:
        return status.derate_fraction
    return 0.0


def alert_alarm(config: AlarmsConfig, alert: Alert) -> BreachEvent | None:
    """The alarm event of an alert (raised or cleared alike), or None when that kind of
    alert is no alarm (configured `off`, about bessmon itself, or of no site)."""
    if alert.site_id is None:
        return None
    severity = config.alert_severity(alert.kind, alert.severity)
    if severity is None:
        return None
    rule_id = f"{ALERT_RULE}{alert.kind}"
    value = next((float(v) for v in alert.details.values()
                  if isinstance(v, int | float) and not isinstance(v, bool)
                  and math.isfinite(v)), 0.0)
    return BreachEvent(
        breach_id=f"{rule_id}:{severity}:{alert.scope_id}:{alert.raised_ms}",
        rule_id=rule_id, kind="alert", asset_id=alert.scope_id, site_id=alert.site_id,
        tag=alert.kind, severity=severity, state=alert.state, raised_ms=alert.raised_ms,
        ts_ms=alert.ts_ms, value=value, threshold=0.0,
        message=alert.message)


def alert_alarms(config: AlarmsConfig, items: Iterable[object]) -> list[BreachEvent]:
    """The alarm events of the alerts among `items`."""
    return [e for item in items if isinstance(item, Alert)
            and (e := alert_alarm(config, item)) is not None]
