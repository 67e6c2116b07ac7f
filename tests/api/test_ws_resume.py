"""The live feed across reconnects, with the integrators' example client
(docs/examples/live_client.py) against a real API process: a client that comes back resumes
each channel from its last sequence number and gets every missed update exactly once —
after its own disconnect and after the API itself restarted; when the log no longer reaches
back it gets a fresh snapshot. A client that falls behind gets coalesced updates; a revoked
credential closes the socket at the next heartbeat."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from api.auth.apikeys import ApiKeys
from api.auth.principal import EVERYTHING, Principal
from api.live import Message, Subscriber, Subscription
from connectors.api_store import ApiStore
from connectors.live_log import log_key
from connectors.settings import EXAMPLE_FLEET, REPO_ROOT, Settings
from contracts.fleet import load_fleet
from infra.ports import free_port
from tests.api.accounts import token
from tests.api.test_sites_and_live_feed import flows_publish, snapshot

CLIENT = REPO_ROOT / "docs" / "examples" / "live_client.py"


class Api:
    """`bessmon api` in a process of its own, restartable on the same port."""

    def __init__(self, settings: Settings) -> None:
        self.port = free_port()
        self.env = {**os.environ, "REDIS_URL": settings.require_redis(),
                    "BESSMON_RUN_DIR": str(settings.run_dir),
                    "BESSMON_USERS_FILE": str(settings.users_path),
                    "BESSMON_JWT_KEY_FILE": str(settings.jwt_key_path),
                    "BESSMON_WS_HEARTBEAT_S": "0.5"}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/v1/ws"

    def start(self, workers: int = 1) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "infra.cli", "api", "--host", "127.0.0.1", "--port",
             str(self.port), "--workers", str(workers)], env=self.env, cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/api/v1/health",
                             timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError("the API did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(20)


@pytest.fixture
def api(api_settings: Settings) -> Iterator[Api]:
    server = Api(api_settings)
    server.start()
    yield server
    server.stop()


class Client:
    """The example client as a process; its output lines parsed as they come."""

    def __init__(self, api: Api, settings: Settings, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(CLIENT), "--url", api.ws_url, "--token",
             token(settings, "viewer"), *args], cwd=REPO_ROOT, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)

    def next(self, timeout_s: float = 20) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # the client flushes each line
        assert line, f"client ended: {self.process.stderr.read() if self.process.stderr else ''}"
        return dict(json.loads(line))

    def finish(self) -> int:
        return self.process.wait(30)


def updates_of(client: Client, n: int) -> list[tuple[int, float]]:
    out: list[tuple[int, float]] = []
    while len(out) < n:
        msg = client.next()
        assert msg["type"] == "update", msg
        out.append((msg["seq"], msg["data"]["windows"]["last_hour"]))
    return out


def test_a_client_resumes_after_its_own_disconnect(api: Api, api_settings: Settings,
                                                   redis_client: redis.Redis,
                                                   tmp_path: Path) -> None:
    state = tmp_path / "seqs.json"
    for pct in (90.0, 91.0, 92.0):
        flows_publish(redis_client, snapshot("elbe", pct))
    first = Client(api, api_settings, "--channel", "site:elbe", "--state", str(state),
                   "--updates", "2")
    snap = first.next()
    assert (snap["type"], snap["seq"], snap["data"]["windows"]["last_hour"]) == (
        "snapshot", 3, 92.0)
    flows_publish(redis_client, snapshot("elbe", 93.0))
    flows_publish(redis_client, snapshot("elbe", 94.0))
    assert updates_of(first, 2) == [(4, 93.0), (5, 94.0)]
    assert first.finish() == 0
    assert json.loads(state.read_text()) == {"site:elbe": 5}

    for pct in (95.0, 96.0, 97.0):  # while nobody listens
        flows_publish(redis_client, snapshot("elbe", pct))
    again = Client(api, api_settings, "--channel", "site:elbe", "--state", str(state),
                   "--updates", "4")
    assert updates_of(again, 3) == [(6, 95.0), (7, 96.0), (8, 97.0)]  # no snapshot: resumed
    flows_publish(redis_client, snapshot("elbe", 98.0))
    assert updates_of(again, 1) == [(9, 98.0)]
    assert again.finish() == 0


def test_a_client_resumes_after_the_api_restarts(api: Api, api_settings: Settings,
                                                 redis_client: redis.Redis) -> None:
    client = Client(api, api_settings, "--channel", "site:mesa", "--updates", "5")
    assert client.next()["type"] == "snapshot"
    flows_publish(redis_client, snapshot("mesa", 80.0))
    assert updates_of(client, 1) == [(1, 80.0)]
    api.stop()
    for pct in (81.0, 82.0, 83.0):  # while the API is down
        flows_publish(redis_client, snapshot("mesa", pct))
    api.start()
    assert updates_of(client, 3) == [(2, 81.0), (3, 82.0), (4, 83.0)]
    flows_publish(redis_client, snapshot("mesa", 84.0))
    assert updates_of(client, 1) == [(5, 84.0)]
    assert client.finish() == 0


def test_a_client_beyond_the_log_gets_a_snapshot(api: Api, api_settings: Settings,
                                                 redis_client: redis.Redis,
                                                 tmp_path: Path) -> None:
    for pct in (70.0, 71.0, 72.0, 73.0):
        flows_publish(redis_client, snapshot("nordvik", pct))
    redis_client.xtrim(log_key("site:nordvik"), maxlen=1, approximate=False)  # 1..3 gone
    state = tmp_path / "seqs.json"
    state.write_text(json.dumps({"site:nordvik": 1}))
    client = Client(api, api_settings, "--channel", "site:nordvik", "--state", str(state),
                    "--updates", "1")
    snap = client.next()
    assert (snap["type"], snap["seq"], snap["data"]["windows"]["last_hour"]) == (
        "snapshot", 4, 73.0)
    flows_publish(redis_client, snapshot("nordvik", 74.0))
    assert updates_of(client, 1) == [(5, 74.0)]
    assert client.finish() == 0


def test_a_revoked_key_is_disconnected_at_the_next_heartbeat(api: Api,
                                                             api_settings: Settings) -> None:
    keys = ApiKeys(ApiStore(api_settings.api_db_path))
    key, text = keys.create("feed", "viewer", ["*"], ["*"], created_by="test",
                            now_ms=int(time.time() * 1000))
    with connect(api.ws_url, open_timeout=10) as ws:
        ws.send(json.dumps({"type": "auth", "token": text}))
        assert json.loads(ws.recv(timeout=10))["type"] == "ready"
        assert json.loads(ws.recv(timeout=10))["type"] == "heartbeat"
        keys.revoke(key.id, int(time.time() * 1000))
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(timeout=10)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4401, "API key revoked")


def test_a_client_behind_gets_the_newest_state_of_each_thing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Up to COALESCE_AT frames wait in order, every one; beyond, the updates a client has
    not taken yet are coalesced per thing (here: per site on the fleet channel); too many
    distinct things waiting even so → the client is dropped (4408)."""
    fleet = load_fleet(EXAMPLE_FLEET)
    subscriber = Subscriber(Principal("t", "viewer", EVERYTHING, "local"), fleet, money=False)
    sub = Subscription("fleet", "fleet", starting=False)
    seq = 0
    for pct in range(4):
        for site in ("nordvik", "elbe"):
            seq += 1
            subscriber.deliver(sub, Message("fleet", seq, snapshot(site, float(pct))
                                            .model_dump_json().encode()))
    assert [json.loads(f)["seq"] for f in subscriber.take()] == list(range(1, 9))
    monkeypatch.setattr("api.live.COALESCE_AT", 50)
    for pct in range(100):
        for site in ("nordvik", "elbe", "mesa"):
            seq += 1
            subscriber.deliver(sub, Message("fleet", seq, snapshot(site, float(pct))
                                            .model_dump_json().encode()))
    frames = [json.loads(f) for f in subscriber.take()]
    assert [(f["data"]["site_id"], f["seq"], f["data"]["windows"]["last_hour"])
            for f in frames][-3:] == [("nordvik", 306, 99.0), ("elbe", 307, 99.0),
                                      ("mesa", 308, 99.0)]
    assert len(frames) <= 51  # coalesced at 51 waiting, then a few more in order
    assert not subscriber.overflowed
    monkeypatch.setattr("api.live.OUTBOX_LIMIT", 2)
    monkeypatch.setattr("api.live.COALESCE_AT", 2)
    for site in ("nordvik", "elbe", "mesa"):
        seq += 1
        subscriber.deliver(sub, Message("fleet", seq, snapshot(site, 1.0)
                                        .model_dump_json().encode()))
    assert subscriber.overflowed


