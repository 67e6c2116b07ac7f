"""`bessmon tickets poll` (connectors/ticketing/poller.py) against the fake vendors of
tests/connectors/ticketing_fakes.py — real HTTP servers on loopback — a real broker and a
real Redis: incremental polling publishes each ticket version once, a restart resumes from the
persisted cursor, rate limits are waited out, one provider failing stops no other, and
auto-open opens exactly one ticket per long episode, through crashes and lost answers.

Time: the vendors' tickets are stamped around the real clock (the clients refuse tickets from
the future); the poller's schedule runs on a clock of the test's own (`Clock`), so waits are
checked as the times the poller plans, never by measuring."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from connectors.kafka import read_topic
from connectors.redis_store import episodes_key
from connectors.settings import Settings
from connectors.ticketing.config import (
    Auth,
    CreateOptions,
    Provider,
    ProviderConfig,
    TicketingConfig,
    load_ticketing_config,
)
from connectors.ticketing.poller import (
    OVERLAP_MS,
    PollerError,
    TicketPoller,
    marker_of,
)
from connectors.ticketing.rest import retry_after_s
from contracts.errors import InvalidInput
from contracts.events import DeadLetter, TicketEvent, TicketRef, UnavailabilityEpisode
from contracts.fleet import Fleet, load_fleet
from tests.connectors.ticketing_fakes import (
    JIRA_TOKEN,
    SN_TOKEN,
    STOCKHOLM,
    ZD_TOKEN,
    FakeJira,
    FakeServiceNow,
    FakeVendor,
    FakeZendesk,
    secrets_in,
)

ENVIRON = {"JIRA_API_TOKEN": JIRA_TOKEN, "SN_TOKEN": SN_TOKEN, "ZENDESK_API_TOKEN": ZD_TOKEN}
PUBLIC = "https://bess.example.com/"
SEARCH = {"jira": ("GET", "/rest/api/3/search/jql"),
          "servicenow": ("GET", "/api/now/table/incident"),
          "zendesk": ("GET", "/api/v2/incremental/tickets/cursor.json")}
CREATE = {"jira": ("POST", "/rest/api/3/issue"),
          "servicenow": ("POST", "/api/now/table/incident"),
          "zendesk": ("POST", "/api/v2/tickets")}


class Clock:
    """The poller's clock: the real time when made, then moved by the test only."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Crash(BaseException):
    """The process dying at this point (not an Exception: nothing in the poller catches it)."""


@dataclass
class Env:
    settings: Settings
    fleet: Fleet
    site: str
    units: list[str]
    redis: redis.Redis


@pytest.fixture
def env(settings: Settings, tmp_path: Path, redis_client: redis.Redis) -> Iterator[Env]:
    """A fleet of one site of its own (three units, each one inverter with one block), topics
    of its own."""
    site = f"s{uuid.uuid4().hex[:8]}"
    units = [f"{site}-u0{i}" for i in (1, 2, 3)]
    fleet_file = tmp_path / "fleet.yaml"
    fleet_file.write_text(f"""\
sites:
- id: {site}
  customer: Test Energy
  region: SE3
  timezone: Europe/Stockholm
  units:
""" + "".join(f"""\
  - id: {u}
    rated_power_kw: 2500.0
    rated_energy_kwh: 5000.0
    commissioned: 2024-03-01
    inverters:
    - id: {u}-i1
      rated_power_kw: 2500.0
      blocks: [{{id: {u}-i1-b1, rated_energy_kwh: 5000.0}}]
""" for u in units))
    own = settings.model_copy(update={"fleet_file": fleet_file,
                                      "topic_tickets": settings.topic_dlq + "-tickets"})
    yield Env(own, load_fleet(fleet_file), site, units, redis_client)
    redis_client.delete(episodes_key(site))


@pytest.fixture
def fake_jira() -> Iterator[FakeJira]:
    fake = FakeJira()
    with fake.vendor:
        yield fake


@pytest.fixture
def fake_servicenow() -> Iterator[FakeServiceNow]:
    fake = FakeServiceNow()
    with fake.vendor:
        yield fake


@pytest.fixture
def fake_zendesk() -> Iterator[FakeZendesk]:
    fake = FakeZendesk()
    with fake.vendor:
        yield fake


