"""WebSocket fan-out benchmark (issue 6): N concurrent authenticated clients of one API
process, half on the `fleet` channel and half on one `site:<id>` each, while fleet-30's
sites publish a snapshot every second each (what the flows do at fleet-30's real-time rate:
30 snapshots/s, each with 40 units, to `site:<id>` and `fleet`).

Measured: delivery latency (the snapshot's publish time, carried in its `ts_ms`, → the
client has parsed it) p50 / p99 / max over every update received; updates received vs
expected; the API process's RSS and CPU. The clients run in a process of their own (asyncio,
`websockets`), on the same 2 cores as the API and Redis — an upper bound of what one
API process costs, not a separate load generator's view.

    .venv/bin/python -m bench.ws_fanout [--clients 1000] [--seconds 30] [--fleet-share 0.5]
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
from pathlib import Path

import httpx
import redis
import websockets

from api.auth.tokens import TokenIssuer
from api.auth.users import add_user
from bench.connectors import cpu_seconds, rss_mib
from connectors.live_log import publish
from connectors.redis_store import site_key
from connectors.settings import REPO_ROOT, Settings
from contracts.events import SiteAvailability, UnitAvailability
from infra.ports import free_port
from infra.services import start_redis
from infra.sim.fleetgen import fleet_yaml, generate_fleet


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


async def client(url: str, token: str, channel: str, latencies: list[float],
                 counts: list[int], ready: asyncio.Event, stop: asyncio.Event) -> None:
    async with websockets.connect(url, open_timeout=60, max_queue=None) as ws:
        await ws.send(json.dumps({"type": "auth", "token": token}))
        assert json.loads(await ws.recv())["type"] == "ready"
        await ws.send(json.dumps({"type": "subscribe", "channel": channel}))
        assert json.loads(await ws.recv())["type"] == "snapshot"
        counts[1] += 1
        if counts[1] == counts[2]:
            ready.set()
        while not stop.is_set():
            try:
                raw = await asyncio.wait_for(ws.recv(), 1.0)
            except TimeoutError:
                continue
            # One load generator for a thousand clients: read the snapshot's time without
            # parsing all of it (the data's first "ts_ms", its own).
            text = raw if isinstance(raw, str) else raw.decode()
            if text.startswith('{"type":"update"') and ready.is_set():
                at = text.index('"ts_ms":', text.index('"data":')) + 8
                end = text.index(",", at)
                latencies.append(time.time() * 1000 - int(text[at:end]))
                counts[0] += 1


def run_clients(url: str, token: str, channels: list[str], seconds: float,
                result_file: Path) -> None:
    async def main() -> None:
        latencies: list[float] = []
        counts = [0, 0, len(channels)]  # updates, subscribed, expected subscriptions
        ready, stop = asyncio.Event(), asyncio.Event()
        tasks = []
        for i, channel in enumerate(channels):
            tasks.append(asyncio.create_task(client(url, token, channel, latencies, counts,
                                                    ready, stop)))
            if i % 50 == 49:
                await asyncio.sleep(0.05)  # do not open a thousand sockets in one instant
        try:
            await asyncio.wait_for(ready.wait(), 300)
        except TimeoutError:
            failed = [t.exception() for t in tasks if t.done() and t.exception()]
            sys.exit(f"{counts[1]} of {len(channels)} clients subscribed; first failure: "
                     f"{failed[0] if failed else 'none'}")
        Path(str(result_file) + ".ready").touch()  # noqa: ASYNC240 (once, before the run)
        await asyncio.sleep(seconds)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        result_file.write_text(  # noqa: ASYNC240 (once, after the run)
            json.dumps({"latencies": latencies, "updates": counts[0]}))

    asyncio.run(main())


def more_files() -> None:
    """A thousand sockets need more than the usual 1,024 descriptors (the API process, started
    from here, inherits the raised limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65_536)), hard))


