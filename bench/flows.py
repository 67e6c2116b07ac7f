"""Flow benchmark (issue 4): fleet-30 telemetry — 30 sites × 40 units × 2 inverters × 8 DC
blocks, one poll per unit per second (19 assets a poll) — pre-loaded into the broker, then:

  * a raw `KafkaSource` → null pass-through, and the full telemetry flow (Kafka in → Redis,
    history and Kafka out), each with 1 worker and with 2 worker processes: asset-samples/s,
    and the flow's ratio to the pass-through;
  * latency at fleet-30's real-time rate: polls produced at 1 Hz into a running flow, each
    site's Redis publish matched to the produce time of the poll it reflects: p50/p99, and
    whether every poll was taken;
  * the same at 10× fleet-30 (300 sites) on 2 worker processes (`scale` in the JSON line).

    .venv/bin/python -m bench.flows [--sites 30] [--units 40] [--seconds 60] [--live 30]
        [--scale-sites 300] [--scale-processes 2] [--scale-live 30]

Uses KAFKA_BOOTSTRAP_SERVERS / REDIS_URL when set, else starts local ones.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import bytewax.operators as op
import orjson
import redis
from bytewax.connectors.kafka import KafkaSource
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.run import cli_main

from connectors.kafka import CheckedProducer, ensure_topics
from connectors.live_log import split
from connectors.settings import EXAMPLE_CONTRACTS, EXAMPLE_MONITORING, Settings
from contracts.contract import fleet_contracts, load_contracts
from contracts.fleet import Fleet
from contracts.monitoring import load_monitoring
from flows.site_state import SiteSettings
from flows.telemetry_flow import build_flow, fewer_collections
from infra.ports import free_port
from infra.services import local_services
from infra.sim.fleetgen import generate_fleet
from infra.sim.record import record

PARTITIONS = 4


class _Count(StatelessSinkPartition[int]):
    def __init__(self) -> None:
        self.n = 0

    def write_batch(self, items: list[int]) -> None:
        self.n += len(items)


class CountSink(DynamicSink[int]):
    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Count:
        return _Count()


def passthrough(settings: Settings) -> Dataflow:
    flow = Dataflow("passthrough")
    raw = op.input("in", flow, KafkaSource([settings.require_kafka()],
                                           [settings.topic_telemetry], tail=False))
    op.output("out", op.map("size", raw, lambda m: len(m.value or b"")),  # type: ignore[union-attr]
              CountSink())  # errors raise in the source (default): only messages come
    return flow


def settings_for(run: str, kafka: str, redis_url: str, tmp: Path) -> Settings:
    return Settings(KAFKA_BOOTSTRAP_SERVERS=kafka, REDIS_URL=redis_url, run_dir=tmp / run,
                    topic_telemetry=f"bench-{run}.telemetry", topic_tickets=f"bench-{run}.t",
                    topic_status=f"bench-{run}.status", topic_availability=f"bench-{run}.av",
                    topic_dlq=f"bench-{run}.dlq", topic_breaches=f"bench-{run}.br",
                    topic_alerts=f"bench-{run}.al", topic_partitions=PARTITIONS)


def fleet_of(sites: int, units: int) -> Fleet:
    return Fleet.model_validate(generate_fleet(sites, units_per_site=units))


def full_flow(settings: Settings, fleet: Fleet, tail: bool) -> Dataflow:
    config = load_monitoring(EXAMPLE_MONITORING)
    contracts = fleet_contracts(load_contracts(EXAMPLE_CONTRACTS), fleet)
    return build_flow(settings, fleet, config, contracts, tail=tail,
                      now_ms=None if not tail else (lambda: int(time.time() * 1000)),
                      site_settings=SiteSettings.of(config), snapshots=False)


# -- one process of a run (spawned by the orchestrator) -----------------------------------

def worker_main(args: argparse.Namespace) -> None:
    s = Settings.model_validate_json(args.settings)
    flow = passthrough(s) if args.run == "passthrough" else full_flow(
        s, fleet_of(args.sites, args.units), tail=False)
    started = time.time()
    with fewer_collections():  # as `bessmon flows` does
        cli_main(flow, process_id=args.process_id,
                 addresses=args.addresses.split(",") if args.addresses else None)
    print(json.dumps({"started": started, "ended": time.time()}))


def run_processes(kind: str, settings: Settings, processes: int, sites: int,
                  units: int) -> float:
    """Wall time of a run over the pre-loaded topic, `processes` worker processes."""
    addresses = ",".join(f"127.0.0.1:{free_port()}" for _ in range(processes)) \
        if processes > 1 else ""
    procs = [subprocess.Popen(
        [sys.executable, "-m", "bench.flows", "--run", kind, "--settings",
         settings.model_dump_json(), "--process-id", str(i), "--addresses", addresses,
         "--sites", str(sites), "--units", str(units)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for i in range(processes)]
    reports = []
    for p in procs:
        out, _ = p.communicate(timeout=3600)
        if p.returncode != 0:
            raise RuntimeError(f"{kind} process failed ({p.returncode})")
        reports.append(json.loads(out.strip().splitlines()[-1]))
    return float(max(r["ended"] for r in reports) - min(r["started"] for r in reports))


# -- the orchestrator ---------------------------------------------------------------------

def preload(settings: Settings, fleet: Fleet, seconds: int) -> tuple[int, int]:
    """`seconds` of 1 Hz polls of every unit into the telemetry topic; (polls, assets)."""
    ensure_topics(settings.require_kafka(), [settings.topic_telemetry], PARTITIONS)
    producer = CheckedProducer(settings.require_kafka())
    start = int(dt.datetime(2026, 10, 12, 8, tzinfo=dt.UTC).timestamp() * 1000)
    polls = assets = 0
    for sample in record(fleet, start, start + seconds * 1000, 1000, seed=1,
                         fault_rate_per_day=5):
        producer.produce(settings.topic_telemetry, sample.device_id,
                         sample.model_dump_json().encode())
        polls += 1
        assets += len(sample.assets)
    producer.flush(120)
    return polls, assets


@dataclass
class Live:
    """A real-time run: seconds from each poll's produce to the Redis publish of its site's
    snapshot (after the warm-up), and whether every poll was taken."""

    latencies: list[float]
    produced: int  # polls produced before the closing second
    taken: int  # of those, polls the sites' last snapshots count
    caught_up_s: float | None  # last produce → the flow idle (None: not within the wait)

    def summary(self) -> dict[str, object]:
        q = statistics.quantiles(self.latencies, n=100) if len(self.latencies) > 1 else None
        return {"p50_ms": round(statistics.median(self.latencies) * 1000) if q else None,
                "p99_ms": round(q[98] * 1000) if q else None,
                "publishes": len(self.latencies), "polls_produced": self.produced,
                "polls_taken": self.taken, "dropped": self.produced - self.taken,
                "caught_up_s": None if self.caught_up_s is None else round(self.caught_up_s, 1)}


def latency(settings: Settings, fleet: Fleet, seconds: int, warmup: int = 20,
            processes: int = 1, drain_s: float = 120) -> Live:
    """Real-time rate: produce every unit's poll each second into a flow of `processes`
    worker processes; seconds from a poll's produce to the Redis publish of a site snapshot
    that includes it — after `warmup` seconds of the same load (the flow's start-up backlog
    is not what is measured).

    The polls are simulated and serialized before the flow starts, and each second's are
    then produced at once: the load generator's own work (simulating 1,200 units a second)
    would otherwise fall inside the measured latency and take CPU from the flow.

    Nothing dropped: after the measured seconds the run waits (up to `drain_s`) until the
    flow is idle — its processes use under 5 % of a core — which is when it has caught up;
    then a closing second is produced, and the snapshot each site publishes for it must
    count every poll produced before. (The snapshots of the measured seconds cannot tell:
    a site publishes at the first poll of a second, and a flow that lags reads the
    partitions of a topic unevenly.) Linux: idleness is read from /proc."""
    ensure_topics(settings.require_kafka(), [settings.topic_telemetry], PARTITIONS)
    total = warmup + seconds + 1  # + the closing second
    started = time.time()
    now_ms = int(started * 1000)
    list(record(fleet, now_ms, now_ms + 1000, 1000, seed=2))  # what simulating a second costs
    per_second = time.time() - started
    t0 = (int(time.time() + 1.5 * per_second * total) + 10 + 5 * processes) * 1000
    by_second: dict[int, list[tuple[str, bytes]]] = {}
    site_of = {u.id: site.id for site in fleet.sites for u in site.units}
    produced_by_site: dict[str, int] = dict.fromkeys(site_of.values(), 0)
    closing_ms = t0 + (total - 1) * 1000
    for sample in record(fleet, t0, t0 + total * 1000, 1000, seed=2):
        by_second.setdefault(sample.ts_ms, []).append(
            (sample.device_id, sample.model_dump_json().encode()))
        if sample.ts_ms < closing_ms:
            produced_by_site[site_of[sample.device_id]] += 1
    client = redis.Redis.from_url(settings.require_redis())
    pubsub = client.pubsub()
    pubsub.psubscribe("bessmon:live:site:*")
    received: list[tuple[float, int]] = []
    last: dict[str, tuple[int, int]] = {}  # site → (ts_ms, polls counted) of its newest snapshot
    stop = threading.Event()

    def listen() -> None:
        while not stop.is_set():
            msg = pubsub.get_message(timeout=0.2)
            if msg and msg["type"] == "pmessage":
                _, payload = split(msg["data"])
                snapshot = orjson.loads(payload)
                received.append((time.time(), snapshot["ts_ms"]))
                last[snapshot["site_id"]] = (snapshot["ts_ms"], snapshot["counts"]["polls"])

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    addresses = ",".join(f"127.0.0.1:{free_port()}" for _ in range(processes)) \
        if processes > 1 else ""
    flow_procs = [subprocess.Popen(
        [sys.executable, "-m", "bench.flows", "--run", "live", "--settings",
         settings.model_dump_json(), "--sites", str(len(fleet.sites)), "--units",
         str(len(fleet.sites[0].units)), "--process-id", str(i), "--addresses", addresses],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(processes)]
    time.sleep(5 * processes)  # let them start
    producer = CheckedProducer(settings.require_kafka())
    produced: dict[int, float] = {}

    def produce(ts_ms: int) -> None:
        produced[ts_ms] = time.time()
        for key, value in by_second[ts_ms]:
            producer.produce(settings.topic_telemetry, key, value)
        producer.flush()

    for ts_ms in sorted(by_second)[:-1]:
        time.sleep(max(0.0, ts_ms / 1000 - time.time()))
        produce(ts_ms)
    last_produced = time.time()
    caught_up_s = None
    busy = _cpu_seconds(flow_procs)
    while time.time() - last_produced < drain_s:
        time.sleep(1)
        before, busy = busy, _cpu_seconds(flow_procs)
        if busy - before < 0.05 * processes:  # idle: the flow has read everything
            caught_up_s = time.time() - 1 - last_produced
            break
    produce(closing_ms)
    waited = time.time()
    while time.time() - waited < 30 and not (len(last) == len(produced_by_site) and all(
            ts >= closing_ms for ts, _ in list(last.values()))):
        time.sleep(0.2)
    time.sleep(1)
    stop.set()
    for p in flow_procs:
        p.terminate()
    for p in flow_procs:
        p.wait(30)
    listener.join()
    pubsub.close()
    client.close()
    measured_from = t0 + warmup * 1000
    taken = sum(min(last.get(site, (0, 0))[1], n) for site, n in produced_by_site.items())
    return Live([at - produced[ts] for at, ts in received
                 if ts in produced and measured_from <= ts < closing_ms],
                sum(produced_by_site.values()), taken, caught_up_s)


def _cpu_seconds(procs: list[subprocess.Popen[bytes]]) -> float:
    """CPU time the processes have used so far (user + system, from /proc)."""
    total = 0
    for p in procs:
        with open(f"/proc/{p.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (after pid, comm)
    return total / os.sysconf("SC_CLK_TCK")


def live_main(args: argparse.Namespace) -> None:
    s = Settings.model_validate_json(args.settings)
    flow = full_flow(s, fleet_of(args.sites, args.units), tail=True)
    with fewer_collections():
        cli_main(flow, process_id=args.process_id,
                 addresses=args.addresses.split(",") if args.addresses else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sites", type=int, default=30)
    parser.add_argument("--units", type=int, default=40)
    parser.add_argument("--seconds", type=int, default=60, help="pre-loaded event time")
    parser.add_argument("--live", type=int, default=30, help="seconds of real-time load")
    parser.add_argument("--scale-sites", type=int, default=300,
                        help="sites of the real-time run at scale (10× fleet-30)")
    parser.add_argument("--scale-processes", type=int, default=2)
    parser.add_argument("--scale-live", type=int, default=30,
                        help="seconds of real-time load at scale (0: no run at scale)")
    parser.add_argument("--run", help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    parser.add_argument("--process-id", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--addresses", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run == "live":
        live_main(args)
        return
    if args.run:
        worker_main(args)
        return

    fleet = fleet_of(args.sites, args.units)
    with tempfile.TemporaryDirectory() as tmp, local_services(
            Path(tmp) / "logs", kafka=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"),
            redis_url=os.environ.get("REDIS_URL")) as (kafka, redis_url):
        base = settings_for(uuid.uuid4().hex[:6], kafka, redis_url, Path(tmp))
        t = time.perf_counter()
        polls, assets = preload(base, fleet, args.seconds)
        print(f"pre-loaded {polls:,} polls = {assets:,} asset-samples "
              f"({args.sites} sites × {args.units} units, {args.seconds} s) in "
              f"{time.perf_counter() - t:.0f} s", flush=True)
        rows = []
        for kind in ("passthrough", "flow"):
            for processes in (1, 2):
                run = uuid.uuid4().hex[:6]
                s = base.model_copy(update={
                    "run_dir": Path(tmp) / run, "topic_status": f"{run}.status",
                    "topic_availability": f"{run}.av", "topic_dlq": f"{run}.dlq",
                    "topic_breaches": f"{run}.br", "topic_alerts": f"{run}.al",
                    "topic_tickets": f"{run}.t"})
                seconds = run_processes(kind, s, processes, args.sites, args.units)
                rows.append((kind, processes, seconds, assets / seconds))
                print(f"  {kind:<12} {processes} process(es): {seconds:6.1f} s, "
                      f"{assets / seconds:>12,.0f} asset-samples/s", flush=True)
        live = latency(base.model_copy(update={"topic_telemetry": f"{base.topic_telemetry}.rt"}),
                       fleet, args.live).summary() if args.live else None
        scale = None
        if args.scale_live:
            print(f"real time at {args.scale_sites} sites on {args.scale_processes} processes "
                  "(simulating the load first) …", flush=True)
            scale = latency(base.model_copy(update={
                "topic_telemetry": f"{base.topic_telemetry}.scale",
                "run_dir": Path(tmp) / "scale"}), fleet_of(args.scale_sites, args.units),
                args.scale_live, processes=args.scale_processes).summary()
            scale = {"sites": args.scale_sites, "processes": args.scale_processes, **scale}

    pass1 = next(r[3] for r in rows if r[0] == "passthrough" and r[1] == 1)
    flow1 = next(r[3] for r in rows if r[0] == "flow" and r[1] == 1)
    print()
    print(f"{'run':<14}{'processes':>10}{'seconds':>10}{'asset-samples/s':>18}"
          f"{'vs pass-through':>17}")
    for kind, processes, seconds, rate in rows:
        ref = next(r[3] for r in rows if r[0] == "passthrough" and r[1] == processes)
        print(f"{kind:<14}{processes:>10}{seconds:>10.1f}{rate:>18,.0f}{rate / ref:>16.0%}")
    flow2 = next(r[3] for r in rows if r[0] == "flow" and r[1] == 2)
    print(f"flow, 2 processes vs 1: {flow2 / flow1:.2f}× (target ≥ 1.5×); "
          f"1 worker: {flow1:,.0f}/s (target ≥ 400,000/s); pass-through {pass1:,.0f}/s")
    if live:
        print(f"latency produce → Redis publish at real-time rate, {live['publishes']:,} "
              f"publishes: p50 {live['p50_ms']} ms, p99 {live['p99_ms']} ms (target p99 < 1 s); "
              f"polls not taken: {live['dropped']}")
    if scale:
        print(f"at {scale['sites']} sites on {scale['processes']} processes: p50 "
              f"{scale['p50_ms']} ms, p99 {scale['p99_ms']} ms (target p99 < 2 s), polls not "
              f"taken: {scale['dropped']} of {scale['polls_produced']:,}, caught up "
              + (f"{scale['caught_up_s']} s after the last produce" if scale["caught_up_s"]
                 is not None else "not within the wait"))
    # The last line, for scripts: one JSON object.
    p50 = live["p50_ms"] if live else None
    p99 = live["p99_ms"] if live else None
    print(json.dumps({
        "bench": "flows", "asset_samples": assets,
        # asset-samples/s and milliseconds (None: no latency run, `--live 0`)
        "flow_1w": round(flow1), "flow_2p": round(flow2), "passthrough_1w": round(pass1),
        "p50_ms": p50, "p99_ms": p99,
        "runs": [{"kind": kind, "processes": processes, "seconds": round(seconds, 3),
                  "asset_samples_per_s": round(rate)} for kind, processes, seconds, rate in rows],
        "latency_ms": {"p50": p50, "p99": p99} if p50 is not None else None,
        # the real-time run at scale (None: `--scale-live 0`)
        "live": live, "scale": scale}))

if __name__ == "__main__":
    main()