def jira_config(fake: FakeJira, *, auto_open: bool = False, **create: Any) -> ProviderConfig:
    return ProviderConfig(
        base_url=fake.vendor.url, timezone="Europe/Stockholm", poll_s=60,
        auth=Auth(username="noc@acme.example", password_env="JIRA_API_TOKEN"),
        create=CreateOptions(project="BESS", issue_type="Incident", auto_open=auto_open,
                             **create))


def servicenow_config(fake: FakeServiceNow, *, auto_open: bool = False) -> ProviderConfig:
    return ProviderConfig(
        base_url=fake.vendor.url, auth=Auth(kind="bearer", token_env="SN_TOKEN"), poll_s=60,
        create=CreateOptions(category="hardware", auto_open=auto_open))


def zendesk_config(fake: FakeZendesk, *, auto_open: bool = False) -> ProviderConfig:
    return ProviderConfig(
        base_url=fake.vendor.url, poll_s=30,
        auth=Auth(username="noc@acme.example", password_env="ZENDESK_API_TOKEN"),
        create=CreateOptions(auto_open=auto_open))


def poller(env: Env, config: TicketingConfig, clock: Clock | None = None,
           grace_s: float = 0.0) -> TicketPoller:
    return TicketPoller(env.settings, config, env.fleet, base_url=PUBLIC, environ=ENVIRON,
                        clock=clock or Clock(), search_grace_s=grace_s)


def tickets_on_topic(env: Env) -> list[tuple[str, TicketEvent]]:
    messages = read_topic(env.settings.require_kafka(), env.settings.topic_tickets,
                          to_end=True, timeout_s=20)
    return [((m.key() or b"").decode(), TicketEvent.model_validate_json(m.value() or b""))
            for m in messages]


def dead_letters(env: Env) -> list[DeadLetter]:
    messages = read_topic(env.settings.require_kafka(), env.settings.topic_dlq,
                          to_end=True, timeout_s=20)
    return [DeadLetter.model_validate_json(m.value() or b"") for m in messages]


def state_of(env: Env) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (env.settings.run_dir / "tickets" / "poller.json").read_text())
    return data


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def jira_minute(moment_ms: int) -> str:
    """The minute JQL is given for `moment_ms`, in the Jira user's zone."""
    return f"{datetime.fromtimestamp(moment_ms / 1000, STOCKHOLM):%Y-%m-%d %H:%M}"


def calls(vendor: FakeVendor, method: str, path: str) -> list[Any]:
    return [c for c in vendor.calls if (c.method, c.path) == (method, path)]


# -- polling -----------------------------------------------------------------------------

def test_incremental_polling_publishes_each_change_once(env: Env, fake_jira: FakeJira,
                                                        caplog: pytest.LogCaptureFixture
                                                        ) -> None:
    u1, u2, _ = env.units
    now = datetime.now(UTC).replace(microsecond=0)
    fake_jira.add("BESS-1", now - timedelta(minutes=40), [f"asset:{u1}"])
    fake_jira.add("BESS-2", now - timedelta(minutes=2), [f"asset:{u2}"],
                  summary="Unit 2 PCS trip")
    fake_jira.add("OPS-9", now - timedelta(minutes=30), ["asset:printer-3"])  # not ours
    fake_jira.add("BESS-3", now - timedelta(minutes=20), [f"asset:{u1}"], ("Weird", "x"))
    fake_jira.add("BESS-0", now - timedelta(days=3), [f"asset:{u1}"])  # before the lookback
    config = TicketingConfig(jira=jira_config(fake_jira))
    clock = Clock()
    caplog.set_level(logging.DEBUG)
    first = poller(env, config, clock)
    try:
        first.run_once()
        clock.advance(60)
        first.run_due()  # nothing changed: found again, published not again
        fake_jira.touch("BESS-2", now + timedelta(seconds=1), ("In Progress", "indeterminate"))
        clock.advance(60)
        first.run_due()
    finally:
        first.close()

    published = tickets_on_topic(env)
    assert [(key, e.status, e.updated_ms) for key, e in published] == [
        ("jira:BESS-1", "open", ms(now - timedelta(minutes=40))),
        ("jira:BESS-2", "open", ms(now - timedelta(minutes=2))),
        ("jira:BESS-2", "in_progress", ms(now + timedelta(seconds=1)))]
    assert published[1][1].asset_id == u2 and published[1][1].summary == "Unit 2 PCS trip"
    letters = dead_letters(env)
    assert [(d.source, d.reason, d.key) for d in letters] == [
        ("connectors.ticketing", "unreadable_ticket", "jira:BESS-3")]
    assert "jira status 'Weird' / 'x' is not mapped" in letters[0].detail
    assert json.loads(letters[0].payload)["key"] == "BESS-3"
    # The first search reached back the lookback (24 h); the next ones the overlap before
    # the newest update seen.
    jql = [c.query["jql"] for c in calls(fake_jira.vendor, *SEARCH["jira"])]
    first_since = ms(datetime.fromtimestamp(clock.now - 120, UTC)) - 24 * 3_600_000
    assert jql[0] == f'updated >= "{jira_minute(first_since)}" ORDER BY updated ASC'
    newest = ms(now - timedelta(minutes=2))
    assert jql[1] == f'updated >= "{jira_minute(newest - OVERLAP_MS)}" ORDER BY updated ASC'
    assert state_of(env)["providers"]["jira"]["cursor_ms"] == ms(now + timedelta(seconds=1))
    assert secrets_in(caplog.text, JIRA_TOKEN) == []


