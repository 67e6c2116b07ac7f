"""WebSocket fan-out benchmark (issue 6): N concurrent authenticated clients of one API
process, half on the `fleet` channel and half on one `site:<id>` each, while fleet-30's
sites publish a snapshot every second each (what the flows do at fleet-30's real-time rate:
30 snapshots/s, each with 40 units, to `site:<id>` and `fleet`).

The clients behave like dashboards: each parses every frame in full, asks for batched
updates (one message per tick, `--no-batch` for one per update), checks its sequence numbers
for gaps (an update coalesced away or lost) and counts a close by the server (a client too
slow to keep up) instead of dropping out silently.

Measured: delivery latency (the snapshot's publish time, carried in its `ts_ms`, → the
client has parsed it) p50 / p99 / max over every update received; updates received vs
expected (`delivered_ratio`), gaps and disconnects; the API processes' RSS and CPU, also per
1,000 clients. The clients run in processes of their own (asyncio, `websockets`), on the
same 2 cores as the API and Redis — an upper bound of what the API costs, not a separate
load generator's view.

    .venv/bin/python -m bench.ws_fanout [--clients 1000] [--seconds 30] [--fleet-share 0.5]
        [--api-processes 1] [--client-processes 1] [--no-batch]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import orjson
import redis
import websockets

from api.auth.tokens import TokenIssuer
from api.auth.users import add_user
from bench.connectors import cpu_seconds, rss_mib
from connectors.live_log import publish_site
from connectors.redis_store import site_key
from connectors.settings import REPO_ROOT, Settings
from contracts.events import SiteAvailability, UnitAvailability
from infra.ports import free_port
from infra.services import start_redis
from infra.sim.fleetgen import fleet_yaml, generate_fleet

DRAIN_S = 5.0  # the clients listen this much longer than the publishing lasts
CONNECT_ATTEMPTS = 4


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


def site_snapshot(site: dict[str, object], now_ms: int, rng: random.Random) -> str:
    units = [UnitAvailability(id=u["id"], state="available", cause=None,  # type: ignore[index]
                              derate_fraction=None, last_hour_pct=100.0 - rng.random(),
                              today_pct=99.5) for u in site["units"]]  # type: ignore[attr-defined]
    return SiteAvailability(
        site_id=str(site["id"]), customer=str(site["customer"]), region=str(site["region"]),
        ts_ms=now_ms, windows={"last_hour": 99.0, "today": 99.5},
        units_by_state={"available": len(units), "derated": 0, "unavailable": 0,
                        "unknown": 0}, units=tuple(units)).model_dump_json()


async def client(url: str, token: str, channel: str, batch: bool, tally: Tally,
                 ready: asyncio.Event) -> None:
    """One dashboard, until cancelled: every frame parsed in full, as a browser does; its
    updates' seqs checked for gaps (a coalesced or lost update); a close by the server
    counted. Its connection is tried again, as the dashboard's is, when a server too busy
    with the others' snapshots closed it before answering (counted)."""
    for attempt in range(CONNECT_ATTEMPTS):
        try:
            ws = await websockets.connect(url, open_timeout=120, max_queue=None)
            break
        except (websockets.InvalidMessage, OSError):
            if attempt == CONNECT_ATTEMPTS - 1:
                raise
            tally.connect_retries += 1
            await asyncio.sleep(1.0 + attempt)
    async with ws:
        await ws.send(json.dumps({"type": "auth", "token": token, "batch": batch}))
        assert json.loads(await ws.recv())["type"] == "ready"
        await ws.send(json.dumps({"type": "subscribe", "channel": channel}))
        first = json.loads(await ws.recv())
        assert first["type"] == "snapshot", first
        last_seq = int(first["seq"])
        tally.subscribed += 1
        if tally.subscribed == tally.clients:
            ready.set()
        while True:
            try:
                raw = await ws.recv()
            except websockets.ConnectionClosed as closed:
                tally.disconnected += 1
                tally.close_codes.append(closed.rcvd.code if closed.rcvd else 1006)
                return
            msg = orjson.loads(raw)  # as fast as a browser's JSON.parse, near enough
            frames = msg["frames"] if msg["type"] == "batch" else [msg]
            now_ms = time.time() * 1000
            for frame in frames:
                if frame["type"] != "update":
                    continue
                seq = int(frame["seq"])
                if seq > last_seq + 1:
                    tally.skipped += seq - last_seq - 1
                last_seq = max(last_seq, seq)
                if ready.is_set():
                    tally.latencies.append(now_ms - frame["data"]["ts_ms"])
                    tally.updates += 1


@dataclass
class Tally:
    clients: int
    subscribed: int = 0
    updates: int = 0  # received once every client had subscribed
    skipped: int = 0  # seqs never received: coalesced away or lost
    disconnected: int = 0  # clients the server closed (too slow, …)
    connect_retries: int = 0  # connections tried again (closed before the handshake)
    close_codes: list[int] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)