def updates_in(ws: Any, n: int, *, batch: bool) -> list[tuple[str, int, float]]:
    """The next `n` updates of a raw socket as (channel, seq, last-hour %), each message
    checked to be a batch (or not)."""
    out: list[tuple[str, int, float]] = []
    while len(out) < n:
        msg = json.loads(ws.recv(timeout=10))
        if msg["type"] == "heartbeat":
            continue
        assert msg["type"] == ("batch" if batch else "update"), msg
        for frame in msg["frames"] if batch else [msg]:
            assert frame["type"] == "update", frame
            out.append((frame["channel"], frame["seq"], frame["data"]["windows"]["last_hour"]))
    return out


def test_a_batching_client_gets_a_ticks_updates_in_one_message(
        api: Api, api_settings: Settings, redis_client: redis.Redis) -> None:
    """`"batch": true`: updates of every channel come together, in order, once per tick; a
    client that did not ask gets them one by one, as before."""
    with connect(api.ws_url, open_timeout=10) as batched, \
            connect(api.ws_url, open_timeout=10) as single:
        for ws, batch in ((batched, True), (single, False)):
            ws.send(json.dumps({"type": "auth", "token": token(api_settings, "viewer"),
                                "batch": batch}))
            ready = json.loads(ws.recv(timeout=10))
            assert (ready["type"], ready["batch"]) == ("ready", batch)
            for channel in ("site:elbe", "site:mesa"):
                ws.send(json.dumps({"type": "subscribe", "channel": channel}))
                assert json.loads(ws.recv(timeout=10))["type"] == "snapshot"
        for pct in (60.0, 61.0, 62.0):
            flows_publish(redis_client, snapshot("elbe", pct))
            flows_publish(redis_client, snapshot("mesa", pct + 10))
        expected = [("site:elbe", 1, 60.0), ("site:mesa", 1, 70.0), ("site:elbe", 2, 61.0),
                    ("site:mesa", 2, 71.0), ("site:elbe", 3, 62.0), ("site:mesa", 3, 72.0)]
        got = updates_in(batched, 6, batch=True)
        assert sorted(got, key=lambda u: (u[1], u[0])) == sorted(expected,
                                                                 key=lambda u: (u[1], u[0]))
        for channel in ("site:elbe", "site:mesa"):  # in order within each channel
            assert [u[1] for u in got if u[0] == channel] == [1, 2, 3]
        assert updates_in(single, 6, batch=False) == got  # the same updates, one by one


