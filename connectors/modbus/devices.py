"""The connector's device list: which controller answers where, speaking which profile."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from contracts.yamltext import YamlDocument, read_text, validate


class DeviceConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1)  # key of its samples on the telemetry topic
    asset: str = Field(min_length=1)  # the battery unit it controls (fleet id)
    host: str
    port: int = Field(ge=1, le=65535)
    unit_id: int = Field(ge=0, le=255)  # Modbus unit (slave) id behind the gateway
    profile: str
    poll_interval_s: float = Field(1.0, gt=0)
    timeout_s: float = Field(2.0, gt=0)


class DeviceList(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    devices: tuple[DeviceConfig, ...] = Field(min_length=1)


def parse_devices(text: str, source: str) -> DeviceList:
    return validate(YamlDocument(text, source), DeviceList, "a 'devices' list")


def load_devices(path: Path) -> DeviceList:
    return parse_devices(read_text(path), str(path))


def dump_devices(devices: DeviceList) -> str:
    data = devices.model_dump(mode="json")
    return str(yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=120))