def main() -> None:
    more_files()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--fleet-share", type=float, default=0.5,
                        help="share of the clients on the fleet channel")
    parser.add_argument("--sites", type=int, default=30)
    parser.add_argument("--units", type=int, default=40)
    parser.add_argument("--run-clients", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_clients:
        url, token, channels, result = args.run_clients
        run_clients(url, token, json.loads(channels), args.seconds, Path(result))
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
        api = subprocess.Popen([sys.executable, "-m", "infra.cli", "api", "--host",
                                "127.0.0.1", "--port", str(port)], env=env, cwd=REPO_ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/api/v1/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    sys.exit("the API did not start")
                time.sleep(0.2)
            n_fleet = round(args.clients * args.fleet_share)
            channels = ["fleet"] * n_fleet + [f"site:{sites[i % len(sites)]['id']}"
                                              for i in range(args.clients - n_fleet)]
            result = run / "clients.json"
            rss_idle = rss_mib(api.pid)
            clients = subprocess.Popen(
                [sys.executable, "-m", "bench.ws_fanout", "--seconds", str(args.seconds),
                 "--run-clients", f"ws://127.0.0.1:{port}/api/v1/ws", token,
                 json.dumps(channels), str(result)], cwd=REPO_ROOT)
            print(f"{args.clients} clients ({n_fleet} on fleet, {args.clients - n_fleet} on "
                  f"one site each) connecting …", flush=True)
            while not Path(str(result) + ".ready").exists():
                if clients.poll() is not None:
                    sys.exit("the clients failed to connect")
                time.sleep(0.2)
            rss_connected = rss_mib(api.pid)
            print(f"all subscribed; API RSS {rss_connected:.0f} MiB (idle {rss_idle:.0f} MiB); "
                  f"publishing {len(sites)} snapshots/s for {args.seconds:.0f} s …",
                  flush=True)
            c0, t0 = cpu_seconds(api.pid), time.monotonic()
            published = 0
            tick = time.monotonic()
            while time.monotonic() - t0 < args.seconds - 1:
                for k, site in enumerate(sites):  # spread over the second, as the flows do
                    payload = site_snapshot(site, int(time.time() * 1000), rng)
                    pipe = client_redis.pipeline(transaction=False)
                    pipe.set(site_key(str(site["id"])), payload)
                    publish(pipe, f"site:{site['id']}", payload)
                    publish(pipe, "fleet", payload)
                    pipe.execute()
                    published += 1
                    time.sleep(max(0.0, tick + (k + 1) / len(sites) - time.monotonic()))
                tick += 1.0
            cpu = (cpu_seconds(api.pid) - c0) / (time.monotonic() - t0)
            rss_end = rss_mib(api.pid)
            clients.wait(120)
            data = json.loads(result.read_text())
            lat = data["latencies"]
            expected = published // len(sites) * (n_fleet * len(sites)
                                                  + (args.clients - n_fleet))
            print(f"updates received {data['updates']:,} of ~{expected:,} published to "
                  f"subscribers; API CPU {100 * cpu:.0f} % of one core; API RSS at the end "
                  f"{rss_end:.0f} MiB", flush=True)
            if lat:
                print(f"delivery latency (publish → client parsed): p50 "
                      f"{statistics.median(lat):.0f} ms, p99 {pct(lat, 0.99):.0f} ms, max "
                      f"{max(lat):.0f} ms", flush=True)
            # The last line, for scripts: one JSON object.
            print(json.dumps({
                "bench": "ws_fanout", "clients": args.clients, "updates": data["updates"],
                "expected": expected, "api_cpu_pct": round(100 * cpu, 1),
                "api_rss_mib": round(rss_end),
                "latency_ms": {"p50": round(statistics.median(lat)),
                               "p99": round(pct(lat, 0.99))} if lat else None}), flush=True)
        finally:
            api.terminate()
            api.wait(30)
            service.stop()


if __name__ == "__main__":
    main()
