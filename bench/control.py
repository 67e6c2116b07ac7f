"""Control loop benchmark: does it protect, how often does it act without need, how fast.

(a) **Soak**: the example fleet for `--days` simulated days with random faults — the
    simulator's (trips, isolations, HVAC failures, comms drops, derates, maintenance) and
    dangerous conditions (`protection_loss` with a heat leak, a SOC runaway or an overload,
    a few per unit per month) — run twice on the same seed: protected (every unit in mode
    normal) and passive (observed only). A co-simulation, in one process, of the real
    logic: the simulator's physics (infra/sim/model.py), the flows' breach rules
    (flows/breaches.py), the control loop (control/loop.py) and, standing in for the
    connector, its hard limits (contracts/control.py) and setpoint writes applied to the
    model; the watchdog stops a unit whose heartbeat stops (comms drops). Counts: damage
    (target 0 protected), stops, derates, hard-limit trips, and false trips — automatic
    stops of a unit with no fault or condition active in the hour before.
(b) **Latency** over real parts (infra/rig.py: broker, Redis, simulator, Modbus connector,
    control loop, API), `--trials` each, p50/p99 in ms (target: every p99 < 100 ms):
    - `estop_api`: POST /api/v1/control/units/{id}/estop → the connector's read-back done;
    - `breach_to_setpoint`: a critical breach produced on bess.breaches → the stop written
      and read back by the connector;
    - `hard_limit_trip`: the connector's own trip, from the poll that saw the crossing to
      the stop read back.

    .venv/bin/python -m bench.control [--days 30] [--step-s 60] [--trials 200]

The last line is one JSON object with the figures."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connectors.settings import EXAMPLE_CONTROL, EXAMPLE_FLEET, EXAMPLE_MONITORING
from contracts.control import (
    MODE_STOP,
    CommandResult,
    ControlConfig,
    crossed_hard_limit,
    load_control,
    reading_from_assets,
)
from contracts.events import AssetReading, TelemetrySample
from contracts.fleet import Fleet, load_fleet
from contracts.monitoring import load_monitoring
from control.loop import Audit, ControlLoop, Raise, Send
from flows.breaches import BreachEngine
from infra.sim.faults import FaultProcess, FaultRates
from infra.sim.model import (
    FAULT,
    HVAC_FAILURE_DERATE,
    MAINTENANCE,
    Climate,
    Fault,
    Limit,
    UnitModel,
)

DANGERS = (("heat_leak", "soc_runaway"), ("soc_runaway",), ("overload",),
           ("heat_leak", "hvac_failure", "overload"))
WATCHDOG_STEPS = 3  # a unit whose heartbeat has not changed for this many steps stops


@dataclass
class SoakResult:
    mode: str
    damage_s: dict[str, float] = field(default_factory=dict)
    damage_events: int = 0
    stops: int = 0
    derates: int = 0
    hard_limit_trips: int = 0
    watchdog_trips: int = 0
    false_trips: int = 0
    dangers: int = 0
    faults: int = 0
    wall_s: float = 0.0


def soak(days: float, step_s: float, seed: int, protected: bool,
         danger_per_unit_month: float = 3.0) -> SoakResult:
    fleet: Fleet = load_fleet(EXAMPLE_FLEET)
    monitoring = load_monitoring(EXAMPLE_MONITORING)
    base = load_control(EXAMPLE_CONTROL)
    cfg: ControlConfig = base.model_copy(update={
        "default_mode": "normal" if protected else "passive", "sites": {}, "units": {},
        "stale_after_s": 2.5 * step_s, "heartbeat_s": step_s,
        "restart_hold_s": max(base.restart_hold_s, 2 * step_s)})
    loop = ControlLoop(fleet, cfg, monitoring)
    engine = BreachEngine(monitoring, fleet.assets)
    rng = random.Random(seed)
    start_s = dt.datetime(2026, 6, 1, tzinfo=dt.UTC).timestamp()
    models: dict[str, UnitModel] = {}
    for site in fleet.sites:
        climate = Climate(mean_c=rng.uniform(14.0, 26.0), swing_c=rng.uniform(4.0, 8.0))
        for unit in site.units:
            models[unit.id] = UnitModel(unit, random.Random(rng.random()), tz=site.tz,
                                        climate=climate)
    process = FaultProcess(fleet, start_s, FaultRates(), seed=seed)
    danger_rng = random.Random(seed + 1)
    per_s = danger_per_unit_month / (30 * 86_400)
    next_danger = {u: start_s + danger_rng.expovariate(per_s) for u in models}
    comms_down: dict[str, float] = {}
    trouble_until: dict[str, float] = {}  # a fault or condition active on the unit until
    heartbeat: dict[str, tuple[int, float]] = {}  # last value written, when
    kinds = {a.id: a.kind for a in fleet.assets.values()}
    unit_of = {a.id: a.unit_id for a in fleet.assets.values() if a.unit_id}
    out = SoakResult("protected" if protected else "passive")
    started = time.perf_counter()

    def apply(model: UnitModel, tag: str, value: float, now_s: float) -> bool:
        if comms_down.get(model.unit.id, 0.0) > now_s:
            return False
        try:
            model.apply_control(tag, value)
        except KeyError:
            return False
        if tag == "heartbeat":
            heartbeat[model.unit.id] = (int(value), now_s)
        return True

    steps = int(days * 86_400 / step_s)
    for i in range(1, steps + 1):
        now_s = start_s + i * step_s
        now_ms = int(now_s * 1000)
        for event in process.due(now_s):
            unit_id = unit_of[event.asset_id]
            model = models[unit_id]
            out.faults += 1
            trouble_until[unit_id] = max(trouble_until.get(unit_id, 0.0), event.end_s)
            if event.kind in ("inverter_trip", "block_isolation"):
                model.faults[event.asset_id] = Fault(FAULT, event.end_s)
            elif event.kind == "maintenance":
                model.faults[event.asset_id] = Fault(MAINTENANCE, event.end_s)
            elif event.kind == "derate":
                model.limits["derate"] = Limit(event.severity, event.end_s)
            elif event.kind == "hvac_failure":
                model.limits["hvac_failure"] = Limit(HVAC_FAILURE_DERATE, event.end_s)
            elif event.kind == "comms_drop":
                comms_down[unit_id] = event.end_s
        for unit_id, when in next_danger.items():
            if when <= now_s:
                model = models[unit_id]
                end = now_s + danger_rng.uniform(3600, 6 * 3600)
                model.start_condition("protection_loss", end)
                for kind in danger_rng.choice(DANGERS):
                    if kind == "hvac_failure":
                        model.limits["hvac_failure"] = Limit(HVAC_FAILURE_DERATE, end)
                    else:
                        model.start_condition(kind, end)
                trouble_until[unit_id] = max(trouble_until.get(unit_id, 0.0), end)
                out.dangers += 1
                next_danger[unit_id] = end + danger_rng.expovariate(per_s)
        actions = []
        for unit_id, model in models.items():
            # The unit controller's watchdog (armed by the first heartbeat).
            beat = heartbeat.get(unit_id)
            if beat is not None and now_s - beat[1] > WATCHDOG_STEPS * step_s \
                    and model.control_mode != MODE_STOP:
                model.control_mode = MODE_STOP
                out.watchdog_trips += 1
            model.step(now_s, step_s)
            if comms_down.get(unit_id, 0.0) > now_s:
                continue  # nothing read, nothing written
            readings = model.readings(now_s)
            readings[unit_id] = {**readings[unit_id], **model.controls()}
            # The connector: its hard limits on every poll of a unit not passive.
            uc = loop.units[unit_id]
            if loop.mode(uc) != "passive" and model.control_mode != MODE_STOP:
                reading = reading_from_assets(now_ms, unit_id, kinds, readings.items())
                crossed = crossed_hard_limit(cfg.hard_limits, reading)
                if crossed is not None:
                    model.apply_control("active_power_setpoint_kw", 0.0)
                    model.apply_control("control_mode", MODE_STOP)
                    out.hard_limit_trips += 1
                    actions += loop.on_result(CommandResult(
                        command_id=f"hl-{i}-{unit_id}", unit_id=unit_id, kind="estop",
                        by="connector", outcome="written", actor="connector",
                        reason=f"hard limit {crossed.id}", ts_ms=now_ms), now_ms)
                    readings[unit_id] = {**readings[unit_id], **model.controls()}
            sample = TelemetrySample.model_construct(
                device_id=unit_id, ts_ms=now_ms, assets=tuple(
                    AssetReading.model_construct(id=a, tags=dict(t)) for a, t in readings.items()))
            actions += loop.on_sample(sample, now_ms)
            for asset_id, tags in readings.items():
                for b in engine.observe(asset_id, now_ms, tags):  # type: ignore[arg-type]
                    actions += loop.on_breach(b, now_ms)
        actions += loop.tick(now_ms)
        while actions:
            more = []
            for a in actions:
                if isinstance(a, Send):
                    model = models[a.command.unit_id]
                    ok = all(apply(model, w.tag, w.value, now_s) for w in a.command.writes)
                    more += loop.on_result(CommandResult(
                        command_id=a.command.command_id, unit_id=a.command.unit_id,
                        kind="write", by="connector", outcome="written" if ok else "timeout",
                        actor=a.command.actor, reason=a.command.reason, ts_ms=now_ms), now_ms)
                elif isinstance(a, Audit) and a.action == "control.auto.stop":
                    out.stops += 1
                    if trouble_until.get(a.target, 0.0) < now_s - 3600:
                        out.false_trips += 1
                elif isinstance(a, Raise) and a.alert.kind == "control_action" and \
                        a.alert.state == "raised" and "derated" in a.alert.message:
                    out.derates += 1
            actions = more
    for model in models.values():
        for kind, seconds in model.damage.items():
            out.damage_s[kind] = out.damage_s.get(kind, 0.0) + seconds
        out.damage_events += sum(model.damage_events.values())
    out.wall_s = time.perf_counter() - started
    return out


# --- (b) latency over real parts ------------------------------------------------------------


def percentiles(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "p50_ms": None, "p99_ms": None}
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"n": len(values), "p50_ms": round(statistics.median(ordered), 1),
            "p99_ms": round(p99, 1)}


class ResultWatch:
    """Every command result from now on (a reader thread), and the control views."""

    def __init__(self, settings: Any) -> None:
        import threading

        import redis
        from confluent_kafka import Consumer, TopicPartition

        self.settings = settings
        self.redis = redis.Redis.from_url(settings.require_redis())
        self.consumer = Consumer({"bootstrap.servers": settings.require_kafka(),
                                  "group.id": "bench-control", "enable.auto.commit": False,
                                  "fetch.wait.max.ms": 5})
        topic = settings.topic_command_results
        parts = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
        assignment = []
        for p in parts:
            _, high = self.consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            assignment.append(TopicPartition(topic, p, high))
        self.consumer.assign(assignment)
        self.results: list[CommandResult] = []
        self.lock = threading.Condition()
        self.stopping = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while not self.stopping:
            for m in self.consumer.consume(100, timeout=0.05):
                if m.error() is None:
                    r = CommandResult.model_validate_json(m.value() or b"")
                    with self.lock:
                        self.results.append(r)
                        self.lock.notify_all()

    def _wait(self, match: Any, timeout_s: float = 10.0) -> CommandResult | None:
        deadline = time.monotonic() + timeout_s
        with self.lock:
            while True:
                for r in self.results:
                    if match(r):
                        self.results.remove(r)
                        return r
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.lock.wait(left)

    def result(self, command_id: str, by: str) -> CommandResult | None:
        return self._wait(lambda r: r.command_id == command_id and r.by == by)

    def result_with(self, text: str, by: str) -> CommandResult | None:
        return self._wait(lambda r: text in r.reason and r.by == by)

    def trip(self, unit_id: str) -> CommandResult | None:
        return self._wait(lambda r: r.unit_id == unit_id and r.actor == "connector"
                          and r.kind == "estop")

    def rearm(self, unit_id: str) -> None:
        """The unit running again (auto mode), written through its connector."""
        from connectors.kafka import CheckedProducer
        from contracts.control import MODE_AUTO, MODE_TAG, ControlCommand, DeviceWrite

        command = ControlCommand(command_id=f"rearm-{time.time_ns()}", unit_id=unit_id,
                                 kind="write", actor="bench", reason="re-arm",
                                 ts_ms=int(time.time() * 1000),
                                 writes=(DeviceWrite(tag=MODE_TAG, value=MODE_AUTO),))
        producer = CheckedProducer(self.settings.require_kafka())
        producer.produce(self.settings.topic_commands, unit_id,
                         command.model_dump_json().encode())
        producer.flush(10)
        producer.close()
        self.result(command.command_id, by="connector")

    def state(self, unit_id: str) -> str | None:
        from connectors.redis_store import control_key
        from contracts.control import UnitControlView

        site = unit_id.rsplit("-", 1)[0]
        raw = self.redis.hget(control_key(site), unit_id)
        return UnitControlView.model_validate_json(raw).state if raw else None

    def close(self) -> None:
        self.stopping = True
        self.thread.join(5)
        self.consumer.close()
        self.redis.close()


def latencies(trials: int) -> dict[str, Any]:
    import httpx

    from connectors.kafka import CheckedProducer
    from contracts.events import BreachEvent
    from infra.rig import Rig

    run_dir = Path(tempfile.mkdtemp(prefix="bench-control-"))
    rig = Rig.start(run_dir, parts=("connector", "api"))
    estop_unit, hl_unit = "nordvik-u01", "elbe-u01"
    # Breaches round the other protected units: a unit's second stop within a second is
    # not sent again (one poll's many block breaches make one stop).
    breach_units = [f"nordvik-u0{i}" for i in range(2, 7)] + \
        [f"elbe-u0{i}" for i in range(2, 6)]
    watch = ResultWatch(rig.settings)
    out: dict[str, Any] = {}
    try:
        # The connector's own hard-limit trip, before the control loop runs (it would
        # latch the unit and stop it again, in the way of the next trial; and its
        # heartbeat would arm the unit's watchdog).
        trips = []
        for _ in range(trials):
            rig.sim("POST", "/values", {"asset_id": f"{hl_unit}-i1-b1",
                                        "tag": "cell_temp_max_c", "value": 58.0})
            result = watch.trip(hl_unit)
            rig.sim("DELETE", f"/values/{hl_unit}-i1-b1/cell_temp_max_c")
            if result is not None and result.outcome == "written":
                trips.append(result.latency_ms)
            watch.rearm(hl_unit)
        out["hard_limit_trip"] = percentiles(trips)
        rig.start_part("control", ["control", "run"])
        rig.wait("the control loop", rig.control_alive, 60)
        rig.wait("the units reconciled", lambda: all(
            watch.state(u) == "RUNNING" for u in [estop_unit, *breach_units]), 60)
        # e-stop through the API.
        estop = []
        with httpx.Client(base_url=rig.api_url, timeout=10,
                          headers={"Authorization": f"Bearer {rig.token}"}) as api:
            for i in range(trials):
                t0 = time.time() * 1000
                r = api.post(f"/api/v1/control/units/{estop_unit}/estop",
                             json={"reason": f"bench {i}"})
                r.raise_for_status()
                command_id = r.json()["command_ids"][0]
                result = watch.result(command_id, by="connector")
                if result is not None and result.outcome == "written":
                    estop.append(result.ts_ms - t0)
        out["estop_api"] = percentiles(estop)
        # A critical breach → the stop written.
        producer = CheckedProducer(rig.settings.require_kafka(), **{"linger.ms": 0})
        breach = []
        for i in range(trials):
            unit = breach_units[i % len(breach_units)]
            block = f"{unit}-i1-b1"
            ts = int(time.time() * 1000)
            b = BreachEvent(breach_id=f"bench:critical:{block}:{ts}-{i}", rule_id="bench",
                            kind="limit", asset_id=block, site_id=unit.rsplit("-", 1)[0],
                            tag="cell_temp_max_c", severity="critical", state="raised",
                            raised_ms=ts, ts_ms=ts, value=56.0, threshold=55.0, message="b")
            t0 = time.time() * 1000
            producer.produce(rig.settings.topic_breaches, block, b.model_dump_json().encode())
            result = watch.result_with(b.breach_id, by="connector")
            if result is not None and result.outcome == "written":
                breach.append(result.ts_ms - t0)
            time.sleep(max(0.0, 1.1 / len(breach_units) - (time.time() * 1000 - t0) / 1000))
        producer.flush(10)
        producer.close()
        out["breach_to_setpoint"] = percentiles(breach)
    finally:
        watch.close()
        rig.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--step-s", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--trials", type=int, default=200, help="0: no latency trials")
    args = parser.parse_args()
    started = time.perf_counter()
    with ProcessPoolExecutor(2) as pool:
        runs = [pool.submit(soak, args.days, args.step_s, args.seed, protected)
                for protected in (True, False)]
        protected, passive = (r.result() for r in runs)
    for r in (protected, passive):
        damage = ", ".join(f"{k} {v / 3600:.1f} h" for k, v in sorted(r.damage_s.items())
                           if v) or "none"
        print(f"soak {r.mode}: {args.days:g} days, {r.faults} faults, {r.dangers} dangerous "
              f"conditions; damage {damage} ({r.damage_events} events); {r.stops} stops, "
              f"{r.derates} derates, {r.hard_limit_trips} hard-limit trips, "
              f"{r.watchdog_trips} watchdog trips, {r.false_trips} false trips "
              f"({r.wall_s:.0f} s)", flush=True)
    figures: dict[str, Any] = {
        "bench": "control", "soak_days": args.days, "soak_step_s": args.step_s,
        "faults": protected.faults, "dangerous_conditions": protected.dangers,
        "damage_events": protected.damage_events,
        "damage_s": round(sum(protected.damage_s.values()), 1),
        "passive_damage_events": passive.damage_events,
        "passive_damage_s": round(sum(passive.damage_s.values()), 1),
        "stops": protected.stops, "derates": protected.derates,
        "hard_limit_trips": protected.hard_limit_trips,
        "watchdog_trips": protected.watchdog_trips, "false_trips": protected.false_trips}
    if args.trials > 0:
        lat = latencies(args.trials)
        for name, p in lat.items():
            print(f"{name}: n={p['n']} p50 {p['p50_ms']} ms, p99 {p['p99_ms']} ms", flush=True)
            figures[f"{name}_p50_ms"] = p["p50_ms"]
            figures[f"{name}_p99_ms"] = p["p99_ms"]
            figures[f"{name}_n"] = p["n"]
    figures["wall_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
