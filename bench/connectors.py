"""Connector benchmark (issue 5): one Modbus connector process polling fleet-30's devices —
30 sites × 40 units (2 inverters × 8 DC blocks each: 19 assets a poll), one Modbus TCP
gateway per site, every unit at 1 Hz — served by the simulator in processes of its own
(`--sim-processes`, default 2: one Python process answers ~500–1,200 polls/s on this machine
while it also moves the physics, fewer than fleet-30's 1,200 devices need; a real fleet's
controllers are separate machines).

Measured:
  * the connector's CPU use (user + system, all its threads, from /proc) over a window, the
    simulator's too (it shares this machine's cores), and the samples/s reaching the topic;
  * latency from a register change to the topic: a fault injected over the simulator's HTTP
    control (the unit's status register changes at once) → the first sample of that unit
    carrying the fault code read from the telemetry topic. It includes the wait for the next
    poll (uniform over the 1 s interval, so ~0.5 s on average) — that is what a user sees;
    the part after the poll (sample `ts_ms` → topic) is reported separately.

    .venv/bin/python -m bench.connectors [--sites 30] [--units 40] [--seconds 60] [--changes 40]
                                         [--sim-processes 2] [--connectors 1] [--warmup 15]

With `--connectors N` the device list is polled by N connector processes, each its
`--shard I/N` (whole gateways), as `make up` runs them; the CPU figures are their sum.

Uses KAFKA_BOOTSTRAP_SERVERS when set, else starts a local broker.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import OFFSET_END, Consumer, TopicPartition

from connectors.kafka import ensure_topics
from connectors.modbus.devices import DeviceList, dump_devices, load_devices
from infra.ports import free_port
from infra.services import local_services
from infra.sim.fleetgen import fleet_yaml, generate_fleet
from infra.sim.model import FAULT

TOPIC = "bench.telemetry.raw"
PARTITIONS = 4
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class TopicWatcher(threading.Thread):
    """Reads the telemetry topic from its end: counts samples, and notes when a unit's first
    sample with the fault code arrives."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__(daemon=True)
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-conn",
                                  "enable.auto.commit": False, "fetch.wait.max.ms": 10})
        self.consumer.assign([TopicPartition(TOPIC, p, OFFSET_END) for p in range(PARTITIONS)])
        self.samples = 0
        self.watch: dict[str, float] = {}  # unit id → wall time the change was made
        self.seen: dict[str, tuple[float, float]] = {}  # unit id → (arrived, sample ts)
        self.lock = threading.Lock()
        self.running = True

    def run(self) -> None:
        while self.running:
            for msg in self.consumer.consume(1000, 0.05):
                if msg.error():
                    continue
                arrived = time.time()
                self.samples += 1
                key = (msg.key() or b"").decode()
                with self.lock:
                    if key not in self.watch or key in self.seen:
                        continue
                sample = json.loads(msg.value() or b"{}")
                unit = next((a for a in sample["assets"] if a["id"] == key), None)
                if unit and unit["tags"].get("status_code") == FAULT \
                        and sample["ts_ms"] / 1000 >= self.watch[key] - 1:
                    with self.lock:
                        self.seen[key] = (arrived, sample["ts_ms"] / 1000)
        self.consumer.close()


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=30)
    parser.add_argument("--units", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=60.0, help="CPU window")
    parser.add_argument("--changes", type=int, default=40, help="register changes timed")
    parser.add_argument("--sim-processes", type=int, default=2, help="simulator processes")
    parser.add_argument("--connectors", type=int, default=1,
                        help="connector processes, each polling its shard of the gateways")
    parser.add_argument("--warmup", type=float, default=15.0,
                        help="seconds the connector runs before measuring")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, local_services(
            Path(tmp) / "logs", kafka=os.environ.get("KAFKA_BOOTSTRAP_SERVERS")) as (kafka, _):
        run = Path(tmp)
        fleet_file = run / "fleet.yaml"
        fleet = generate_fleet(args.sites, units_per_site=args.units)
        fleet_file.write_text(fleet_yaml(fleet), encoding="utf-8")
        units = [u["id"] for s in fleet["sites"] for u in s["units"]]  # type: ignore[attr-defined]
        ensure_topics(kafka, [TOPIC], PARTITIONS)
        devices, token = run / "devices.yaml", "bench-token"
        shards = args.sim_processes
        sim_ports = [free_port() for _ in range(shards)]
        sites: list[dict[str, Any]] = fleet["sites"]  # type: ignore[assignment]
        shard_of = {u["id"]: i % shards for i, s in enumerate(sites) for u in s["units"]}
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka, "BESSMON_FLEET_FILE":
               str(fleet_file), "BESSMON_RUN_DIR": str(run), "BESSMON_SIM_TOKEN": token,
               "BESSMON_TOPIC_TELEMETRY": TOPIC, "BESSMON_TOPIC_PARTITIONS": str(PARTITIONS)}
        cli = [sys.executable, "-m", "infra.cli"]
        logs = [(run / f"sim-{i}.log").open("w") for i in range(shards)]
        logs += [(run / f"connector-{i}.log").open("w") for i in range(args.connectors)]
        sims = [subprocess.Popen([*cli, "sim", "--fleet", str(fleet_file), "--devices-out",
                                  str(run / f"devices-{i}.yaml"), "--control-port",
                                  str(sim_ports[i]), "--shard", f"{i}/{shards}",
                                  "--fault-rate", "0"],
                                 env=env, stdout=logs[i], stderr=subprocess.STDOUT)
                for i in range(shards)]
        connectors: list[subprocess.Popen[bytes]] = []
        watcher = TopicWatcher(kafka)
        try:
            deadline = time.monotonic() + 120
            parts = [run / f"devices-{i}.yaml" for i in range(shards)]
            while not all(p.exists() for p in parts):
                if time.monotonic() > deadline or any(p.poll() is not None for p in sims):
                    sys.exit(f"simulator did not start: {(run / 'sim-0.log').read_text()[-2000:]}")
                time.sleep(0.2)
            merged = tuple(d for p in parts for d in load_devices(p).devices)
            devices.write_text(dump_devices(DeviceList(devices=merged)), encoding="utf-8")
            watcher.start()
            connectors = [subprocess.Popen(
                [*cli, "connect", "modbus", "--devices", str(devices),
                 "--shard", f"{i}/{args.connectors}"],
                env=env, stdout=logs[shards + i], stderr=subprocess.STDOUT)
                for i in range(args.connectors)]
            print(f"fleet: {args.sites} sites × {args.units} units = {len(units)} devices "
                  f"at 1 Hz on {args.connectors} connector process(es); warming up "
                  f"{args.warmup:g} s …", flush=True)
            time.sleep(args.warmup)
            for i, connector in enumerate(connectors):
                if connector.poll() is not None:
                    sys.exit(f"connector died: "
                             f"{(run / f'connector-{i}.log').read_text()[-2000:]}")

            def cpu() -> tuple[float, float]:
                return (sum(cpu_seconds(c.pid) for c in connectors),
                        sum(cpu_seconds(p.pid) for p in sims))

            (c0, s0), n0, t0 = cpu(), watcher.samples, time.monotonic()
            time.sleep(args.seconds)
            (c1, s1), n1, t1 = cpu(), watcher.samples, time.monotonic()
            wall = t1 - t0
            rss = sum(rss_mib(c.pid) for c in connectors)
            print(f"connector CPU ({args.connectors} processes): {100 * (c1 - c0) / wall:.0f} % "
                  f"of one core (RSS {rss:.0f} MiB, "
                  f"{(c1 - c0) / max(1, n1 - n0) * 1000:.3f} ms per unit poll); simulator CPU "
                  f"({shards} processes) {100 * (s1 - s0) / wall:.0f} %; samples to the topic "
                  f"{(n1 - n0) / wall:,.0f}/s (expected {len(units)}/s)", flush=True)

            clients = [httpx.Client(base_url=f"http://127.0.0.1:{port}",
                                    headers={"Authorization": f"Bearer {token}"})
                       for port in sim_ports]
            rng = random.Random(1)
            for unit in rng.sample(units, min(args.changes, len(units))):
                time.sleep(rng.uniform(0.3, 0.8))  # not in step with the polls
                with watcher.lock:
                    watcher.watch[unit] = time.time()
                clients[shard_of[unit]].post(
                    "/faults", json={"asset_id": unit, "duration_s": 30}).raise_for_status()
            time.sleep(3)
            watcher.running = False
            total = [watcher.seen[u][0] - watcher.watch[u] for u in watcher.seen]
            after_poll = [watcher.seen[u][0] - watcher.seen[u][1] for u in watcher.seen]
            missing = len(watcher.watch) - len(watcher.seen)
            if not total:
                sys.exit("no register change reached the topic")
            print(f"register change → topic over {len(total)} changes ({missing} not seen): "
                  f"p50 {statistics.median(total) * 1000:.0f} ms, p99 "
                  f"{pct(total, 0.99) * 1000:.0f} ms, max {max(total) * 1000:.0f} ms; "
                  f"after the poll (sample ts → topic): p50 "
                  f"{statistics.median(after_poll) * 1000:.0f} ms, p99 "
                  f"{pct(after_poll, 0.99) * 1000:.0f} ms", flush=True)
            # The last line, for scripts: one JSON object.
            # A unit poll is one sample (one poll group per device in the simulator's map).
            polls = n1 - n0
            print(json.dumps({
                "bench": "connectors", "devices": len(units), "connectors": args.connectors,
                "connector_cpu_pct": round(100 * (c1 - c0) / wall, 1),
                "samples_per_s": round(polls / wall, 1),
                "change_to_topic_ms": {"p50": round(statistics.median(total) * 1000),
                                       "p99": round(pct(total, 0.99) * 1000)},
                "changes_not_seen": missing,
                "polls_per_s": round(polls / wall, 1),
                "expected_polls_per_s": len(units),  # every unit at 1 Hz
                "cpu_ms_per_poll": round((c1 - c0) / polls * 1000, 3) if polls else None,
                "p99_ms": round(pct(total, 0.99) * 1000)}), flush=True)
        finally:
            watcher.running = False
            for proc in (*connectors, *sims):
                if proc is not None:
                    proc.terminate()
                    try:
                        proc.wait(15)
                    except subprocess.TimeoutExpired:
                        proc.kill()
            for log in logs:
                log.close()


if __name__ == "__main__":
    main()
