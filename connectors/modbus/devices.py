"""The connector's device list: which controller answers where, speaking which profile."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from contracts.events import Name
from contracts.yamltext import YamlDocument, read_text, validate


class DeviceConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Name  # key of its samples on the telemetry topic
    asset: str = Field(min_length=1)  # the battery unit it controls (fleet id)
    host: str
    port: int = Field(ge=1, le=65535)
    unit_id: int = Field(ge=0, le=255)  # Modbus unit (slave) id behind the gateway
    profile: str  # a profile id, or "sunspec": discover the device's SunSpec models
    poll_interval_s: float = Field(1.0, gt=0)  # points without a poll group
    poll_groups: dict[str, Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict)  # this device's interval of a profile's poll group, by name
    timeout_s: float = Field(2.0, gt=0)  # per request
    # Requests in flight at once on its gateway's connection (the least its devices say):
    # 1, one after another, unless the gateway is known to take pipelined requests.
    pipeline: int = Field(1, ge=1, le=64)
    retries: int = Field(2, ge=0, le=10)  # further attempts of a failed poll
    backoff_s: float = Field(0.1, gt=0)  # first wait before a retry / reconnect; doubles
    backoff_max_s: float = Field(5.0, gt=0)  # longest wait between attempts
    latency_budget_s: float = Field(1.0, gt=0)  # a slower poll counts against health
    health_window: int = Field(10, ge=1, le=1000)  # polls considered for `degraded`
    offline_after: int = Field(3, ge=1, le=1000)  # consecutive failed polls → `offline`

    @model_validator(mode="after")
    def _backoff_bounds(self) -> DeviceConfig:
        if self.backoff_max_s < self.backoff_s:
            raise ValueError(f"backoff_max_s {self.backoff_max_s} is below backoff_s "
                             f"{self.backoff_s}")
        return self


class DeviceList(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    devices: tuple[DeviceConfig, ...] = Field(min_length=1)


def parse_devices(text: str, source: str) -> DeviceList:
    return validate(YamlDocument(text, source), DeviceList, "a 'devices' list")


def load_devices(path: Path) -> DeviceList:
    return parse_devices(read_text(path), str(path))


def dump_devices(devices: DeviceList) -> str:
    data = devices.model_dump(mode="json", exclude_defaults=True)
    return str(yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=120))


def shard(devices: tuple[DeviceConfig, ...], index: int, count: int
          ) -> tuple[DeviceConfig, ...]:
    """The devices of shard `index` of `count` (`bessmon connect modbus --shard I/N`): whole
    gateways, dealt out in turn by their address in sorted order, so that every device is
    polled by exactly one of N connectors and a gateway's one TCP connection stays one."""
    if not 0 <= index < count:
        raise ValueError(f"shard {index}/{count}: must be I/N with 0 <= I < N")
    gateways = sorted({(d.host, d.port) for d in devices})
    mine = set(gateways[index::count])
    return tuple(d for d in devices if (d.host, d.port) in mine)
