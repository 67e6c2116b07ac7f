"""Ticketing configuration: what comes from the environment (webhook secrets, limits, where
the mapping file is) and the mapping file itself (how each vendor's tickets map, how to reach
its REST API). Secrets are only ever named here, by environment variable; their values are
read when needed and never logged or shown.

Environment (pydantic-settings, `BESSMON_` prefix):

| variable | meaning |
|---|---|
| `BESSMON_WEBHOOK_SECRET_JIRA` | the secret set on the Jira webhook (X-Hub-Signature) |
| `BESSMON_WEBHOOK_SECRET_SERVICENOW` | the shared secret of the ServiceNow business rule |
| `BESSMON_WEBHOOK_SECRET_ZENDESK` | the Zendesk webhook's signing secret |
| `BESSMON_TICKETING_FILE` | the YAML below; unset: every vendor's defaults |
| `BESSMON_WEBHOOK_MAX_BYTES` | largest webhook body accepted (default 1 MiB) |
| `BESSMON_WEBHOOK_DEDUPE_TTL_S` | how long a delivery is remembered (default 7 days) |

A provider without a secret refuses its webhooks (403). The mapping file adds, per provider,
the REST connection and what to fill in when opening a ticket (mapping keys: mapping.py):

```yaml
jira:
  base_url: https://acme.atlassian.net
  auth: {username: noc@acme.example, password_env: JIRA_API_TOKEN}   # email + API token
  timezone: Europe/Stockholm        # the API user's profile zone: JQL times are read in it
  asset: {field: customfield_10042, label_prefix: "asset:"}
  create: {project: BESS, issue_type: Incident, priorities: {critical: Highest}}
servicenow:
  base_url: https://acme.service-now.com
  auth: {kind: bearer, token_env: SN_OAUTH_TOKEN}    # or basic: username + password_env
  asset: {field: cmdb_ci, table: {3f1c2a9e1b7d4c10a3b5e6f7a8b9c0d1: nordvik-u01}}
  create: {category: hardware, priorities: {critical: "1", major: "2"}}
zendesk:
  base_url: https://acme.zendesk.com
  auth: {username: noc@acme.example, password_env: ZENDESK_API_TOKEN}  # sent as email/token
  asset: {field: "360012345678", label_prefix: "asset_"}
```"""

from __future__ import annotations

import os
from collections.abc import Generator, Mapping
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors.settings import PLACEHOLDER_TOKENS
from connectors.ticketing.mapping import DEFAULTS, TicketMapping
from contracts.yamltext import YamlDocument, read_text, validate

Provider = Literal["jira", "servicenow", "zendesk"]
PROVIDERS: tuple[Provider, ...] = ("jira", "servicenow", "zendesk")
# A ticket's page below the instance URL, for vendors whose payloads carry no link to it.
PAGE_URLS: dict[str, str] = {"servicenow": "/incident.do?sys_id={sys_id}"}
EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TicketingConfigError(RuntimeError):
    """The ticketing configuration cannot be used as it is (a variable unset, …)."""


class _Bearer(httpx.Auth):
    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._header
        yield request

    def __repr__(self) -> str:
        return "_Bearer(***)"


class Auth(_Model):
    """REST credentials: `basic` (Jira: email + API token; Zendesk: email + API token, sent
    as `email/token`; ServiceNow: user + password) or `bearer` (ServiceNow OAuth token)."""

    kind: Literal["basic", "bearer"] = "basic"
    username: str | None = None  # an email or user name is no secret: may stand here
    username_env: EnvName | None = None
    password_env: EnvName | None = None
    token_env: EnvName | None = None

    @model_validator(mode="after")
    def _complete(self) -> Auth:
        if self.kind == "basic":
            if (self.username is None) == (self.username_env is None):
                raise ValueError("basic auth needs `username` or `username_env` (one of them)")
            if self.password_env is None:
                raise ValueError("basic auth needs `password_env` (the API token or password "
                                 "is read from that environment variable)")
            if self.token_env is not None:
                raise ValueError("`token_env` is for kind: bearer")
        elif self.token_env is None or self.username or self.username_env or self.password_env:
            raise ValueError("bearer auth takes `token_env` only")
        return self

    def build(self, environ: Mapping[str, str] | None = None, *,
              username_suffix: str = "") -> httpx.Auth:
        env = os.environ if environ is None else environ
        if self.kind == "bearer":
            assert self.token_env is not None
            return _Bearer(_from_env(env, self.token_env))
        assert self.password_env is not None
        username = self.username if self.username is not None else \
            _from_env(env, self.username_env or "")
        return httpx.BasicAuth(username + username_suffix, _from_env(env, self.password_env))


