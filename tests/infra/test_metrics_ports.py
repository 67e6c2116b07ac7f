"""The metrics ports of real parts (`bessmon connect modbus`, `bessmon control run`, `bessmon
notify run`, started as processes by the test rig against the simulator): each listens on
127.0.0.1 at the port it wrote to `<run dir>/metrics/<part>.json`, answers `/metrics` only
with the machine's metrics token (401 without it or with another; 404 elsewhere) and shows
its own figures — the connector's polls per gateway, the control loop's units per state."""

from __future__ import annotations

import json
import stat
import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from connectors.metrics import metrics_token, metrics_token_path, read_targets
from connectors.modbus.devices import load_devices
from contracts.fleet import load_fleet
from infra.rig import Rig

PARTS = {"modbus-devices": "connector", "control": "control", "notify": "notify"}


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    r = Rig.start(tmp_path_factory.mktemp("metrics-rig"),
                  parts=("connector", "control", "notify"))
    try:
        r.wait("every part's metrics address",
               lambda: set(PARTS) <= set(read_targets(r.run_dir)), 60)
        yield r
    finally:
        r.stop()


def scrape(address: str, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.get(f"http://{address}/metrics", headers=headers, timeout=5)


def figures(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def total(text: str, name: str, **labels: str) -> float:
    return sum(v for got, v in figures(text).get(name, [])
               if all(got.get(k) == want for k, want in labels.items()))


def test_every_part_listens_on_loopback_and_refuses_without_the_token(rig: Rig) -> None:
    targets = read_targets(rig.run_dir)
    token = metrics_token(rig.settings)
    assert stat.S_IMODE(metrics_token_path(rig.settings).stat().st_mode) == 0o600
    for part in PARTS:
        address = targets[part]
        assert address.startswith("127.0.0.1:"), address
        entry = json.loads((rig.run_dir / "metrics" / f"{part}.json").read_text())
        assert entry == [{"targets": [address], "labels": {"part": part}}]  # file_sd
        assert scrape(address, None).status_code == 401
        assert scrape(address, "x" * 43).status_code == 401
        assert scrape(address, token[:-1]).status_code == 401
        denied = httpx.get(f"http://{address}/metrics", timeout=5,
                           headers={"Authorization": f"Basic {token}"})
        assert denied.status_code == 401 and denied.headers["www-authenticate"] == "Bearer"
        assert httpx.get(f"http://{address}/other", timeout=5,
                         headers={"Authorization": f"Bearer {token}"}).status_code == 404
        answer = scrape(address, token)
        assert answer.status_code == 200, (part, answer.text)
        assert "process_cpu_seconds_total" in answer.text


def test_the_connector_counts_its_polls_per_gateway(rig: Rig) -> None:
    address, token = read_targets(rig.run_dir)["modbus-devices"], metrics_token(rig.settings)
    devices = load_devices(rig.run_dir / "devices.yaml").devices
    gateways = {f"{d.host}:{d.port}" for d in devices}
    deadline = time.monotonic() + 30
    while True:
        text = scrape(address, token).text
        polled = {g: total(text, "bessmon_connector_polls_total", protocol="modbus", gateway=g)
                  for g in gateways}
        if all(n >= len(devices) for n in polled.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert all(n >= 1 for n in polled.values()), polled  # every gateway is polled
    latencies = total(text, "bessmon_connector_poll_duration_seconds_count", protocol="modbus")
    errors = total(text, "bessmon_connector_poll_errors_total")
    assert latencies >= 1 and latencies + errors <= sum(polled.values())
    assert total(text, "bessmon_connector_records_published_total", kind="sample") >= 1
    assert total(text, "bessmon_connector_spool_bytes") == 0  # the broker takes everything
    # Counters only rise: a second scrape later shows more polls.
    time.sleep(1.5)
    again = scrape(address, token).text
    assert total(again, "bessmon_connector_polls_total") > sum(polled.values())


def test_the_control_loop_reports_its_units_by_state(rig: Rig) -> None:
    """(Its records count once it has its topics assigned and read: a moment later on a
    busy machine.)"""
    address, token = read_targets(rig.run_dir)["control"], metrics_token(rig.settings)
    units = sum(len(s.units) for s in load_fleet(rig.settings.fleet_file).sites)
    text = scrape(address, token).text
    assert total(text, "bessmon_control_units") == units
    deadline = time.monotonic() + 30
    while total(text, "bessmon_consumer_records_total", consumer="control") == 0 and \
            time.monotonic() < deadline:
        time.sleep(0.2)
        text = scrape(address, token).text
    assert total(text, "bessmon_consumer_records_total", consumer="control") > 0


def test_the_notifier_reports_its_outbox(rig: Rig) -> None:
    """(Its metrics answer as soon as it starts; the outbox figures follow once it has its
    topics assigned, a moment later on a busy machine.)"""
    address, token = read_targets(rig.run_dir)["notify"], metrics_token(rig.settings)
    deadline = time.monotonic() + 30
    while "bessmon_notify_outbox_messages" not in (
            found := figures(scrape(address, token).text)) and time.monotonic() < deadline:
        time.sleep(0.2)
    states = {labels["state"] for labels, _ in found["bessmon_notify_outbox_messages"]}
    assert states == {"pending", "sent", "failed"}


def test_a_stopped_part_takes_its_address_away(rig: Rig) -> None:
    """(Last: the notifier is gone afterwards.)"""
    rig.kill("notify", sig=15)  # SIGTERM: the notifier stops in order
    assert "notify" not in read_targets(rig.run_dir)