def test_restart_resumes_from_the_persisted_cursor(env: Env, fake_zendesk: FakeZendesk
                                                   ) -> None:
    u1, u2, u3 = env.units
    now = datetime.now(UTC).replace(microsecond=0)
    fake_zendesk.add(now - timedelta(hours=3), [f"asset_{u1}"])
    fake_zendesk.add(now - timedelta(minutes=1), [f"asset_{u2}"], "pending")
    config = TicketingConfig(zendesk=zendesk_config(fake_zendesk))
    first = poller(env, config)
    first.run_once()
    first.close()  # the process ends; a new one starts on the same run directory

    fake_zendesk.add(now, [f"asset_{u3}"], "new")
    second = poller(env, config)
    try:
        second.run_once()
    finally:
        second.close()

    starts = [c.query.get("start_time") for c in
              calls(fake_zendesk.vendor, *SEARCH["zendesk"])]
    newest_s = int((now - timedelta(minutes=1)).timestamp())
    assert starts[1] == str(newest_s - OVERLAP_MS // 1000)  # not a full re-read
    assert int(starts[0]) < newest_s - 23 * 3600  # the first run's lookback
    published = [(key, e.asset_id) for key, e in tickets_on_topic(env)]
    assert published == [("zendesk:35500", u1), ("zendesk:35501", u2), ("zendesk:35502", u3)]


def test_a_second_poller_on_the_same_state_is_refused(env: Env, fake_jira: FakeJira) -> None:
    config = TicketingConfig(jira=jira_config(fake_jira))
    first = poller(env, config)
    try:
        with pytest.raises(PollerError, match="another `bessmon tickets poll` is running"):
            poller(env, config)
    finally:
        first.close()
    poller(env, config).close()  # free again


def test_an_unreadable_state_file_stops_the_poller(env: Env, fake_jira: FakeJira) -> None:
    path = env.settings.run_dir / "tickets" / "poller.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"v": 1, "providers": {')
    with pytest.raises(PollerError, match="poller's state cannot be read"):
        poller(env, TicketingConfig(jira=jira_config(fake_jira)))


# -- rate limits and failures ---------------------------------------------------------------

def test_a_429_with_retry_after_is_waited_out_and_nothing_is_lost(
        env: Env, fake_servicenow: FakeServiceNow) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    for i in range(3):  # the CI is named by the asset id itself
        fake_servicenow.add(f"INC00100{i}", now - timedelta(minutes=10 - i), env.units[i])
    config = TicketingConfig(servicenow=servicenow_config(fake_servicenow))
    fake_servicenow.vendor.script("GET", "/api/now/table/incident", 429,
                                  {"error": {"message": "Too many requests"}},
                                  {"Retry-After": "7"})
    clock = Clock()
    the_poller = poller(env, config, clock)
    try:
        runner = the_poller.runners["servicenow"]
        the_poller.run_due()
        assert runner.failures == 1 and runner.next_due == clock.now + 7
        assert "429 rate limited (retry after 7 s)" in str(runner.last_error)
        assert not (env.settings.run_dir / "tickets" / "poller.json").exists()
        searched = len(fake_servicenow.vendor.calls)
        clock.advance(6.5)
        the_poller.run_due()  # not yet
        assert len(fake_servicenow.vendor.calls) == searched
        clock.advance(0.5)
        the_poller.run_due()
        assert runner.failures == 0 and runner.next_due == clock.now + 60
    finally:
        the_poller.close()
    assert [key for key, _ in tickets_on_topic(env)] == [
        "servicenow:INC001000", "servicenow:INC001001", "servicenow:INC001002"]


def test_the_running_poller_waits_out_a_429_in_real_time(env: Env,
                                                         fake_zendesk: FakeZendesk) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    fake_zendesk.add(now - timedelta(minutes=3), [f"asset_{env.units[1]}"])
    fake_zendesk.vendor.script("GET", SEARCH["zendesk"][1], 429, {"error": "TooManyRequests"},
                               {"Retry-After": "1"})
    the_poller = TicketPoller(env.settings, TicketingConfig(zendesk=zendesk_config(fake_zendesk)),
                              env.fleet, base_url=PUBLIC, environ=ENVIRON)
    stop = threading.Event()
    thread = threading.Thread(target=the_poller.run, args=(stop,))
    thread.start()
    try:
        found = read_topic(env.settings.require_kafka(), env.settings.topic_tickets, count=1,
                           timeout_s=30)
    finally:
        stop.set()
        thread.join(30)
        the_poller.close()
    assert [(m.key() or b"").decode() for m in found] == ["zendesk:35500"]
    assert len(calls(fake_zendesk.vendor, *SEARCH["zendesk"])) == 2  # refused, then served


@pytest.mark.parametrize(("headers", "now_s", "wait"), [
    ({"Retry-After": "120"}, 0.0, 120.0),
    ({"retry-after": "Wed, 21 Oct 2026 07:28:00 GMT"},
     datetime(2026, 10, 21, 7, 27, 30, tzinfo=UTC).timestamp(), 30.0),
    ({"X-RateLimit-Reset": "1800000060"}, 1_800_000_000.0, 60.0),  # ServiceNow: epoch s
    ({"X-RateLimit-Reset": "2026-10-21T07:28:00.000Z"},  # Jira: an ISO time
     datetime(2026, 10, 21, 7, 27, 0, tzinfo=UTC).timestamp(), 60.0),
    ({"ratelimit-reset": "15"}, 0.0, 15.0),  # Zendesk: seconds
    ({"Retry-After": "86400000"}, 0.0, 3600.0),  # capped
    ({"Retry-After": "soon"}, 0.0, None),
    ({}, 0.0, None),
])
def test_vendor_rate_limit_headers(headers: dict[str, str], now_s: float,
                                   wait: float | None) -> None:
    assert retry_after_s(headers, now_s) == wait


def test_a_used_up_window_delays_the_next_search(env: Env, fake_jira: FakeJira) -> None:
    fake_jira.vendor.script("GET", SEARCH["jira"][1], 200, {"issues": [], "isLast": True},
                            {"X-RateLimit-Remaining": "0", "Retry-After": "300"})
    clock = Clock()
    the_poller = poller(env, TicketingConfig(jira=jira_config(fake_jira)), clock)
    try:
        assert the_poller.cycle("jira") == 300  # not poll_s (60): the vendor said 300
    finally:
        the_poller.close()


def test_a_failing_provider_does_not_stop_another(env: Env, fake_jira: FakeJira,
                                                  fake_zendesk: FakeZendesk,
                                                  fake_servicenow: FakeServiceNow,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    fake_zendesk.add(now - timedelta(minutes=5), [f"asset_{env.units[2]}"])
    fake_jira.vendor.down = True  # 503 without Retry-After: an outage, backed off
    config = TicketingConfig(jira=jira_config(fake_jira), zendesk=zendesk_config(fake_zendesk),
                             servicenow=servicenow_config(fake_servicenow).model_copy(
                                 update={"auth": Auth(kind="bearer", token_env="SN_UNSET")}))
    clock = Clock()
    caplog.set_level(logging.INFO)
    the_poller = poller(env, config, clock)
    try:
        assert set(the_poller.runners) == {"jira", "zendesk"}  # ServiceNow: no credential
        the_poller.run_once()
        jira = the_poller.runners["jira"]
        assert jira.failures == 1 and jira.next_due == clock.now + 10
        clock.advance(10)
        the_poller.run_due()
        assert jira.failures == 2 and jira.next_due == clock.now + 20  # doubling
        fake_jira.vendor.down = False
        clock.advance(20)
        the_poller.run_due()
        assert jira.failures == 0 and jira.next_due == clock.now + 60
    finally:
        the_poller.close()
    assert [key for key, _ in tickets_on_topic(env)] == ["zendesk:35500"]
    assert "servicenow: not polled: environment variable SN_UNSET is not set" in caplog.text
    assert "jira: working again after 2 failures" in caplog.text


# -- auto-open ------------------------------------------------------------------------------

def put_episode(env: Env, asset: str, start: datetime, *, state: str = "unavailable",
                cause: str | None = "fault", tickets: tuple[TicketRef, ...] = ()
                ) -> UnavailabilityEpisode:
    lost = (datetime.now(UTC) - start).total_seconds() / 3600
    episode = UnavailabilityEpisode(
        episode_id=f"{asset}:{ms(start)}", asset_id=asset, site_id=env.site,
        start_ms=ms(start), end_ms=None, state=state, cause=cause,  # type: ignore[arg-type]
        lost_hours=lost, lost_mwh=lost * 5, tickets=tickets)
    env.redis.hset(episodes_key(env.site), episode.episode_id, episode.model_dump_json())
    return episode


@dataclass
class Vendor:
    name: Provider
    vendor: FakeVendor
    created: list[dict[str, Any]]  # what the vendor holds, newest last

    def opened(self) -> list[Any]:
        return calls(self.vendor, *CREATE[self.name])


@pytest.fixture(params=["jira", "servicenow", "zendesk"])
def opener(request: pytest.FixtureRequest) -> Iterator[tuple[Vendor, TicketingConfig]]:
    """Each vendor in turn as the provider that opens tickets (its asset mapping naming the
    fleet's units as they are)."""
    name: Provider = request.param
    if name == "jira":
        jira = FakeJira()
        with jira.vendor:
            yield (Vendor("jira", jira.vendor, jira.issues),
                   TicketingConfig(jira=jira_config(jira, auto_open=True)))
    elif name == "servicenow":
        sn = FakeServiceNow()
        with sn.vendor:
            yield (Vendor("servicenow", sn.vendor, sn.records),
                   TicketingConfig(servicenow=servicenow_config(sn, auto_open=True)))
    else:
        zd = FakeZendesk()
        with zd.vendor:
            yield (Vendor("zendesk", zd.vendor, zd.tickets),
                   TicketingConfig(zendesk=zendesk_config(zd, auto_open=True)))


def test_auto_open_one_ticket_for_a_long_episode_with_the_link(
        env: Env, fake_jira: FakeJira) -> None:
    u1, u2, u3 = env.units
    now = datetime.now(UTC)
    long = put_episode(env, u1, now - timedelta(hours=2, minutes=5), cause="forced_outage")
    put_episode(env, u2, now - timedelta(minutes=20))  # shorter than 30 min
    put_episode(env, u3, now - timedelta(hours=5), tickets=(TicketRef(
        provider="jira", ticket_id="BESS-7", status="in_progress"),))  # has one
    put_episode(env, f"{u2}-i1", now - timedelta(hours=3),
                cause="scheduled_maintenance")  # planned: skipped
    put_episode(env, f"{u3}-i1-b1", now - timedelta(hours=3))  # a block: not a level
    # u1's inverter: covered by the ticket opened for u1 in the same pass.
    put_episode(env, f"{u1}-i1", now - timedelta(hours=3))
    config = TicketingConfig(jira=jira_config(fake_jira, auto_open=True,
                                              levels=("unit", "inverter"),
                                              priorities={"major": "High"},
                                              auto_priority="major"))
    for _ in range(2):  # two runs of the poller
        the_poller = poller(env, config)
        try:
            the_poller.run_once()
        finally:
            the_poller.close()

    created = calls(fake_jira.vendor, *CREATE["jira"])
    assert len(created) == 1
    fields = created[0].body["fields"]
    since = f"{datetime.fromtimestamp(long.start_ms / 1000, UTC):%Y-%m-%d %H:%M}"
    assert fields["summary"] == f"{u1} unavailable (forced outage) since {since} UTC"
    assert fields["labels"] == [f"asset:{u1}", marker_of(long.episode_id)]
    assert fields["priority"] == {"name": "High"}
    description = " ".join(p["content"][0]["text"] for p in fields["description"]["content"])
    assert f"Dashboard: {PUBLIC}#/asset/{u1}" in description
    assert "2.08 lost hours (10.42 MWh) so far" in description
    assert long.episode_id in description
    assert state_of(env)["episodes"][long.episode_id]["ticket_id"] == "BESS-100"
    published = [(key, e.asset_id, e.status) for key, e in tickets_on_topic(env)]
    # At once when opened; then the vendor's own version, found by the next poll.
    assert published == [("jira:BESS-100", u1, "open"), ("jira:BESS-100", u1, "open")]


def test_crash_between_opening_and_recording_opens_no_second_ticket(
        env: Env, opener: tuple[Vendor, TicketingConfig],
        monkeypatch: pytest.MonkeyPatch) -> None:
    vendor, config = opener
    episode = put_episode(env, env.units[1], datetime.now(UTC) - timedelta(hours=1))

    def die(*args: object) -> None:
        raise Crash
    with monkeypatch.context() as patch:
        patch.setattr(TicketPoller, "_record_opened", die)
        first = poller(env, config)
        with pytest.raises(Crash):
            first.run_once()
        first.close()  # what the process's death does to its lock
    assert len(vendor.opened()) == 1
    intent = state_of(env)["episodes"][episode.episode_id]
    assert intent["ticket_id"] is None and intent["marker"] == marker_of(episode.episode_id)

    for _ in range(2):  # the restart, and one more run
        again = poller(env, config)
        try:
            again.run_once()
        finally:
            again.close()

    assert len(vendor.opened()) == 1
    recorded = state_of(env)["episodes"][episode.episode_id]["ticket_id"]
    number = vendor.created[-1].get("key") or vendor.created[-1].get("number") or \
        str(vendor.created[-1]["id"])
    assert recorded == number
    keys = {key for key, e in tickets_on_topic(env) if e.asset_id == env.units[1]}
    assert keys == {f"{vendor.name}:{number}"}


def test_an_answer_lost_after_opening_opens_no_second_ticket(
        env: Env, opener: tuple[Vendor, TicketingConfig]) -> None:
    vendor, config = opener
    episode = put_episode(env, env.units[0], datetime.now(UTC) - timedelta(minutes=45))
    vendor.vendor.lose_answer(*CREATE[vendor.name])
    clock = Clock()
    the_poller = poller(env, config, clock)
    try:
        the_poller.run_once()
        runner = the_poller.runners[vendor.name]
        assert runner.failures == 1 and "disconnected" in str(runner.last_error).lower()
        clock.advance(10)
        the_poller.run_due()
        the_poller.run_once()
    finally:
        the_poller.close()
    assert len(vendor.opened()) == 1
    assert state_of(env)["episodes"][episode.episode_id]["ticket_id"] is not None


def test_an_intent_the_vendor_never_saw_is_opened_after_the_grace(
        env: Env, fake_zendesk: FakeZendesk, monkeypatch: pytest.MonkeyPatch) -> None:
    episode = put_episode(env, env.units[2], datetime.now(UTC) - timedelta(hours=2))
    config = TicketingConfig(zendesk=zendesk_config(fake_zendesk, auto_open=True))

    def die(*args: object) -> None:
        raise Crash
    with monkeypatch.context() as patch:
        patch.setattr(TicketPoller, "_open", die)  # dies after the intent, before the call
        first = poller(env, config)
        with pytest.raises(Crash):
            first.run_once()
        first.close()
    clock = Clock()
    second = poller(env, config, clock, grace_s=120)
    try:
        second.run_once()  # not found, but the vendor's index may trail: wait
        assert calls(fake_zendesk.vendor, *CREATE["zendesk"]) == []
        clock.advance(121)
        second.run_once()
        second.run_once()
    finally:
        second.close()
    assert len(calls(fake_zendesk.vendor, *CREATE["zendesk"])) == 1
    finds = calls(fake_zendesk.vendor, "GET", "/api/v2/tickets")
    assert {c.query["external_id"] for c in finds} == {marker_of(episode.episode_id)}
    assert fake_zendesk.tickets[-1]["external_id"] == marker_of(episode.episode_id)


def test_auto_open_off_and_config_checks(env: Env, fake_jira: FakeJira, tmp_path: Path) -> None:
    put_episode(env, env.units[0], datetime.now(UTC) - timedelta(days=1))
    config = TicketingConfig(jira=jira_config(fake_jira, auto_open=True, open_after_min=0))
    assert config.opener() is None
    the_poller = poller(env, config)
    try:
        the_poller.run_once()
    finally:
        the_poller.close()
    assert calls(fake_jira.vendor, *CREATE["jira"]) == []

    path = tmp_path / "ticketing.yaml"
    path.write_text("jira:\n  base_url: https://a.atlassian.net\n"
                    "  auth: {username: a@b.c, password_env: T}\n"
                    "  lookback: 2d\n  poll_s: 30\n"
                    "  create: {project: BESS, auto_open: true, levels: [unit, inverter]}\n"
                    "zendesk:\n  base_url: https://a.zendesk.com\n"
                    "  auth: {username: a@b.c, password_env: Z}\n")
    loaded = load_ticketing_config(path)
    assert loaded.rest_providers() == ["jira", "zendesk"] and loaded.opener() == "jira"
    assert loaded.jira.lookback == 2 * 86400 and loaded.jira.create.open_after_min == 30
    path.write_text(path.read_text().replace("password_env: Z}",
                                             "password_env: Z}\n  create: {auto_open: true}"))
    with pytest.raises(InvalidInput, match=r"create\.auto_open is set on jira and zendesk"):
        load_ticketing_config(path)
    path.write_text("jira:\n  lookback: soon\n")
    with pytest.raises(InvalidInput, match="not a duration: 'soon'"):
        load_ticketing_config(path)


# -- the command ----------------------------------------------------------------------------

def test_the_command_polls_once(env: Env, fake_jira: FakeJira, tmp_path: Path) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    fake_jira.add("BESS-5", now - timedelta(minutes=5), [f"asset:{env.units[0]}"])
    ticketing = tmp_path / "ticketing.yaml"
    ticketing.write_text(f"jira:\n  base_url: {fake_jira.vendor.url}\n"
                         "  timezone: Europe/Stockholm\n"
                         "  auth: {username: noc@acme.example, password_env: JIRA_API_TOKEN}\n")
    s = env.settings
    base = {"PATH": os.environ.get("PATH", ""), "KAFKA_BOOTSTRAP_SERVERS": s.require_kafka(),
            "REDIS_URL": s.require_redis(), "BESSMON_RUN_DIR": str(s.run_dir),
            "BESSMON_FLEET_FILE": str(s.fleet_file), "BESSMON_TOPIC_TICKETS": s.topic_tickets,
            "BESSMON_TOPIC_DLQ": s.topic_dlq, "JIRA_API_TOKEN": JIRA_TOKEN}
    command = [sys.executable, "-m", "infra.cli", "tickets", "poll", "--once"]
    done = subprocess.run(command, env={**base, "BESSMON_TICKETING_FILE": str(ticketing)},
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "jira: 1 tickets published" in done.stderr
    assert JIRA_TOKEN not in done.stderr
    assert [key for key, _ in tickets_on_topic(env)] == ["jira:BESS-5"]

    ticketing.write_text("zendesk:\n  asset: {label_prefix: asset_}\n")  # no REST connection
    done = subprocess.run(command, env={**base, "BESSMON_TICKETING_FILE": str(ticketing)},
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2
    assert "no provider has a REST connection" in done.stderr