def _from_env(environ: Mapping[str, str], name: str) -> str:
    value = environ.get(name)
    if not value:
        raise TicketingConfigError(f"environment variable {name} is not set")
    return value


class CreateOptions(_Model):
    """What `open_ticket` fills in besides summary, description, priority and the asset."""

    project: str | None = None  # Jira: the project key (required to open Jira tickets)
    issue_type: str = "Task"  # Jira: the issue type name
    category: str | None = None  # ServiceNow: incident category
    # Our words for priority (e.g. alert severities) → the vendor's: Jira priority names,
    # ServiceNow priority 1-5, Zendesk urgent/high/normal/low. Unlisted ones pass as given.
    priorities: dict[str, str] = Field(default_factory=dict)


class ProviderConfig(TicketMapping):
    base_url: str | None = None  # the site / instance, e.g. https://acme.atlassian.net
    auth: Auth | None = None
    timezone: str = "UTC"  # the API user's zone: Jira JQL and ServiceNow query times
    create: CreateOptions = CreateOptions()

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        url = httpx.URL(value)
        if url.scheme not in ("https", "http") or not url.host:
            raise ValueError(f"not an http(s) URL: {value!r}")
        return value.rstrip("/")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value


class TicketingConfig(_Model):
    jira: ProviderConfig = ProviderConfig()
    servicenow: ProviderConfig = ProviderConfig()
    zendesk: ProviderConfig = ProviderConfig()

    def provider(self, name: Provider) -> ProviderConfig:
        """The provider's configuration merged over the vendor's default mapping."""
        own: ProviderConfig = getattr(self, name)
        merged = own.merged_over(DEFAULTS[name])
        if merged.ticket_url is None and merged.base_url is not None and name in PAGE_URLS:
            merged = merged.model_copy(
                update={"ticket_url": merged.base_url + PAGE_URLS[name]})
        return merged


def load_ticketing_config(path: Path) -> TicketingConfig:
    return validate(YamlDocument(read_text(path), str(path)), TicketingConfig,
                    "jira, servicenow and/or zendesk")


class TicketingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BESSMON_", extra="ignore")

    environment: Literal["development", "production"] = "development"
    webhook_secret_jira: SecretStr | None = None
    webhook_secret_servicenow: SecretStr | None = None
    webhook_secret_zendesk: SecretStr | None = None
    ticketing_file: Path | None = None
    webhook_max_bytes: int = Field(1 << 20, ge=1024)
    webhook_dedupe_ttl_s: int = Field(7 * 86_400, ge=60)

    @model_validator(mode="after")
    def _no_placeholder_secrets(self) -> TicketingSettings:
        if self.environment != "production":
            return self
        for name in PROVIDERS:
            secret: SecretStr | None = getattr(self, f"webhook_secret_{name}")
            value = secret.get_secret_value() if secret else None
            if value is not None and (value.lower() in PLACEHOLDER_TOKENS or len(value) < 16):
                raise ValueError(f"BESSMON_WEBHOOK_SECRET_{name.upper()} must be a real secret "
                                 "(16+ chars) in production")
        return self

    def secret(self, provider: Provider) -> bytes | None:
        value: SecretStr | None = getattr(self, f"webhook_secret_{provider}")
        return value.get_secret_value().encode() if value else None

    @cached_property
    def config(self) -> TicketingConfig:
        if self.ticketing_file is None:
            return TicketingConfig()
        return load_ticketing_config(self.ticketing_file)
