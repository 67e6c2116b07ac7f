"""Serve one site's battery units over OPC UA — the simulated fleet's OPC UA vendor.

The values come from the simulator's unit models (the same physics the Modbus gateways
serve, pinned values included); the vendor reports power in W and temperatures in kelvin, and
the device list it writes scales them back to canonical kW and °C. Each value keeps the source
timestamp of its last change, across server restarts too (like a controller whose OPC UA
server restarts while its data stays): a client must not report such a value a second time.

While a unit's communication is down (`Simulator.silent`), its nodes keep their last value
with the status `BadNoCommunication` (source time: when the drop began), as an aggregating
OPC UA server reports a field device it lost; when it returns they carry fresh values."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hmac
import ipaddress
import logging
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from asyncua import Server, ua
from asyncua.common.utils import ServiceError
from asyncua.crypto.permission_rules import User, UserRole
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from connectors.opcua.config import (
    NodeMapping,
    OpcUaDevice,
    OpcUaDeviceList,
    Security,
    dump_devices,
)
from infra.ports import free_port
from infra.sim.server import Simulator

log = logging.getLogger(__name__)
SERVER_APP_URI = "urn:bessmon:sim:opcua-server"


@dataclass(frozen=True)
class VendorTag:
    """How the vendor publishes a canonical tag: its node name and its own unit
    (vendor value = canonical * factor + shift)."""

    name: str
    factor: float = 1.0
    shift: float = 0.0
    integer: bool = False

    def mapping(self, asset_id: str, tag: str) -> NodeMapping:
        """The device-list entry that turns the vendor value back into the canonical one."""
        return NodeMapping(asset=asset_id, tag=tag, scale=1.0 / self.factor,
                           offset=-self.shift / self.factor)


VENDOR_TAGS: dict[str, VendorTag] = {
    "status_code": VendorTag("status_code", integer=True),
    "active_power_kw": VendorTag("active_power_w", factor=1000.0),
    "available_power_kw": VendorTag("available_power_w", factor=1000.0),
    "available_energy_kwh": VendorTag("available_energy_kwh"),
    "soc_pct": VendorTag("soc_pct"),
    "temperature_c": VendorTag("temperature_k", shift=273.15),
    "cell_temp_max_c": VendorTag("cell_temp_max_k", shift=273.15),
    "soh_pct": VendorTag("soh_pct"),
    "q_kvar": VendorTag("q_var", factor=1000.0),
    "v_pu": VendorTag("v_pu"),
    "f_hz": VendorTag("f_hz"),
    "voltage_v": VendorTag("dc_voltage_v"),
    "current_a": VendorTag("dc_current_a"),
    "temp_c_avg": VendorTag("cell_temp_avg_k", shift=273.15),
    "cycle_count": VendorTag("cycle_count"),
    "cooling_status": VendorTag("cooling_status", integer=True),
    "efficiency_pct": VendorTag("efficiency_pct"),
}


@dataclass(frozen=True)
class ServedNode:
    asset_id: str
    tag: str  # canonical
    vendor: VendorTag

    @property
    def name(self) -> str:
        return f"{self.asset_id}.{self.vendor.name}"


class _Users:
    """asyncua user manager: name and password, compared in constant time."""

    def __init__(self, users: Mapping[str, str]) -> None:
        self._users = dict(users)

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                 certificate: Any = None) -> User | None:
        expected = self._users.get(username or "")
        if expected is None or password is None or not hmac.compare_digest(
                password.encode(), expected.encode()):
            return None
        return User(role=UserRole.User, name=username)


class OpcUaSimServer:
    """One OPC UA server for one site: a variable per (asset, tag) under Objects/<site>/<unit>.

    `start()`/`stop()` may be called again and again (same port); `refresh()` copies the
    simulator's current values into the nodes; `run()` ticks the simulator and refreshes."""

    def __init__(
        self,
        sim: Simulator,
        site_id: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        users: Mapping[str, str] | None = None,
        certificate: Path | None = None,
        private_key: Path | None = None,
        trusted_clients: Sequence[Path] | None = None,
    ) -> None:
        if (certificate is None) != (private_key is None):
            raise ValueError("certificate and private_key go together")
        self.sim = sim
        self.site = sim.fleet.site(site_id)
        self.host = host
        self.port = port or free_port(host)
        self.users = dict(users) if users else None
        self.certificate = certificate
        self.private_key = private_key
        self.trusted_clients = [p.read_bytes() for p in trusted_clients or ()]
        self.namespace_uri = f"urn:bessmon:sim:{site_id}"
        self.namespace_index: int | None = None
        self.nodes: dict[str, tuple[ServedNode, ...]] = {
            unit.id: tuple(ServedNode(asset_id, tag, VENDOR_TAGS[tag])
                           for asset_id, tags in self._readings(unit.id).items()
                           for tag in tags if tag in VENDOR_TAGS)
            for unit in self.site.units
        }
        # Last value and source timestamp per node name: survives restarts.
        self.values: dict[str, tuple[float | int, dt.datetime]] = {}
        self.unit_of = {n.name: unit_id for unit_id, served in self.nodes.items()
                        for n in served}
        self.silent_since: dict[str, dt.datetime] = {}  # units without communication
        self._server: Server | None = None
        self._node_ids: dict[str, ua.NodeId] = {}
        self._lock = asyncio.Lock()

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}/bessmon/{self.site.id}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def _readings(self, unit_id: str) -> dict[str, dict[str, float]]:
        """The unit's values now (canonical units), pinned values included — read without
        drawing from the model's random stream, so serving OPC UA does not change what the
        simulator's other outputs would have been."""
        model = self.sim.models[unit_id]
        state = model.rng.getstate()
        try:
            readings = model.readings(self.sim.now())
        finally:
            model.rng.setstate(state)
        return {asset_id: tags | self.sim.overrides.get(asset_id, {})
                for asset_id, tags in readings.items()}

    def _update_values(self) -> list[str]:
        """Take the simulator's current values; the names of the nodes whose value changed."""
        # Source times on the wall clock, like the Modbus connector's poll times (the
        # simulation runs `speed` times faster).
        now = dt.datetime.fromtimestamp(self.sim.wall_ms(self.sim.now()) / 1000, dt.UTC)
        changed = []
        for unit_id, served in self.nodes.items():
            readings = self._readings(unit_id)
            silent = self.sim.silent(unit_id)
            back = not silent and self.silent_since.pop(unit_id, None) is not None
            if silent and unit_id not in self.silent_since:
                self.silent_since[unit_id] = now
                changed += [n.name for n in served if n.name in self.values]
            for node in served:
                canonical = readings[node.asset_id][node.tag]
                if node.vendor.integer:
                    value: float | int = round(canonical)
                else:
                    value = round(canonical * node.vendor.factor + node.vendor.shift, 6)
                old = self.values.get(node.name)
                if old is None or (not silent and (back or old[0] != value)):
                    self.values[node.name] = (value, now)
                    changed.append(node.name)
        return changed

    def _data_value(self, name: str, integer: bool) -> ua.DataValue:
        value, source_ts = self.values[name]
        variant = ua.Variant(int(value), ua.VariantType.UInt16) if integer \
            else ua.Variant(float(value), ua.VariantType.Double)
        since = self.silent_since.get(self.unit_of[name])
        if since is not None:
            return ua.DataValue(variant, SourceTimestamp=max(since, source_ts),
                                ServerTimestamp=dt.datetime.now(dt.UTC),
                                StatusCode_=ua.StatusCode(ua.StatusCodes.BadNoCommunication))
        return ua.DataValue(variant, SourceTimestamp=source_ts,
                            ServerTimestamp=dt.datetime.now(dt.UTC))

    async def start(self) -> None:
        async with self._lock:
            if self._server is not None:
                return
            self._update_values()
            server = Server(user_manager=_Users(self.users) if self.users else None)
            await server.init()
            server.disable_clock()  # its once-a-second task makes every stop() take a second
            server.set_endpoint(self.endpoint)
            server.set_server_name(f"bessmon simulator ({self.site.id})")
            await server.set_application_uri(SERVER_APP_URI)
            if self.certificate is not None and self.private_key is not None:
                await server.load_certificate(str(self.certificate))
                await server.load_private_key(str(self.private_key))
                server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
                                            ua.SecurityPolicyType.Basic256Sha256_Sign])
                if self.trusted_clients:
                    server.set_certificate_validator(self._validate_client)
            else:
                server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
            if self.users:
                server.set_identity_tokens([ua.UserNameIdentityToken])
            idx = await server.register_namespace(self.namespace_uri)
            self.namespace_index = idx
            site_folder = await server.nodes.objects.add_folder(
                ua.NodeId(self.site.id, idx), ua.QualifiedName(self.site.id, idx))
            for unit_id, served in self.nodes.items():
                unit_obj = await site_folder.add_object(ua.NodeId(unit_id, idx),
                                                        ua.QualifiedName(unit_id, idx))
                parents = {unit_id: unit_obj}
                for node in served:
                    parent = parents.get(node.asset_id)
                    if parent is None:
                        parent = parents[node.asset_id] = await unit_obj.add_object(
                            ua.NodeId(node.asset_id, idx), ua.QualifiedName(node.asset_id, idx))
                    dv = self._data_value(node.name, node.vendor.integer)
                    var = await parent.add_variable(ua.NodeId(node.name, idx),
                                                    ua.QualifiedName(node.vendor.name, idx),
                                                    dv.Value)
                    await server.write_attribute_value(var.nodeid, dv)
                    self._node_ids[node.name] = var.nodeid
            await server.start()
            self._server = server
            log.info("OPC UA server for %s at %s", self.site.id, self.endpoint)

    async def stop(self) -> None:
        async with self._lock:
            server, self._server = self._server, None
            self._node_ids = {}
            if server is not None:
                await server.stop()

    async def refresh(self) -> int:
        """Copy the simulator's current values into the nodes; the number that changed."""
        async with self._lock:
            changed = self._update_values()
            if self._server is None:
                return len(changed)
            integer = {n.name: n.vendor.integer for served in self.nodes.values()
                       for n in served}
            for name in changed:
                await self._server.write_attribute_value(
                    self._node_ids[name], self._data_value(name, integer[name]))
            return len(changed)

    async def run(self, tick_s: float = 0.5, *, drive_physics: bool = True) -> None:
        """Tick the simulator (unless something else does) and refresh, until cancelled."""
        while True:
            if drive_physics:
                self.sim.tick()
            await self.refresh()
            await asyncio.sleep(tick_s)

    async def _validate_client(self, certificate: x509.Certificate,
                               description: ua.ApplicationDescription) -> None:
        der = certificate.public_bytes(serialization.Encoding.DER)
        if not any(hmac.compare_digest(der, _der(t)) for t in self.trusted_clients):
            log.warning("refused untrusted client certificate %s", certificate.subject)
            raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)

    def device_list(
        self,
        *,
        sampling_interval_ms: float = 1000.0,
        security: Security | None = None,
        username: str | None = None,
        password_env: str | None = None,
        node_ids: Literal["index", "uri"] = "index",
        snapshots: bool = False,
    ) -> OpcUaDeviceList:
        """The connector's device list for this server: one device per battery unit, a node
        per (asset, tag) with the scaling back to canonical units. Call after `start()` when
        `node_ids` is "index" (the namespace index is the server's)."""
        if node_ids == "index" and self.namespace_index is None:
            raise RuntimeError("start the server first (the namespace index is the server's)")
        prefix = f"ns={self.namespace_index}" if node_ids == "index" \
            else f"nsu={self.namespace_uri}"
        devices = [
            OpcUaDevice(
                id=unit_id, endpoint=self.endpoint, security=security or Security(),
                username=username, password_env=password_env,
                sampling_interval_ms=sampling_interval_ms, snapshots=snapshots,
                nodes={f"{prefix};s={n.name}": n.vendor.mapping(n.asset_id, n.tag)
                       for n in served})
            for unit_id, served in self.nodes.items()
        ]
        return OpcUaDeviceList(devices=tuple(devices))

    def write_device_list(self, path: Path, **options: Any) -> OpcUaDeviceList:
        """Write `device_list(**options)` atomically (readers never see half a file)."""
        devices = self.device_list(**options)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(dump_devices(devices), encoding="utf-8")
        tmp.replace(path)
        return devices


