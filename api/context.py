"""Everything the routes share, built once per API process (`create_app`) and reached
through `api/deps.py`."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from api.auth.apikeys import ApiKeys
from api.auth.authenticator import Authenticator
from api.auth.oidc import OidcSettings, OidcVerifier
from api.auth.tokens import TokenIssuer
from api.auth.users import UserDirectory
from api.live import LiveHub
from connectors.api_store import ApiStore
from connectors.audit import AuditLog
from connectors.history import HistoryStore, open_history
from connectors.kafka import CheckedProducer
from connectors.settings import Settings
from contracts.contract import Contract, fleet_contracts, load_contracts
from contracts.control import ControlConfig, load_control
from contracts.fleet import Fleet, load_fleet


@dataclass
class ApiContext:
    settings: Settings
    fleet: Fleet
    contracts: dict[str, Contract]  # by site id
    control: ControlConfig  # modes of units the control loop has not reported yet
    store: ApiStore
    audit: AuditLog
    auth: Authenticator
    history: HistoryStore
    redis: aioredis.Redis | None = None  # set while the app runs (lifespan)
    hub: LiveHub | None = None
    # The ticket webhooks' Kafka producer: made on the first delivery (the API starts
    # without Kafka), under api/routes/webhooks.py's publish lock; closed at shutdown.
    ticket_producer: CheckedProducer | None = None
    # Operator commands' producer (api/routes/control.py): made on the first command, its
    # topic ensured then, under that module's lock; closed at shutdown.
    command_producer: CheckedProducer | None = None

    @classmethod
    def build(cls, settings: Settings) -> ApiContext:
        fleet = load_fleet(settings.fleet_file)
        contracts = fleet_contracts(load_contracts(settings.contracts_dir), fleet)
        store = ApiStore(settings.api_db_path)
        oidc = None
        if settings.oidc_jwks_url and settings.oidc_issuer and settings.oidc_audience:
            oidc = OidcVerifier(OidcSettings(
                settings.oidc_jwks_url, settings.oidc_issuer, settings.oidc_audience,
                settings.oidc_role_claim, settings.oidc_customers_claim,
                settings.oidc_regions_claim))
        auth = Authenticator(TokenIssuer(settings.jwt_key_path, settings.token_ttl_s),
                             UserDirectory(settings.users_path), ApiKeys(store), oidc)
        return cls(settings, fleet, contracts, load_control(settings.control_file), store,
                   AuditLog(store), auth, open_history(settings))
