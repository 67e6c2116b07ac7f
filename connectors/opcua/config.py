"""The OPC UA connector's device list: which server serves a battery unit's values, how to log
in, and which node holds which (asset, canonical tag) — data, validated like every input here
(errors name the file, the line, the key and the problem).

```yaml
devices:
- id: nordvik-u01                       # the battery unit (fleet id): key of its samples
  endpoint: opc.tcp://10.1.2.3:4840/bess
  security:                             # default {policy: none}
    policy: Basic256Sha256
    mode: SignAndEncrypt                # or Sign
    client_certificate: pki/client.der  # relative to this file
    client_private_key: pki/client-key.pem
    server_certificate: pki/server.der  # optional: pin it (else the one the endpoint shows)
  username: bessmon                     # optional, with password_env
  password_env: NORDVIK_OPCUA_PASSWORD  # the password is never kept in this file
  sampling_interval_ms: 1000            # per device; a node may override it
  snapshots: true                       # optional: every sample carries all nodes' values
  nodes:
    "ns=2;s=nordvik-u01.soc_pct": {asset: nordvik-u01, tag: soc_pct, min: 0, max: 100}
    "ns=2;s=nordvik-u01.active_power_w": {asset: nordvik-u01, tag: active_power_kw,
                                          scale: 0.001, sampling_interval_ms: 250}
```
A value reported by a node becomes `value * scale + offset` under its asset and tag. A node
may declare the range of that value (`min`, `max`; then, as with a scale or offset, a number
is due): what cannot be true — not finite, out of range, a string where a number is due, an
array or structure, a source timestamp outside 2000..2100 — is left out of the sample and
sent to the dead-letter topic (connectors/opcua/client.py).

`snapshots` (default false): a sample carries, besides the values that changed, the last good
value of every other node of the device (sample-and-hold) — for consumers that read each
sample as the device's whole state, as the flows do with a Modbus poll: there, a sample
without a unit's status reads as that unit gone silent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlparse

import yaml
from asyncua import ua
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from contracts.errors import InvalidInput
from contracts.fleet import Fleet
from contracts.yamltext import ID_PATTERN, YamlDocument, read_text, validate

AssetId = Annotated[str, Field(pattern=ID_PATTERN)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
Interval = Annotated[float, Field(ge=0, allow_inf_nan=False)]
TAG_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_")
ENV_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
MIN_PUBLISHING_MS = 10.0


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Security(_Model):
    """How the secure channel is set up: `none`, or Basic256Sha256 with our certificate."""

    policy: Literal["none", "Basic256Sha256"] = "none"
    mode: Literal["Sign", "SignAndEncrypt"] | None = None  # Basic256Sha256: SignAndEncrypt
    client_certificate: Path | None = None  # DER or PEM
    client_private_key: Path | None = None  # PEM
    server_certificate: Path | None = None  # pinned; unset: the one the endpoint presents

    @model_validator(mode="after")
    def _consistent(self) -> Security:
        files = (self.client_certificate, self.client_private_key, self.server_certificate)
        if self.policy == "none":
            if self.mode is not None or any(f is not None for f in files):
                raise ValueError("policy 'none' takes no mode and no certificates")
        elif self.client_certificate is None or self.client_private_key is None:
            raise ValueError(f"policy {self.policy!r} needs client_certificate and "
                             "client_private_key")
        return self

    @property
    def message_mode(self) -> Literal["None", "Sign", "SignAndEncrypt"]:
        if self.policy == "none":
            return "None"
        return self.mode or "SignAndEncrypt"


class NodeMapping(_Model):
    """One node: the asset and canonical tag its value is, how to scale it, and the range a
    scaled value must be in (a value outside it is refused: left out, dead-lettered)."""

    asset: AssetId
    tag: str
    scale: Finite = 1.0
    offset: Finite = 0.0
    min: Finite | None = None  # of the scaled value; with a range, a number is due
    max: Finite | None = None
    sampling_interval_ms: Interval | None = None  # unset: the device's

    @model_validator(mode="after")
    def _range(self) -> NodeMapping:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is above max {self.max:g}")
        return self

    @field_validator("tag")
    @classmethod
    def _canonical(cls, value: str) -> str:
        if not value or not value[0].isalpha() or not set(value) <= TAG_CHARS:
            raise ValueError(f"must be a canonical tag name: lower-case letters, digits and '_',"
                             f" starting with a letter (got {value!r})")
        return value

    @field_validator("scale")
    @classmethod
    def _not_zero(cls, value: float) -> float:
        if value == 0:
            raise ValueError("must not be 0")
        return value


class OpcUaDevice(_Model):
    id: AssetId  # the battery unit (fleet id); key of its samples on the telemetry topic
    endpoint: str
    security: Security = Security()
    username: str | None = Field(None, min_length=1)
    password_env: str | None = None  # the environment variable that holds the password
    sampling_interval_ms: Interval = 1000.0
    publishing_interval_ms: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    timeout_s: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 4.0
    snapshots: bool = False  # samples carry every node's last good value, not only changes
    nodes: dict[str, NodeMapping] = Field(min_length=1)

    @field_validator("endpoint")
    @classmethod
    def _opc_tcp(cls, value: str) -> str:
        url = urlparse(value)
        try:
            port = url.port
        except ValueError:
            port = None
        if url.scheme != "opc.tcp" or not url.hostname or port is None:
            raise ValueError(f"must be an opc.tcp://host:port URL (got {value!r})")
        return value

    @field_validator("password_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(ENV_PATTERN, value):
            raise ValueError("must be an environment variable name: letters, digits and '_', "
                             f"not starting with a digit (got {value!r})")
        return value

    @model_validator(mode="after")
    def _credentials(self) -> OpcUaDevice:
        if (self.username is None) != (self.password_env is None):
            raise ValueError("username and password_env go together (the password is read from "
                             "that environment variable)")
        return self

    def sampling_ms(self, node: NodeMapping) -> float:
        return self.sampling_interval_ms if node.sampling_interval_ms is None \
            else node.sampling_interval_ms

    @property
    def publishing_ms(self) -> float:
        """The subscription's publishing interval: as configured, else the fastest sampling."""
        if self.publishing_interval_ms is not None:
            return self.publishing_interval_ms
        return max(MIN_PUBLISHING_MS, min(self.sampling_ms(n) for n in self.nodes.values()))