def _der(data: bytes) -> bytes:
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data).public_bytes(serialization.Encoding.DER)
    return data


def make_certificate(directory: Path, name: str, application_uri: str,
                     days: int = 30) -> tuple[Path, Path]:
    """A self-signed application certificate (DER) and its RSA key (PEM) in `directory`, as
    OPC UA wants them: the application URI and this host (name, localhost, 127.0.0.1) in the
    subject alternative name, usable by client and server."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "bessmon")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([
            x509.UniformResourceIdentifier(application_uri),
            *[x509.DNSName(h) for h in dict.fromkeys((socket.gethostname(), "localhost"))],
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=True, key_encipherment=True,
            data_encipherment=True, key_agreement=False, key_cert_sign=False, crl_sign=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                              ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path = directory / f"{name}.der"
    key_path = directory / f"{name}-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


async def serve_opcua(server: OpcUaSimServer, *, devices_out: Path | None = None,
                      tick_s: float = 0.5, drive_physics: bool = True,
                      **device_options: Any) -> None:
    """Start the server, write its device list, tick until cancelled, stop."""
    await server.start()
    try:
        if devices_out is not None:
            server.write_device_list(devices_out, **device_options)
        await server.run(tick_s, drive_physics=drive_physics)
    finally:
        with contextlib.suppress(Exception):
            await server.stop()
