"""Free ports for the local services: many asked for at once are all different and free; a
restarted simulator finds the ports it served on before."""

from __future__ import annotations

import socket
from pathlib import Path

from connectors.modbus.devices import DeviceConfig, DeviceList, dump_devices
from contracts.fleet import Fleet
from infra.ports import (
    DEFAULT_EPHEMERAL_LOW,
    EPHEMERAL_RANGE,
    free_ports,
    is_listening,
    pick_range,
)
from infra.sim.server import previous_ports


def test_ports_asked_for_together_are_distinct_and_bindable() -> None:
    ports = free_ports(200)
    assert len(set(ports)) == 200
    assert not any(is_listening("127.0.0.1", p, timeout_s=0.2) for p in ports[:20])
    socks = []
    try:
        for port in ports:  # every one of them can be listened on, all at the same time
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(sock)
            sock.bind(("127.0.0.1", port))
            sock.listen()
    finally:
        for sock in socks:
            sock.close()


def test_ports_lie_below_the_ephemeral_range() -> None:
    """Where no outgoing connection takes its source port from, between the pick and the
    service's bind."""
    low, high = pick_range()
    ephemeral_low = int(EPHEMERAL_RANGE.read_text(encoding="ascii").split()[0]) \
        if EPHEMERAL_RANGE.exists() else DEFAULT_EPHEMERAL_LOW
    assert 1024 <= low < high < ephemeral_low
    assert all(low <= p <= high for p in free_ports(50))


def test_a_restarted_simulator_finds_its_earlier_ports(example_fleet: Fleet,
                                                       tmp_path: Path) -> None:
    """`bessmon sim --keep-ports`: the ports of the device lists it wrote before, those still
    free; none from lists that are missing or broken."""
    nordvik, elbe, mesa = example_fleet.sites
    a, b, taken, opcua = free_ports(4)
    devices = DeviceList(devices=tuple(
        DeviceConfig(id=u.id, asset=u.id, host="127.0.0.1", port=port, unit_id=k + 1,
                     profile="bess-unit-v1")
        for site, port in ((nordvik, a), (elbe, b)) for k, u in enumerate(site.units)))
    (tmp_path / "devices.yaml").write_text(dump_devices(devices))
    unit = mesa.units[0].id
    (tmp_path / "opcua.yaml").write_text(
        f"devices:\n- id: {unit}\n  endpoint: opc.tcp://127.0.0.1:{opcua}/bess\n"
        f"  nodes:\n    \"ns=2;s={unit}.soc_pct\": {{asset: {unit}, tag: soc_pct}}\n")
    assert previous_ports(example_fleet, tmp_path / "devices.yaml",
                          tmp_path / "opcua.yaml") == ({"nordvik": a, "elbe": b}, opcua)
    with socket.socket() as holder:  # elbe's port is taken meanwhile: a fresh one for it
        holder.bind(("127.0.0.1", b))
        holder.listen()
        assert previous_ports(example_fleet, tmp_path / "devices.yaml",
                              tmp_path / "nope.yaml") == ({"nordvik": a}, 0)
    (tmp_path / "devices.yaml").write_text("devices: [{id: 1")
    assert previous_ports(example_fleet, tmp_path / "devices.yaml",
                          tmp_path / "missing.yaml") == ({}, 0)
    assert taken  # (four distinct ports were asked for)
