"""Runtime settings from the environment (pydantic-settings), shared by every process.

`KAFKA_BOOTSTRAP_SERVERS` and `REDIS_URL` select external services; unset, `bessmon up` and
the test suite start local ones and pass their addresses down. Everything else is
`BESSMON_<NAME>`."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_FLEET = REPO_ROOT / "infra" / "sim" / "fleet.yaml"
EXAMPLE_PROFILES = REPO_ROOT / "infra" / "sim" / "profiles"
EXAMPLE_MONITORING = REPO_ROOT / "infra" / "sim" / "monitoring.yaml"
EXAMPLE_CONTRACTS = REPO_ROOT / "infra" / "sim" / "contracts"
EXAMPLE_CONTROL = REPO_ROOT / "infra" / "sim" / "control.yaml"
PLACEHOLDER_TOKENS = {"", "changeme", "change-me", "secret", "token"}  # refused as secrets


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
    control_file: Path = EXAMPLE_CONTROL  # modes, reactions, interlocks, hard limits
    history_path: Path | None = None  # embedded history store; default <run_dir>/history.db
    run_dir: Path = REPO_ROOT / ".run"
    archive_dir: Path | None = None  # the analytics archive (Parquet); default <run_dir>/archive
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
    topic_commands: str = "bess.commands"
    topic_command_results: str = "bess.command.results"
    topic_partitions: int = Field(4, ge=1)
    # Device connectors: each device's poll figures (latency, drops, retries) published on
    # the device-health topic once per this many seconds (contracts/comms.py). Health
    # states themselves follow each device's own settings (health_window, offline_after,
    # latency_budget_s in its devices file).
    stats_every_s: float = Field(60.0, ge=1.0, le=3600.0)

    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=0, le=65535)
    # Authentication (api/auth/): local users and the key that signs their tokens …
    users_file: Path | None = None  # default <run_dir>/users.yaml
    jwt_key_file: Path | None = None  # default <run_dir>/auth/jwt-es256.pem
    token_ttl_s: float = Field(8 * 3600, gt=0, le=30 * 86400)
    # … and an enterprise identity provider, when set (api/auth/oidc.py).
    oidc_jwks_url: str | None = None
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_role_claim: str = "roles"
    oidc_customers_claim: str = "bessmon_customers"
    oidc_regions_claim: str = "bessmon_regions"
    api_db: Path | None = None  # API keys and the audit log; default <run_dir>/api.db
    # Protections (api/protections.py).
    rate_limit_per_minute: int = Field(1200, ge=1)  # requests per client
    login_attempts_per_minute: int = Field(10, ge=1)  # per client address and username
    max_request_bytes: int = Field(1 << 20, ge=1024)
    cors_origins: list[str] = []  # closed unless listed (JSON list in BESSMON_CORS_ORIGINS)
    # Live feed: heartbeat (and credential re-check) period of every WebSocket.
    ws_heartbeat_s: float = Field(15.0, gt=0, le=300)
    # Notifications (connectors/notify/): the SMTP relay (smtp://user:pass@host:port
    # ?starttls=1|0|auto, or smtps://), the sender address, the routing rules, the outbox.
    smtp_url: str | None = None
    smtp_from: str = "bessmon@localhost"
    notify_rules: Path | None = None
    notify_preferences: Path | None = None  # users' own; default <run_dir>/notify-preferences.yaml
    notify_db: Path | None = None  # default <run_dir>/notify.db
    notify_workers: int = Field(4, ge=1, le=64)  # sender threads, each its own SMTP connection
    # Signs the e-mails' acknowledge links (connectors/ack_secret.py); unset, a key file
    # <run_dir>/auth/ack-link.key shared by the API and the notifier of one machine.
    ack_secret: str | None = None
    # Prometheus metrics (connectors/metrics.py, docs/metrics.md): each part but the API (which
    # serves /metrics itself) listens on this host and port — 0: a free port, written to
    # <run_dir>/metrics/<part>.json — and answers only the bearer `metrics_token`; unset, a
    # key file <run_dir>/auth/metrics.token shared by the parts of one machine.
    metrics_enabled: bool = True
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(0, ge=0, le=65535)
    metrics_token: str | None = None

    @model_validator(mode="after")
    def _oidc_complete(self) -> Settings:
        given = [self.oidc_jwks_url, self.oidc_issuer, self.oidc_audience]
        if any(given) and not all(given):
            raise ValueError("BESSMON_OIDC_JWKS_URL, BESSMON_OIDC_ISSUER and "
                             "BESSMON_OIDC_AUDIENCE go together: set all three or none")
        if "*" in self.cors_origins:
            raise ValueError("BESSMON_CORS_ORIGINS must list origins, not '*'")
        if self.metrics_token is not None and (
                self.metrics_token.strip().lower() in PLACEHOLDER_TOKENS
                or len(self.metrics_token.strip()) < 32):
            raise ValueError("BESSMON_METRICS_TOKEN must be a random secret of at least 32 "
                             "characters (e.g. openssl rand -base64 32)")
        return self

    @property
    def users_path(self) -> Path:
        return self.users_file or self.run_dir / "users.yaml"

    @property
    def jwt_key_path(self) -> Path:
        return self.jwt_key_file or self.run_dir / "auth" / "jwt-es256.pem"

    @property
    def api_db_path(self) -> Path:
        return self.api_db or self.run_dir / "api.db"

    @property
    def notify_db_path(self) -> Path:
        return self.notify_db or self.run_dir / "notify.db"

    @property
    def report_archive_dir(self) -> Path:
        """The archived compliance reports (`bessmon report run-due` writes them; the API
        serves them, the notifier attaches them to report e-mails)."""
        return report_archive_dir(self.run_dir)

    @property
    def notify_rules_path(self) -> Path:
        """The rules file the notifier reads and the API's rule management writes."""
        return self.notify_rules or self.run_dir / "notify-rules.yaml"

    @property
    def notify_preferences_path(self) -> Path:
        """Users' own notification preferences: the API writes them, the notifier reads them."""
        return self.notify_preferences or self.run_dir / "notify-preferences.yaml"

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


def report_archive_dir(run_dir: Path) -> Path:
    """`<run dir>/reports`: the report archive of the run directory."""
    return run_dir / "reports"