def run_clients(url: str, token: str, channels: list[str], seconds: float, batch: bool,
                result_file: Path) -> None:
    async def main() -> None:
        tally = Tally(len(channels))
        ready = asyncio.Event()
        tasks = []
        for i, channel in enumerate(channels):
            tasks.append(asyncio.create_task(client(url, token, channel, batch, tally,
                                                    ready)))
            if i % 50 == 49:  # not a thousand sockets in one instant: 500 a second
                await asyncio.sleep(0.1)
        try:
            await asyncio.wait_for(ready.wait(), 300)
        except TimeoutError:
            failed = [t.exception() for t in tasks if t.done() and t.exception()]
            sys.exit(f"{tally.subscribed} of {len(channels)} clients subscribed; first "
                     f"failure: {failed[0] if failed else 'none'}")
        Path(str(result_file) + ".ready").touch()  # noqa: ASYNC240 (once, before the run)
        start = Path(str(result_file) + ".start")
        while not start.exists():  # noqa: ASYNC240 (every client process starts together)
            await asyncio.sleep(0.05)
        await asyncio.sleep(seconds + DRAIN_S)  # what was published, taken to the end
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        result_file.write_text(json.dumps(asdict(tally)))  # noqa: ASYNC240 (once, at the end)

    asyncio.run(main())