class OpcUaDeviceList(_Model):
    devices: tuple[OpcUaDevice, ...] = Field(min_length=1)


def parse_node_id(text: str) -> ua.NodeId:
    """`ns=2;s=name`, `i=2258`, `nsu=urn:…;s=name` (an ExpandedNodeId, resolved on connect)."""
    node_id: ua.NodeId = ua.NodeId.from_string(text)
    return node_id


def parse_devices(text: str, source: str, *, base_dir: Path | None = None,
                  fleet: Fleet | None = None) -> OpcUaDeviceList:
    """Validate device-list YAML; certificate paths are taken relative to `base_dir` and must
    exist; with `fleet`, every device must be a battery unit and map only its own assets."""
    doc = YamlDocument(text, source)
    _refuse_passwords(doc)
    devices = validate(doc, OpcUaDeviceList, "a 'devices' list")
    seen_ids: dict[str, int] = {}
    mapped: dict[tuple[str, str], str] = {}
    out = []
    for i, device in enumerate(devices.devices):
        where: list[str | int] = ["devices", i]
        if device.id in seen_ids:
            raise doc.error([*where, "id"], f"duplicate device id {device.id!r}")
        seen_ids[device.id] = i
        for key, node in device.nodes.items():
            try:
                parse_node_id(key)
            except (ua.UaStringParsingError, ValueError):
                raise doc.error([*where, "nodes", key], "not an OPC UA node id (try "
                                "ns=2;s=name, ns=2;i=1001 or nsu=urn:…;s=name)") from None
            pair = (node.asset, node.tag)
            if pair in mapped:
                raise doc.error([*where, "nodes", key], f"asset {node.asset!r} tag {node.tag!r}"
                                f" is already mapped by {mapped[pair]}")
            mapped[pair] = f"device {device.id!r} node {key!r}"
        if fleet is not None:
            _check_fleet(doc, where, device, fleet)
        out.append(_resolve_files(doc, where, device, base_dir))
    return OpcUaDeviceList(devices=tuple(out))


def load_devices(path: Path, fleet: Fleet | None = None) -> OpcUaDeviceList:
    return parse_devices(read_text(path), str(path), base_dir=path.parent, fleet=fleet)


def dump_devices(devices: OpcUaDeviceList) -> str:
    data = devices.model_dump(mode="json", exclude_defaults=True)
    return str(yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=120))


def passwords(devices: OpcUaDeviceList, environ: Mapping[str, str],
              source: str) -> dict[str, str]:
    """Device id → password, from the environment variables the list names."""
    out: dict[str, str] = {}
    for i, device in enumerate(devices.devices):
        if device.password_env is None:
            continue
        value = environ.get(device.password_env)
        if not value:
            raise InvalidInput(source, f"devices[{i}].password_env",
                               f"environment variable {device.password_env} is not set")
        out[device.id] = value
    return out


def _refuse_passwords(doc: YamlDocument) -> None:
    """A password in the file is refused by name (not as just another unknown key)."""
    items = doc.data.get("devices") if isinstance(doc.data, dict) else None
    for i, item in enumerate(items if isinstance(items, list) else []):
        if isinstance(item, dict) and "password" in item:
            raise doc.error(["devices", i, "password"], "passwords are never kept in the device"
                            " list: name the environment variable that holds it in password_env")


def _check_fleet(doc: YamlDocument, where: list[str | int], device: OpcUaDevice,
                 fleet: Fleet) -> None:
    asset = fleet.assets.get(device.id)
    if asset is None or asset.kind != "unit":
        raise doc.error([*where, "id"], f"{device.id!r} is not a battery unit of the fleet")
    for key, node in device.nodes.items():
        owner = fleet.assets.get(node.asset)
        if owner is None or owner.unit_id != device.id:
            raise doc.error([*where, "nodes", key, "asset"],
                            f"{node.asset!r} is not an asset of unit {device.id!r}")


def _resolve_files(doc: YamlDocument, where: list[str | int], device: OpcUaDevice,
                   base_dir: Path | None) -> OpcUaDevice:
    security = device.security
    update: dict[str, Path] = {}
    for name in ("client_certificate", "client_private_key", "server_certificate"):
        path: Path | None = getattr(security, name)
        if path is None:
            continue
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        if not path.is_file():
            raise doc.error([*where, "security", name], f"no such file: {path}")
        update[name] = path
    if not update:
        return device
    return device.model_copy(update={"security": security.model_copy(update=update)})
