"""The simulator's tickets reach the real API over HTTP and land on the tickets topic: a fault
injected into the running simulator (`serve`, as `bessmon sim` runs it) is ticketed a few
simulated minutes later and resolved when it clears — even though the API only comes up after
the simulator has started sending (the deliveries wait and are tried again)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from pathlib import Path

import pytest
import uvicorn

from api.main import create_app
from connectors.kafka import ensure_topics, read_topic
from connectors.modbus.profile import load_profiles
from connectors.settings import EXAMPLE_PROFILES, Settings
from contracts.events import TicketEvent
from contracts.fleet import Fleet
from infra.ports import free_port
from infra.sim.server import Simulator, serve
from infra.sim.ticket_sender import WebhookSender
from infra.sim.tickets import TicketDesk

SECRET = "sim-to-api-secret-5c1f0e"


@pytest.mark.timeout(90)
def test_a_simulated_fault_becomes_an_open_then_resolved_ticket_on_the_topic(
        settings: Settings, example_fleet: Fleet, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BESSMON_WEBHOOK_SECRET_JIRA", SECRET)
    topic = f"t-{uuid.uuid4().hex[:8]}.tickets.raw"
    ensure_topics(settings.require_kafka(), [topic], partitions=2)
    settings = settings.model_copy(update={"topic_tickets": topic,
                                           "run_dir": tmp_path / "run"})
    block = example_fleet.sites[1].units[2].inverters[0].blocks[4]
    # 600× faster: the 5-minute ticket delay takes half a second, the 30-minute fault 3 s.
    sim = Simulator(example_fleet, load_profiles(EXAMPLE_PROFILES), seed=4, speed=600,
                    tickets=TicketDesk(delay_s=300, project="SIMT"))
    port = free_port()
    sender = WebhookSender(f"http://127.0.0.1:{port}", SECRET.encode(), backoff_s=0.2,
                           backoff_max_s=0.5, attempts=30)
    api = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                                        log_level="warning"))

    async def scenario() -> tuple[float, float]:
        started = time.time()
        task = asyncio.ensure_future(serve(sim, devices_out=tmp_path / "devices.yaml",
                                           token="s" * 24, tickets=sender))
        api_task: asyncio.Future[None] | None = None
        try:
            while not (tmp_path / "devices.yaml").exists():
                await asyncio.sleep(0.05)
            sim.inject_fault(block.id, 1800)
            await asyncio.sleep(1.5)  # the ticket is due: nobody answers yet
            assert sender.sent == [] and sender.pending == 1
            api_task = asyncio.ensure_future(api.serve())
            deadline = time.monotonic() + 30
            while len(sender.sent) < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            return started, time.time()
        finally:
            task.cancel()
            api.should_exit = True
            for t in (task, api_task):
                if t is not None:
                    with contextlib.suppress(asyncio.CancelledError):
                        await t

    started, ended = asyncio.run(scenario())
    assert [(change, status) for _, change, status in sender.sent] == [
        ("created", "published"), ("resolved", "published")], sender.dropped
    messages = read_topic(settings.require_kafka(), topic, timeout_s=15, idle_s=1.5)
    events = [TicketEvent.model_validate_json(m.value() or b"") for m in messages]
    assert [(e.provider, e.ticket_id, e.asset_id, e.status) for e in events] == [
        ("jira", "SIMT-1", block.id, "open"), ("jira", "SIMT-1", block.id, "resolved")]
    assert {(m.key() or b"").decode() for m in messages} == {"jira:SIMT-1"}
    opened, resolved = events
    # Times on the wall clock: opened 0.5 s and resolved 3 s after the fault was injected.
    assert resolved.resolved_ms is not None
    assert started * 1000 < opened.opened_ms < resolved.resolved_ms <= ended * 1000
    assert 2300 < resolved.resolved_ms - opened.opened_ms < 2700