def more_files() -> None:
    """A thousand sockets need more than the usual 1,024 descriptors (the API process, started
    from here, inherits the raised limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65_536)), hard))


def family(pid: int) -> list[int]:
    """A process and its children (the workers of `bessmon api --workers N`)."""
    children = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
                and _ppid(int(p.name)) == pid]
    return [pid, *children]


def _ppid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def main() -> None:
    more_files()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--fleet-share", type=float, default=0.5,
                        help="share of the clients on the fleet channel")
    parser.add_argument("--sites", type=int, default=30)
    parser.add_argument("--units", type=int, default=40)
    parser.add_argument("--api-processes", type=int, default=1,
                        help="API processes sharing the port (bessmon api --workers)")
    parser.add_argument("--client-processes", type=int, default=2,
                        help="processes the clients are dealt out to (default 2: parsing "
                             "every frame, one Python process cannot keep up with 1,000)")
    parser.add_argument("--no-batch", action="store_true",
                        help="clients take one message per update (no batches)")
    parser.add_argument("--run-clients", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_clients:
        url, token, channels, result = args.run_clients
        run_clients(url, token, json.loads(channels), args.seconds, not args.no_batch,
                    Path(result))
        return

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp)
        service = start_redis(run / "logs")
        redis_url = service.address
        fleet = generate_fleet(args.sites, units_per_site=args.units)
        sites: list[dict[str, object]] = fleet["sites"]  # type: ignore[assignment]
        (run / "fleet.yaml").write_text(fleet_yaml(fleet), encoding="utf-8")
        settings = Settings(REDIS_URL=redis_url, run_dir=run, fleet_file=run / "fleet.yaml")
        add_user(settings.users_path, "noc", "bench-password-1", "viewer", ["*"], ["*"])
        from api.auth.users import UserDirectory

        user = UserDirectory(settings.users_path).get("noc")
        assert user is not None
        token, _ = TokenIssuer(settings.jwt_key_path, 86_400).issue(user.principal())
        client_redis = redis.Redis.from_url(redis_url)
        rng = random.Random(1)
        now = int(time.time() * 1000)
        for site in sites:
            client_redis.set(site_key(str(site["id"])), site_snapshot(site, now, rng))
        port = free_port()
        env = {**os.environ, "REDIS_URL": redis_url, "BESSMON_RUN_DIR": str(run),
               "BESSMON_FLEET_FILE": str(run / "fleet.yaml"),
               "BESSMON_RATE_LIMIT_PER_MINUTE": "1000000"}
        api_log = (run / "api.log").open("w")
        api = subprocess.Popen([sys.executable, "-m", "infra.cli", "api", "--host",
                                "127.0.0.1", "--port", str(port), "--workers",
                                str(args.api_processes)], env=env, cwd=REPO_ROOT,
                               stdout=api_log, stderr=subprocess.STDOUT)
        clients: list[subprocess.Popen[bytes]] = []
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/api/v1/health").status_code == 200 \
                            and len(family(api.pid)) > args.api_processes - (
                                args.api_processes == 1):
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or api.poll() is not None:
                    sys.exit("the API did not start:\n" + (run / "api.log").read_text()[-3000:])
                time.sleep(0.2)
            n_fleet = round(args.clients * args.fleet_share)
            channels = ["fleet"] * n_fleet + [f"site:{sites[i % len(sites)]['id']}"
                                              for i in range(args.clients - n_fleet)]
            n_proc = max(1, args.client_processes)
            results = [run / f"clients-{k}.json" for k in range(n_proc)]
            pids = family(api.pid)
            rss_idle = sum(rss_mib(p) for p in pids)
            print(f"{args.clients} clients ({n_fleet} on fleet, {args.clients - n_fleet} on "
                  f"one site each; {'no batches' if args.no_batch else 'batches'}) in {n_proc} "
                  f"process(es), {args.api_processes} API process(es), connecting …",
                  flush=True)
            for k in range(n_proc):
                clients.append(subprocess.Popen(
                    [sys.executable, "-m", "bench.ws_fanout", "--seconds", str(args.seconds),
                     *(["--no-batch"] if args.no_batch else []), "--run-clients",
                     f"ws://127.0.0.1:{port}/api/v1/ws", token, json.dumps(channels[k::n_proc]),
                     str(results[k])], cwd=REPO_ROOT))
            for k, proc in enumerate(clients):
                while not Path(str(results[k]) + ".ready").exists():
                    if proc.poll() is not None:
                        sys.exit("the clients failed to connect; the API's log ends:\n"
                                 + (run / "api.log").read_text()[-3000:])
                    time.sleep(0.2)
            rss_connected = sum(rss_mib(p) for p in pids)
            print(f"all subscribed; API RSS {rss_connected:.0f} MiB (idle {rss_idle:.0f} MiB); "
                  f"publishing {len(sites)} snapshots/s for {args.seconds:.0f} s …",
                  flush=True)
            for k in range(n_proc):
                Path(str(results[k]) + ".start").touch()
            c0, t0 = sum(cpu_seconds(p) for p in pids), time.monotonic()
            published = 0
            tick = time.monotonic()
            while time.monotonic() - t0 < args.seconds - 1:
                for k, site in enumerate(sites):  # spread over the second, as the flows do
                    payload = site_snapshot(site, int(time.time() * 1000), rng)
                    pipe = client_redis.pipeline(transaction=False)
                    publish_site(pipe, str(site["id"]), payload)
                    pipe.execute()
                    published += 1
                    time.sleep(max(0.0, tick + (k + 1) / len(sites) - time.monotonic()))
                tick += 1.0
            cpu = (sum(cpu_seconds(p) for p in pids) - c0) / (time.monotonic() - t0)
            rss_end = sum(rss_mib(p) for p in pids)
            for proc in clients:
                proc.wait(120 + DRAIN_S)
            tallies = [json.loads(r.read_text()) for r in results]
            lat = [x for t in tallies for x in t["latencies"]]
            updates = sum(t["updates"] for t in tallies)
            skipped = sum(t["skipped"] for t in tallies)
            disconnected = sum(t["disconnected"] for t in tallies)
            retries = sum(t["connect_retries"] for t in tallies)
            codes = sorted({c for t in tallies for c in t["close_codes"]})
            expected = published // len(sites) * (n_fleet * len(sites)
                                                  + (args.clients - n_fleet))
            ratio = updates / expected if expected else 0.0
            per_k = 1000 / args.clients
            print(f"updates received {updates:,} of ~{expected:,} published to subscribers "
                  f"({100 * ratio:.1f} %); {skipped:,} skipped (coalesced or lost); "
                  f"{disconnected} clients disconnected by the server"
                  f"{f' {codes}' if codes else ''}; {retries} connections tried again; API CPU "
                  f"{100 * cpu:.0f} % of one core ({100 * cpu * per_k:.0f} % per 1,000 "
                  f"clients); API RSS at the end {rss_end:.0f} MiB "
                  f"({(rss_end - rss_idle) * per_k:.0f} MiB per 1,000 clients over idle)",
                  flush=True)
            if lat:
                print(f"delivery latency (publish → client parsed): p50 "
                      f"{statistics.median(lat):.0f} ms, p99 {pct(lat, 0.99):.0f} ms, max "
                      f"{max(lat):.0f} ms", flush=True)
            # The last line, for scripts: one JSON object.
            print(json.dumps({
                "bench": "ws_fanout", "clients": args.clients,
                "api_processes": args.api_processes, "batch": not args.no_batch,
                "p50_ms": round(statistics.median(lat)) if lat else None,
                "p99_ms": round(pct(lat, 0.99)) if lat else None,
                "delivered_ratio": round(ratio, 4), "updates": updates, "expected": expected,
                "skipped": skipped, "disconnected": disconnected, "connect_retries": retries,
                "api_cpu_pct": round(100 * cpu, 1), "api_rss_mib": round(rss_end),
                "api_cpu_pct_per_1000_clients": round(100 * cpu * per_k, 1),
                "api_rss_mib_per_1000_clients": round((rss_end - rss_idle) * per_k, 1)}),
                flush=True)
        finally:
            for proc in clients:
                if proc.poll() is None:
                    proc.kill()
            api.terminate()
            api.wait(30)
            service.stop()


if __name__ == "__main__":
    main()
