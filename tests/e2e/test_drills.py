"""Failure drills on a running stack (`bessmon up`, the example fleet at 1 Hz), with counts.

One part after another is killed with SIGKILL (API, Modbus connector, OPC UA connector,
simulator, flows), Redis is killed, the broker is paused for 30 s; `bessmon up` restarts
whatever died (infra/supervise.py) and the stack carries on by itself. Then every sample
on the telemetry topic over the whole run is counted against the history (tests/drills.py):
nothing lost, nothing counted twice. The broker killed outright comes last: it keeps its
topics in memory, so what it held is gone — the drill checks that the stack recovers
without a hand, and measures the seconds of samples lost.

The figures each drill measured are printed (`pytest -s`) and are the table in
docs/operations.md."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable

import httpx
import pytest
import redis

from connectors.redis_store import site_key
from connectors.settings import Settings
from contracts.events import SiteAvailability, TelemetrySample
from flows.redis_sink import flows_hashes
from tests.drills import MINUTE_MS, describe, read_until, settled_tally
from tests.stack import RunningStack, alive

pytestmark = pytest.mark.e2e
SITES = ("nordvik", "elbe", "mesa")
DEVICES = ("nordvik-u01", "elbe-u01", "mesa-u01")  # a unit of each site (mesa: OPC UA)
FIGURES: dict[str, dict[str, float]] = {}


def until(what: str, check: Callable[[], object], timeout_s: float = 90.0) -> float:
    """Seconds until `check()` is true (fails after `timeout_s`); a check that cannot
    connect yet is not true yet."""
    start = time.monotonic()
    while True:
        try:
            if check():
                return time.monotonic() - start
        except (httpx.HTTPError, redis.ConnectionError):
            pass
        assert time.monotonic() - start < timeout_s, f"not within {timeout_s:.0f} s: {what}"
        time.sleep(0.2)


def part(stack: RunningStack, name: str) -> dict[str, object]:
    parts = stack.state()["parts"]
    assert isinstance(parts, dict) and name in parts, f"no part {name!r} in {parts}"
    found: dict[str, object] = parts[name]
    return found


def restarted(stack: RunningStack, name: str, restarts: int) -> Callable[[], bool]:
    def check() -> bool:
        now = part(stack, name)
        return now["restarts"] == restarts and now["state"] == "running" and alive(
            int(str(now["pid"])))
    return check


def snapshots_after(stack: RunningStack, after_ms: int,
                    sites: tuple[str, ...] = SITES) -> Callable[[], bool]:
    """True once every site's snapshot in Redis is newer than `after_ms` (computed from
    telemetry polled after it: the whole path runs)."""
    client = redis.Redis.from_url(str(stack.state()["redis"]))

    def check() -> bool:
        try:
            raws = [client.get(site_key(s)) for s in sites]
        except redis.ConnectionError:
            return False
        return all(raw is not None and SiteAvailability.model_validate_json(raw).ts_ms
                   > after_ms for raw in raws)
    return check


def kill(stack: RunningStack, name: str) -> tuple[int, int]:
    """SIGKILL a part; returns (its restarts before, the kill's wall time in ms)."""
    before = part(stack, name)
    os.kill(int(str(before["pid"])), signal.SIGKILL)
    return int(str(before["restarts"])), int(time.time() * 1000)


@pytest.fixture(scope="module")
def started_ms(stack: RunningStack) -> int:
    """The minute the drills begin in (the stack's first samples are in it or the one
    before): the tally begins there, so that it covers every drill."""
    now = int(time.time() * 1000)
    return now - now % MINUTE_MS


@pytest.mark.parametrize("name", ["api", "connector", "opcua-connector", "sim", "flows"])
def test_a_part_killed_comes_back_and_the_stack_carries_on(
        stack: RunningStack, started_ms: int, name: str) -> None:
    until("the whole path runs", snapshots_after(stack, int(time.time() * 1000)))
    restarts, killed_ms = kill(stack, name)
    back_s = until(f"{name} started again", restarted(stack, name, restarts + 1))
    if name == "api":
        fresh_s = until("the API answers", lambda: httpx.get(
            stack.url + "api/v1/health", timeout=1).status_code == 200)
    else:
        fresh_s = until("site snapshots from samples polled after the kill",
                        snapshots_after(stack, killed_ms + 1000))
    assert stack.process.poll() is None, "bessmon up stopped when one part died"
    FIGURES[f"SIGKILL {name}"] = {"restarted_s": round(back_s, 1),
                                  "fresh_s": round(back_s + fresh_s, 1)}


def hot_state(client: redis.Redis) -> tuple[set[str], set[tuple[str, str]]]:
    """What Redis holds of the hot state: its keys and the entries of the hashes the flows
    write (the flows' own, not the control loop's). Not state: the live channels' feeds (a
    client whose sequence is gone gets a snapshot), the API's rate-limit counters and its
    webhook deliveries' duplicate marks (which expire anyway; a ticket delivered twice is
    the same newest version) — and the alarm and alert hashes as keys (their entries are
    compared; the control loop's own alerts do not come back, docs/operations.md)."""
    keys = {k.decode() if isinstance(k, bytes) else str(k) for k in client.keys("bessmon:*")}
    state = {k for k in keys if not k.startswith(
        ("bessmon:log:", "bessmon:seq:", "bessmon:rate:", "bessmon:webhook:",
         "bessmon:alarms:", "bessmon:alerts:"))}
    return state, set(flows_hashes(client))


def test_redis_restarted_the_hot_state_comes_back(stack: RunningStack) -> None:
    """With a unit tripped (an alarm and an open episode: hot state written only when it
    changes), Redis is killed; `bessmon up` starts it again, empty, and the flows write
    back all they held."""
    client = redis.Redis.from_url(str(stack.state()["redis"]))
    result = stack.bessmon("sim", "fault", "elbe-u03", "--for", "10m")
    assert result.returncode == 0, result.stderr
    until("the trip's alarm and episode in Redis", lambda: {
        key.split(":")[1] for key, _ in flows_hashes(client)} >= {"alarms", "episodes"})
    until("the whole path runs", snapshots_after(stack, int(time.time() * 1000)))
    keys_before, entries_before = hot_state(client)
    client.close()
    restarts, killed_ms = kill(stack, "redis")
    back_s = until("Redis started again", restarted(stack, "redis", restarts + 1))
    fresh_s = until("every site snapshot written again", snapshots_after(
        stack, killed_ms + 1000))
    client = redis.Redis.from_url(str(stack.state()["redis"]))
    missing: tuple[set[str], set[tuple[str, str]]] = (set(), set())

    def hot_state_back() -> bool:
        nonlocal missing
        keys, entries = hot_state(client)
        missing = (keys_before - keys, entries_before - entries)
        return not missing[0] and not missing[1]
    try:
        full_s = until("every key of the hot state back", hot_state_back, timeout_s=120)
    except AssertionError:
        raise AssertionError(f"not back within 120 s: {missing}") from None
    finally:
        client.close()
    assert stack.bessmon("sim", "clear", "elbe-u03").returncode == 0
    # The API serves from the new Redis.
    answer = httpx.get(stack.url + "api/v1/sites",
                       headers={"Authorization": f"Bearer {stack.token}"}, timeout=10)
    assert answer.status_code == 200, answer.text
    FIGURES["Redis killed"] = {"restarted_s": round(back_s, 1),
                               "fresh_s": round(back_s + fresh_s, 1),
                               "hot_state_s": round(back_s + fresh_s + full_s, 1),
                               "keys": len(keys_before), "entries": len(entries_before)}


def test_the_broker_paused_for_30_s(stack: RunningStack) -> None:
    broker = int(str(part(stack, "kafka")["pid"]))
    until("the whole path runs", snapshots_after(stack, int(time.time() * 1000)))
    os.kill(broker, signal.SIGSTOP)
    try:
        time.sleep(30)
    finally:
        os.kill(broker, signal.SIGCONT)
    resumed_ms = int(time.time() * 1000)
    fresh_s = until("site snapshots from samples polled after the pause",
                    snapshots_after(stack, resumed_ms + 1000))
    assert part(stack, "kafka")["restarts"] == 0
    FIGURES["broker paused 30 s"] = {"fresh_s": round(fresh_s, 1)}


def test_nothing_lost_nothing_counted_twice(stack: RunningStack, started_ms: int) -> None:
    """Every sample of every drill above, from the first whole minute on."""
    settings, bootstrap = Settings(), str(stack.state()["kafka"])
    until_ms = int(time.time() * 1000)
    until_ms -= until_ms % MINUTE_MS
    result, topics = settled_tally(bootstrap, settings, stack.run_dir / "history.db",
                                   started_ms, until_ms)
    FIGURES["end to end"] = {"asset_minutes": result.minutes,
                             "asset_samples": result.samples,
                             "lost": sum(result.lost.values()),
                             "doubled": sum(result.doubled.values()),
                             "late": result.dead_letters, "twins": result.twins,
                             "longest_gap_s": topics.longest_gap_s(started_ms, until_ms)}
    print("\nfailure drills:", json.dumps(FIGURES, indent=1))
    assert result.minutes >= len(SITES) * 10, describe(result)
    assert result.exact, describe(result)


def test_the_broker_killed_and_started_again_empty(stack: RunningStack) -> None:
    """Last: the embedded broker keeps its topics in memory, so what it held is gone. The
    stack recovers without a hand: `bessmon up` starts the broker again on its port with
    the topics made anew and every part but the simulator with it, the flows afresh.
    Measured: how long each device has no sample (those polled from the kill until its
    connector started again are lost)."""
    until("the whole path runs", snapshots_after(stack, int(time.time() * 1000)))
    restarts, killed_ms = kill(stack, "kafka")
    back_s = until("the broker started again", restarted(stack, "kafka", restarts + 1))
    back_ms = killed_ms + int(back_s * 1000)
    fresh_s = until("site snapshots from samples polled after the restart",
                    snapshots_after(stack, back_ms + 1000), timeout_s=120)
    assert stack.process.poll() is None
    # What is lost: the samples of each device between the kill and its first sample on
    # the new broker (those its connector had spooled come first, from before the kill).
    now_ms = int(time.time() * 1000)
    first: dict[str, int] = {}
    spooled = 0
    for value in read_until(str(stack.state()["kafka"]), Settings().topic_telemetry, now_ms):
        sample = TelemetrySample.model_validate_json(value)
        first[sample.device_id] = min(first.get(sample.device_id, now_ms), sample.ts_ms)
        spooled += sample.ts_ms < back_ms
    assert set(DEVICES) <= set(first), f"nothing on the new broker from {set(DEVICES) - set(first)}"
    gaps = {d: max(0, first[d] - killed_ms) / 1000 for d in DEVICES}
    FIGURES["broker killed"] = {"restarted_s": round(back_s, 1),
                                "fresh_s": round(back_s + fresh_s, 1),
                                "samples_from_before_the_restart": spooled,
                                "gap_s_max": max(gaps.values())}
    print("\nbroker killed:", json.dumps(FIGURES["broker killed"]), gaps)
    assert max(gaps.values()) < 60, gaps  # a few seconds' samples, not more
