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
| `BESSMON_PUBLIC_URL` | the dashboard's address for the links in tickets the poller opens |

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
```

Polling without webhooks (`bessmon tickets poll`, connectors/ticketing/poller.py) reads every
provider with a REST connection (`base_url` and `auth`), with these keys per provider:

- `poll_s`: seconds between two searches for updated tickets (default 60);
- `lookback`: how far back the very first search reaches, a duration (`24h`, `90m`, `2d`, or
  seconds; default 24h); later searches resume from the newest update seen, kept in
  `<run dir>/tickets/poller.json`;
- `create.auto_open`: `true` on the one provider (at most one) that opens tickets for long
  unavailability episodes;
- `create.open_after_min`: an open episode with no ticket for this many minutes gets one
  (default 30; 0 turns auto-open off);
- `create.levels`: whose episodes: `unit`, `inverter`, `block` (default `[unit]`);
- `create.skip_causes`: episodes of these causes get no ticket (default
  `[scheduled_maintenance]`; `[]` for none);
- `create.auto_priority`: our word for the opened tickets' priority, through
  `create.priorities` (default: none sent, the vendor's default).

```yaml
jira:
  base_url: https://acme.atlassian.net
  auth: {username: noc@acme.example, password_env: JIRA_API_TOKEN}
  poll_s: 60
  lookback: 24h
  create: {project: BESS, issue_type: Incident, auto_open: true, open_after_min: 30,
           levels: [unit], auto_priority: major, priorities: {major: High}}
```

`BESSMON_PUBLIC_URL` (environment) is the dashboard's address for the link in an opened
ticket (default `http://<api host>:<api port>/`)."""

from __future__ import annotations

import os
import re
from collections.abc import Generator, Mapping
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors.settings import PLACEHOLDER_TOKENS
from connectors.ticketing.mapping import DEFAULTS, TicketMapping
from contracts.events import Cause
from contracts.yamltext import YamlDocument, read_text, validate

Provider = Literal["jira", "servicenow", "zendesk"]
PROVIDERS: tuple[Provider, ...] = ("jira", "servicenow", "zendesk")
# A ticket's page below the instance URL, for vendors whose payloads carry no link to it.
PAGE_URLS: dict[str, str] = {"servicenow": "/incident.do?sys_id={sys_id}"}
EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd]?)$")


def _duration_s(value: object) -> object:
    """`90` (seconds), `30s`, `5m`, `24h`, `2d` → seconds; anything else is left for the
    float check to refuse."""
    if isinstance(value, str):
        found = _DURATION.match(value.strip())
        if found is None:
            raise ValueError(f"not a duration: {value!r} (try 90m, 24h, 2d)")
        return float(found[1]) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[found[2]]
    return value


# A duration in seconds, written as a number of seconds or with a unit.
Duration = Annotated[float, BeforeValidator(_duration_s), Field(gt=0, le=366 * 86400)]
Level = Literal["unit", "inverter", "block"]


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
    # Auto-open (connectors/ticketing/poller.py): this provider opens a ticket for an open
    # episode of an asset of `levels` that has had none for `open_after_min` (0: off).
    auto_open: bool = False
    open_after_min: float = Field(30.0, ge=0, le=366 * 24 * 60)
    levels: tuple[Level, ...] = Field(("unit",), min_length=1)
    # Episodes of these causes get no ticket (planned work has its own).
    skip_causes: tuple[Cause, ...] = ("scheduled_maintenance",)
    auto_priority: str | None = None  # our word, through `priorities`; None: vendor default


class ProviderConfig(TicketMapping):
    base_url: str | None = None  # the site / instance, e.g. https://acme.atlassian.net
    auth: Auth | None = None
    timezone: str = "UTC"  # the API user's zone: Jira JQL and ServiceNow query times
    create: CreateOptions = CreateOptions()
    poll_s: float = Field(60.0, gt=0, le=86400)  # `bessmon tickets poll`: between searches
    lookback: Duration = 24 * 3600.0  # the first search reaches this far back (seconds)

    @property
    def rest(self) -> bool:
        """A REST connection is configured (the poller reads this provider)."""
        return self.base_url is not None and self.auth is not None

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

    @model_validator(mode="after")
    def _one_opener(self) -> TicketingConfig:
        openers = [name for name in PROVIDERS if getattr(self, name).create.auto_open]
        if len(openers) > 1:
            raise ValueError(f"create.auto_open is set on {' and '.join(openers)}: one "
                             "provider opens tickets (else an episode would get one each)")
        for name in openers:
            own: ProviderConfig = getattr(self, name)
            if not own.rest:
                raise ValueError(f"{name}.create.auto_open needs {name}.base_url and "
                                 f"{name}.auth (the REST connection it opens tickets through)")
            if name == "jira" and not own.create.project:
                raise ValueError("jira.create.auto_open needs jira.create.project")
        return self

    def rest_providers(self) -> list[Provider]:
        """The providers with a REST connection, in PROVIDERS order."""
        return [name for name in PROVIDERS if getattr(self, name).rest]

    def opener(self) -> Provider | None:
        """The provider that opens tickets for long episodes, None when auto-open is off."""
        for name in PROVIDERS:
            create: CreateOptions = getattr(self, name).create
            if create.auto_open and create.open_after_min > 0:
                return name
        return None

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
    # The dashboard's address for people (links in the tickets the poller opens); unset:
    # http://<api host>:<api port>/.
    public_url: str | None = None

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
