"""Runtime settings from the environment (pydantic-settings), shared by every process.

`KAFKA_BOOTSTRAP_SERVERS` and `REDIS_URL` select external services; unset, `bessmon up` and
the test suite start local ones and pass their addresses down. Everything else is
`BESSMON_<NAME>`."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_FLEET = REPO_ROOT / "infra" / "sim" / "fleet.yaml"
EXAMPLE_PROFILES = REPO_ROOT / "infra" / "sim" / "profiles"
EXAMPLE_MONITORING = REPO_ROOT / "infra" / "sim" / "monitoring.yaml"
EXAMPLE_CONTRACTS = REPO_ROOT / "infra" / "sim" / "contracts"
PLACEHOLDER_TOKENS = {"", "changeme", "change-me", "secret", "token"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BESSMON_", extra="ignore")

    environment: Literal["development", "production"] = "development"
    kafka_bootstrap_servers: str | None = Field(None, validation_alias="KAFKA_BOOTSTRAP_SERVERS")
    redis_url: str | None = Field(None, validation_alias="REDIS_URL")
    questdb_url: str | None = Field(None, validation_alias="QUESTDB_URL")

    fleet_file: Path = EXAMPLE_FLEET
    profiles_dir: Path = EXAMPLE_PROFILES  # Modbus register maps, one YAML per device type
    monitoring_file: Path = EXAMPLE_MONITORING  # tags, status codes, limits, quality
    contracts_dir: Path = EXAMPLE_CONTRACTS  # one LTSA contract YAML per site
    history_path: Path | None = None  # embedded history store; default <run_dir>/history.db
    run_dir: Path = REPO_ROOT / ".run"
    # Connectors spool here while the broker is unreachable (default <run_dir>/spool/<name>).
    spool_dir: Path | None = None
    spool_max_bytes: int = Field(1 << 30, ge=1 << 20)

    topic_telemetry: str = "bess.telemetry.raw"
    topic_status: str = "bess.status"
    topic_availability: str = "bess.availability"
    topic_dlq: str = "bess.dlq"
    topic_tickets: str = "bess.tickets.raw"
    topic_breaches: str = "bess.breaches"
    topic_alerts: str = "bess.alerts"
    topic_device_health: str = "bess.device.health"
    topic_partitions: int = Field(4, ge=1)

    # Event time: a unit silent for this long is `unknown` with cause `comms_loss`.
    stale_after_s: float = Field(10.0, gt=0)
    # Site snapshots are published at most this often (event time) unless a status changes.
    publish_every_s: float = Field(1.0, gt=0)

    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=0, le=65535)
    api_token: SecretStr | None = None

    @model_validator(mode="after")
    def _no_placeholder_secrets(self) -> Settings:
        token = self.api_token.get_secret_value() if self.api_token else None
        if self.environment == "production" and (
            token is None or token.lower() in PLACEHOLDER_TOKENS or len(token) < 16
        ):
            raise ValueError("BESSMON_API_TOKEN must be a real secret (16+ chars) in production")
        return self

    def spool_for(self, connector: str) -> Path:
        """The spool directory of one connector process (one per process: never shared)."""
        return (self.spool_dir or self.run_dir / "spool") / connector

    def require_kafka(self) -> str:
        if not self.kafka_bootstrap_servers:
            raise RuntimeError("KAFKA_BOOTSTRAP_SERVERS is not set (bessmon up sets it for you)")
        return self.kafka_bootstrap_servers

    def require_redis(self) -> str:
        if not self.redis_url:
            raise RuntimeError("REDIS_URL is not set (bessmon up sets it for you)")
        return self.redis_url


@lru_cache
def get_settings() -> Settings:
    return Settings()