def test_api_processes_sharing_a_port_each_serve_the_feed(
        api_settings: Settings, redis_client: redis.Redis, tmp_path: Path) -> None:
    """`bessmon api --workers 2`: two processes on one port; clients reaching either get
    every update, and one that reconnects resumes by sequence number across them."""
    server = Api(api_settings)
    server.start(workers=2)
    try:
        assert server.process is not None
        workers = [p for p in Path("/proc").iterdir() if p.name.isdigit() and (
            p / "stat").exists() and _ppid(p) == server.process.pid]
        assert len(workers) >= 2, "two worker processes under the supervisor"
        sockets = [connect(server.ws_url, open_timeout=10) for _ in range(6)]
        try:
            for ws in sockets:
                ws.send(json.dumps({"type": "auth", "token": token(api_settings, "viewer"),
                                    "batch": True}))
                assert json.loads(ws.recv(timeout=10))["type"] == "ready"
                ws.send(json.dumps({"type": "subscribe", "channel": "site:nordvik"}))
                assert json.loads(ws.recv(timeout=10))["type"] == "snapshot"
            flows_publish(redis_client, snapshot("nordvik", 50.0))
            flows_publish(redis_client, snapshot("nordvik", 51.0))
            for ws in sockets:
                assert updates_in(ws, 2, batch=True) == [("site:nordvik", 1, 50.0),
                                                         ("site:nordvik", 2, 51.0)]
        finally:
            for ws in sockets:
                ws.close()
        state = tmp_path / "seqs.json"
        state.write_text(json.dumps({"site:nordvik": 2}))
        flows_publish(redis_client, snapshot("nordvik", 52.0))  # while nobody listens
        again = Client(server, api_settings, "--channel", "site:nordvik", "--state",
                       str(state), "--updates", "1")
        assert updates_of(again, 1) == [(3, 52.0)]  # resumed, whichever process it reached
        assert again.finish() == 0
    finally:
        server.stop()


def _ppid(proc: Path) -> int | None:
    try:
        return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None
