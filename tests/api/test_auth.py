"""Authentication, end to end through the app: local users signing in with the OAuth2
password form (argon2-checked, ES256 tokens, every attempt audited without the password,
guessing rate-limited), tokens expired or tampered with in every way that matters, tokens of
users since disabled, deleted or given another role; identity-provider tokens (RS256 and
ES256) verified against a JWKS served by a real HTTP server, with role and scope taken from
their claims and every flaw refused with its own message; and integrators' API keys — shown
once, scoped like users, never listed or stored in clear, revoked or expired at once, their
making and revoking audited."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import shutil
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from starlette.websockets import WebSocketDisconnect

from api.auth.permissions import ROLE_PERMISSIONS, Role
from api.auth.tokens import TokenIssuer
from api.auth.users import UserDirectory
from api.context import ApiContext
from api.main import create_app
from connectors.audit import AuditLog
from connectors.settings import Settings
from tests.api.accounts import USERS, token

TOKEN_URL = "/api/v1/auth/token"
IDP_ISSUER = "https://login.example.test/tenant-7/v2.0"
IDP_AUDIENCE = "api://bessmon"


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


def sign_in(client: TestClient, username: str, password: str) -> Any:
    return client.post(TOKEN_URL, data={"username": username, "password": password})


def ctx_of(client: TestClient) -> ApiContext:
    ctx: ApiContext = client.app.state.ctx  # type: ignore[attr-defined]
    return ctx


def fresh_minute(needed_s: float = 5.0) -> None:
    """Limits count per wall-clock minute: start a counting test early enough in one."""
    left = 60 - time.time() % 60
    if left < needed_s:
        time.sleep(left + 0.05)


def stored_bytes(settings: Settings) -> bytes:
    """Everything the API database holds on disk (the file and its write-ahead log)."""
    db = settings.api_db_path
    return b"".join(p.read_bytes() for p in (db, db.with_name(db.name + "-wal")) if p.exists())


@pytest.fixture
def client(api_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(api_settings)) as c:
        yield c


# -- local users: signing in ---------------------------------------------------------------


def test_the_right_password_gives_a_token_that_works(client: TestClient,
                                                     api_settings: Settings) -> None:
    answer = sign_in(client, "engineer", "pw-engineer")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == int(api_settings.token_ttl_s)
    key = serialization.load_pem_private_key(api_settings.jwt_key_path.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    claims = jwt.decode(body["access_token"], key.public_key(), algorithms=["ES256"],
                        audience="bessmon-api", issuer="bessmon")
    assert (claims["sub"], claims["role"]) == ("engineer", "engineer")
    assert claims["exp"] - claims["iat"] == int(api_settings.token_ttl_s)
    me = client.get("/api/v1/auth/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200
    assert (me.json()["subject"], me.json()["via"]) == ("engineer", "local")


@pytest.mark.parametrize(("username", "password"), [
    ("engineer", "pw-viewer"),  # another user's password
    ("engineer", "PW-ENGINEER"),
    ("nobody", "pw-nobody"),
    ("nobody", "pw-engineer"),
])
def test_a_wrong_password_and_an_unknown_user_are_refused_alike(
        client: TestClient, username: str, password: str) -> None:
    answer = sign_in(client, username, password)
    assert answer.status_code == 401
    assert answer.json() == {"detail": "wrong username or password", "status": 401}
    assert answer.headers["www-authenticate"] == "Bearer"


def test_sign_in_attempts_are_limited_and_every_one_is_audited(api_settings: Settings) -> None:
    settings = api_settings.model_copy(update={"login_attempts_per_minute": 3})
    fresh_minute()
    with TestClient(create_app(settings)) as client:
        wrong = [sign_in(client, "viewer", f"guess-{i}") for i in range(3)]
        assert [r.status_code for r in wrong] == [401, 401, 401]
        # Over the limit even the right password is refused: guessing cannot get through.
        refused = sign_in(client, "viewer", "pw-viewer")
        assert refused.status_code == 429
        assert refused.json() == {"detail": "too many sign-in attempts: wait a minute",
                                  "status": 429}
        assert refused.headers["retry-after"] == "60"
        # Another user from the same address is not locked out by the guessing.
        assert sign_in(client, "engineer", "pw-engineer").status_code == 200

        entries = AuditLog(ctx_of(client).store).entries(action="login")
        assert [(e.actor, e.outcome) for e in entries] == [
            ("viewer", "failed"), ("viewer", "failed"), ("viewer", "failed"),
            ("viewer", "refused"), ("engineer", "ok")]
        assert all(e.details["address"] == "testclient" for e in entries)
        listed = client.get("/api/v1/audit?action=login", headers=bearer(token(settings,
                                                                               "admin")))
        assert [e["outcome"] for e in listed.json()["items"]] == [e.outcome for e in entries]
        for secret in ("guess-0", "guess-1", "guess-2", "pw-viewer", "pw-engineer"):
            assert secret not in listed.text
            assert secret.encode() not in stored_bytes(settings)


# -- local users: tokens -------------------------------------------------------------------


def issued(settings: Settings, username: str, *, now: float | None = None) -> str:
    user = UserDirectory(settings.users_path).get(username)
    assert user is not None
    text, _ = TokenIssuer(settings.jwt_key_path, settings.token_ttl_s).issue(user.principal(),
                                                                            now=now)
    return text


def test_an_expired_token_is_refused(client: TestClient, api_settings: Settings) -> None:
    ttl = api_settings.token_ttl_s
    expired = issued(api_settings, "viewer", now=time.time() - ttl - 60)
    answer = client.get("/api/v1/fleet", headers=bearer(expired))
    assert (answer.status_code, answer.json()["detail"]) == (401, "token expired")
    # Within the 30 s allowed for clocks it still works.
    lenient = issued(api_settings, "viewer", now=time.time() - ttl - 10)
    assert client.get("/api/v1/fleet", headers=bearer(lenient)).status_code == 200


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def flip(text: str, at: int) -> str:
    """`text` with the character at `at` changed (to another base64url character)."""
    return text[:at] + ("A" if text[at] != "A" else "B") + text[at + 1:]


def tampered(original: str, how: str, public_pem: bytes) -> str:
    head, payload, signature = original.split(".")
    claims = json.loads(unb64(payload))
    if how == "role raised to admin, signature kept":
        return ".".join([head, b64(json.dumps({**claims, "role": "admin"}).encode()),
                         signature])
    if how == "one character of the payload":
        return ".".join([head, flip(payload, len(payload) // 2), signature])
    if how == "one character of the signature":
        return ".".join([head, payload, flip(signature, len(signature) // 2)])
    if how == "signature cut off":
        return f"{head}.{payload}."
    if how == "re-signed with another key":
        return jwt.encode(claims, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256")
    if how == "alg none":
        return jwt.encode(claims, "", algorithm="none")
    if how == "HS256 keyed with the public key":
        signing = b64(b'{"alg":"HS256","typ":"JWT"}') + "." + payload
        mac = hmac.new(public_pem, signing.encode(), hashlib.sha256).digest()
        return f"{signing}.{b64(mac)}"
    raise AssertionError(how)


@pytest.mark.parametrize("how", [
    "role raised to admin, signature kept", "one character of the payload",
    "one character of the signature", "signature cut off", "re-signed with another key",
    "alg none", "HS256 keyed with the public key"])
def test_a_tampered_token_is_refused(client: TestClient, api_settings: Settings,
                                     how: str) -> None:
    original = issued(api_settings, "viewer")
    assert client.get("/api/v1/auth/me", headers=bearer(original)).status_code == 200
    key = serialization.load_pem_private_key(api_settings.jwt_key_path.read_bytes(), None)
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    forged = tampered(original, how, public_pem)
    assert forged != original
    answer = client.get("/api/v1/audit", headers=bearer(forged))
    assert answer.status_code == 401
    assert answer.json() == {"detail": "invalid token", "status": 401}


@pytest.fixture
def own_users(api_settings: Settings, tmp_path: Path) -> Settings:
    """The session's users in a file of the test's own, free to edit."""
    path = tmp_path / "users.yaml"
    shutil.copy(api_settings.users_path, path)
    return api_settings.model_copy(update={"users_file": path})


def edit_user(path: Path, username: str, changes: dict[str, Any] | None) -> None:
    """Change a user in the file (None: delete them), as an admin's edit would."""
    data = yaml.safe_load(path.read_text())
    users = [u for u in data["users"] if u["username"] != username]
    if changes is not None:
        user = next(u for u in data["users"] if u["username"] == username)
        users.append({**user, **changes})
    path.write_text(yaml.safe_dump({"users": users}, sort_keys=False))


@pytest.mark.parametrize(("changes", "detail", "sign_in_again"), [
    ({"disabled": True}, "user no longer exists or is disabled", True),
    (None, "user no longer exists or is disabled", False),
    ({"role": "admin"}, "user's role has changed: sign in again", False),
    ({"role": "engineer"}, "user's role has changed: sign in again", True),
])
def test_a_token_of_a_user_since_changed_is_refused(own_users: Settings,
                                                    changes: dict[str, Any] | None,
                                                    detail: str, sign_in_again: bool) -> None:
    with TestClient(create_app(own_users)) as client:
        before = issued(own_users, "viewer")
        assert client.get("/api/v1/fleet", headers=bearer(before)).status_code == 200
        edit_user(own_users.users_path, "viewer", changes)
        answer = client.get("/api/v1/fleet", headers=bearer(before))
        assert answer.json() == {"detail": detail, "status": 401}
        if not sign_in_again:
            return
        again = sign_in(client, "viewer", "pw-viewer")
        if changes and changes.get("disabled"):
            assert again.json() == {"detail": "wrong username or password", "status": 401}
        else:  # signing in again gives a token of the new role
            assert changes is not None
            me = client.get("/api/v1/auth/me", headers=bearer(again.json()["access_token"]))
            assert me.json()["role"] == changes["role"]


def test_a_changed_scope_applies_to_tokens_already_issued(own_users: Settings) -> None:
    with TestClient(create_app(own_users)) as client:
        before = issued(own_users, "viewer")
        edit_user(own_users.users_path, "viewer", {"customers": ["Elbe Netz GmbH"]})
        me = client.get("/api/v1/auth/me", headers=bearer(before)).json()
        assert (me["customers"], me["sites"]) == (["Elbe Netz GmbH"], ["elbe"])
        assert client.get("/api/v1/sites/nordvik", headers=bearer(before)).status_code == 404


def test_refresh_gives_a_new_working_token(client: TestClient, api_settings: Settings) -> None:
    old = sign_in(client, "nordvik-viewer", "pw-nordvik-viewer").json()["access_token"]
    answer = client.post("/api/v1/auth/refresh", headers=bearer(old))
    assert answer.status_code == 200, answer.text
    new = answer.json()["access_token"]
    assert new != old
    old_claims, new_claims = (jwt.decode(t, options={"verify_signature": False})
                              for t in (old, new))
    assert new_claims["jti"] != old_claims["jti"] and new_claims["exp"] >= old_claims["exp"]
    me = client.get("/api/v1/auth/me", headers=bearer(new)).json()
    assert (me["subject"], me["sites"]) == ("nordvik-viewer", ["nordvik"])
    expired = issued(api_settings, "viewer", now=time.time() - api_settings.token_ttl_s - 60)
    refused = client.post("/api/v1/auth/refresh", headers=bearer(expired))
    assert refused.json() == {"detail": "token expired", "status": 401}


@pytest.mark.parametrize("username", list(USERS))
def test_me_lists_permissions_and_visible_sites(client: TestClient, api_settings: Settings,
                                                username: str) -> None:
    role, customers, regions = USERS[username]
    me = client.get("/api/v1/auth/me", headers=bearer(token(api_settings, username))).json()
    sites = [s.id for s in ctx_of(client).fleet.sites
             if ("*" in customers or s.customer in customers)
             and ("*" in regions or s.region in regions)]
    assert me == {"subject": username, "role": role, "via": "local",
                  "permissions": sorted(p.value for p in ROLE_PERMISSIONS[role]),
                  "customers": sorted(customers), "regions": sorted(regions), "sites": sites}


# -- an enterprise identity provider -------------------------------------------------------


class IdentityProvider:
    """A JWKS endpoint on a real HTTP server (a thread of this process), with an RSA and an
    EC signing key, and the tokens such a provider issues."""

    def __init__(self) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.jwks = {"keys": [
            {**RSAAlgorithm.to_jwk(self.rsa.public_key(), as_dict=True),  # type: ignore[dict-item]
             "kid": "rsa-1", "alg": "RS256", "use": "sig"},
            {**ECAlgorithm.to_jwk(self.ec.public_key(), as_dict=True),  # type: ignore[dict-item]
             "kid": "ec-1", "alg": "ES256", "use": "sig"}]}
        self.fetches = 0
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != "/keys":
                    self.send_error(404)
                    return
                provider.fetches += 1
                body = json.dumps(provider.jwks).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.jwks_url = f"http://127.0.0.1:{self.server.server_address[1]}/keys"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def claims(self, **changes: Any) -> dict[str, Any]:
        now = int(time.time())
        base: dict[str, Any] = {
            "iss": IDP_ISSUER, "aud": IDP_AUDIENCE, "sub": "00u1-ana", "iat": now,
            "exp": now + 600, "jti": f"idp-{now}", "roles": ["engineer"],
            "bessmon_customers": ["Nordvik Energi AB"], "bessmon_regions": ["*"]}
        base.update(changes)
        return {k: v for k, v in base.items() if v is not None}

    def token(self, claims: dict[str, Any], alg: str = "RS256", kid: str | None = None,
              key: Any = None) -> str:
        signing = key or (self.rsa if alg == "RS256" else self.ec)
        return jwt.encode(claims, signing, algorithm=alg,
                          headers={"kid": kid or ("rsa-1" if alg == "RS256" else "ec-1")})


@pytest.fixture(scope="module")
def idp() -> Iterator[IdentityProvider]:
    provider = IdentityProvider()
    yield provider
    provider.close()


@pytest.fixture
def oidc_client(api_settings: Settings, idp: IdentityProvider) -> Iterator[TestClient]:
    settings = Settings(REDIS_URL=api_settings.redis_url, run_dir=api_settings.run_dir,
                        users_file=api_settings.users_file,
                        jwt_key_file=api_settings.jwt_key_file, oidc_jwks_url=idp.jwks_url,
                        oidc_issuer=IDP_ISSUER, oidc_audience=IDP_AUDIENCE)
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.mark.parametrize(("alg", "roles", "customers", "regions", "role", "sites"), [
    ("RS256", ["engineer"], ["Nordvik Energi AB"], ["*"], "engineer", ["nordvik"]),
    ("ES256", "contract_manager", ["*"], ["DE"], "contract_manager", ["elbe"]),
    # Of several roles the most privileged of ours counts; others' roles are ignored.
    ("RS256", ["Directory Readers", "viewer", "admin"], ["*"], ["*"], "admin",
     ["nordvik", "elbe", "mesa"]),
    ("ES256", ["viewer"], ["Sonoran Power LLC", "Elbe Netz GmbH"], ["US-AZ"], "viewer",
     ["mesa"]),
])
def test_identity_provider_tokens_carry_role_and_scope(
        oidc_client: TestClient, idp: IdentityProvider, alg: str, roles: Any,
        customers: list[str], regions: list[str], role: Role, sites: list[str]) -> None:
    issued_token = idp.token(idp.claims(roles=roles, bessmon_customers=customers,
                                        bessmon_regions=regions), alg)
    me = oidc_client.get("/api/v1/auth/me", headers=bearer(issued_token))
    assert me.status_code == 200, me.text
    assert idp.fetches >= 1  # the keys came from the provider's server
    assert me.json() == {"subject": "00u1-ana", "role": role, "via": "oidc",
                         "permissions": sorted(p.value for p in ROLE_PERMISSIONS[role]),
                         "customers": sorted(customers), "regions": sorted(regions),
                         "sites": sites}
    listed = oidc_client.get("/api/v1/sites", headers=bearer(issued_token)).json()
    assert [s["id"] for s in listed["items"]] == sites
    hidden = next(s for s in ("nordvik", "elbe", "mesa") if s not in sites) \
        if len(sites) < 3 else None
    if hidden:
        assert oidc_client.get(f"/api/v1/sites/{hidden}",
                               headers=bearer(issued_token)).status_code == 404
    # Only this API's own tokens are refreshed here.
    refresh = oidc_client.post("/api/v1/auth/refresh", headers=bearer(issued_token))
    assert refresh.status_code == 400 and "identity provider" in refresh.json()["detail"]


def idp_refusals(idp: IdentityProvider) -> dict[str, tuple[str, str]]:
    """A flawed token of each kind → the message it is refused with."""
    other_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    c = idp.claims
    lacks_scope = ("token lacks its scope claims 'bessmon_customers' and "
                   "'bessmon_regions'")
    return {
        "wrong audience": (idp.token(c(aud="api://another-app")),
                           "token is not for this API (wrong audience)"),
        "another issuer": (idp.token(c(iss="https://evil.example.test/")), "invalid token"),
        "expired": (idp.token(c(exp=int(time.time()) - 120)), "token expired"),
        "no expiry": (idp.token(c(exp=None)), "token lacks its 'exp' claim"),
        "no subject": (idp.token(c(sub=None)), "token lacks its 'sub' claim"),
        "unknown key id": (idp.token(c(), kid="rsa-9"),
                           "token signed by a key the identity provider does not list"),
        "listed key id, other key": (idp.token(c(), key=other_rsa), "invalid token"),
        "EC key id, RSA signature": (idp.token(c(), kid="ec-1"), "invalid token"),
        "alg none": (jwt.encode(c(), "", algorithm="none", headers={"kid": "rsa-1"}),
                     "invalid token"),
        "no role claim": (idp.token(c(roles=None)), "token has no bessmon role in claim 'roles'"),
        "only foreign roles": (idp.token(c(roles=["Global Administrator"])),
                               "token has no bessmon role in claim 'roles'"),
        "no customers claim": (idp.token(c(bessmon_customers=None)), lacks_scope),
        "no regions claim": (idp.token(c(bessmon_regions=None), "ES256"), lacks_scope),
        "empty customers": (idp.token(c(bessmon_customers=[])), lacks_scope),
        "customers not a list": (idp.token(c(bessmon_customers="Nordvik Energi AB")),
                                 lacks_scope),
    }


REFUSALS = ["wrong audience", "another issuer", "expired", "no expiry", "no subject",
            "unknown key id", "listed key id, other key", "EC key id, RSA signature",
            "alg none", "no role claim", "only foreign roles", "no customers claim",
            "no regions claim", "empty customers", "customers not a list"]


@pytest.mark.parametrize("flaw", REFUSALS)
def test_flawed_identity_provider_tokens_are_refused_precisely(
        oidc_client: TestClient, idp: IdentityProvider, flaw: str) -> None:
    refusals = idp_refusals(idp)
    assert sorted(refusals) == sorted(REFUSALS)
    flawed, detail = refusals[flaw]
    answer = oidc_client.get("/api/v1/fleet", headers=bearer(flawed))
    assert answer.json() == {"detail": detail, "status": 401}
    assert answer.headers["www-authenticate"] == "Bearer"
    # The same token without the flaw is accepted: the refusal is the flaw's.
    assert oidc_client.get("/api/v1/fleet", headers=bearer(idp.token(idp.claims()))
                           ).status_code == 200


def test_the_scope_claims_can_be_renamed(api_settings: Settings, idp: IdentityProvider) -> None:
    settings = Settings(REDIS_URL=api_settings.redis_url, run_dir=api_settings.run_dir,
                        users_file=api_settings.users_file,
                        jwt_key_file=api_settings.jwt_key_file, oidc_jwks_url=idp.jwks_url,
                        oidc_issuer=IDP_ISSUER, oidc_audience=IDP_AUDIENCE,
                        oidc_role_claim="groups", oidc_customers_claim="tenants",
                        oidc_regions_claim="areas")
    claims = idp.claims(roles=None, bessmon_customers=None, bessmon_regions=None,
                        groups=["service_manager"], tenants=["Elbe Netz GmbH"], areas=["*"])
    with TestClient(create_app(settings)) as client:
        me = client.get("/api/v1/auth/me", headers=bearer(idp.token(claims, "ES256"))).json()
        assert (me["role"], me["sites"]) == ("service_manager", ["elbe"])


def test_local_users_still_sign_in_beside_the_identity_provider(oidc_client: TestClient
                                                                ) -> None:
    local = sign_in(oidc_client, "viewer", "pw-viewer").json()["access_token"]
    me = oidc_client.get("/api/v1/auth/me", headers=bearer(local)).json()
    assert (me["subject"], me["via"]) == ("viewer", "local")


# -- API keys ------------------------------------------------------------------------------


def make_key(client: TestClient, settings: Settings, **fields: Any) -> Any:
    body = {"name": "scada-bridge", "role": "viewer", "customers": ["Nordvik Energi AB"],
            "regions": ["*"], **fields}
    return client.post("/api/v1/api-keys", headers=bearer(token(settings, "admin")), json=body)


def test_an_api_key_is_shown_once_and_works_with_its_role_and_scope(
        client: TestClient, api_settings: Settings) -> None:
    made = make_key(client, api_settings)
    assert made.status_code == 201, made.text
    body = made.json()
    key = body["key"]
    assert key.startswith(f"bsk_{body['id']}_") and body["created_by"] == "admin"
    assert (body["role"], body["customers"], body["revoked_ms"]) == (
        "viewer", ["Nordvik Energi AB"], None)

    me = client.get("/api/v1/auth/me", headers=bearer(key)).json()
    assert (me["subject"], me["role"], me["via"], me["sites"]) == (
        "scada-bridge", "viewer", "api_key", ["nordvik"])
    assert client.get("/api/v1/sites/elbe", headers=bearer(key)).status_code == 404
    refused = client.post("/api/v1/alarms/x:y:nordvik-u01:1/acknowledge", headers=bearer(key),
                          json={})
    assert refused.json() == {"detail": "role viewer may not alarms.acknowledge", "status": 403}
    # API keys are not refreshed: they are used as they are.
    assert client.post("/api/v1/auth/refresh", headers=bearer(key)).status_code == 400

    listed = client.get("/api/v1/api-keys", headers=bearer(token(api_settings, "admin")))
    assert [k["id"] for k in listed.json()] == [body["id"]]
    assert "key" not in listed.json()[0]
    secret = key.split("_", 2)[2]  # bsk_<hex id>_<secret>: the secret may hold "_" itself
    assert secret not in listed.text
    assert secret.encode() not in stored_bytes(api_settings)  # only its digest is stored

    with client.websocket_connect("/api/v1/ws") as ws:
        ws.send_json({"type": "auth", "token": key})
        assert ws.receive_json()["subject"] == "scada-bridge"


@pytest.mark.parametrize(("credential", "detail"), [
    ("bsk_{id}_" + "A" * 43, "invalid API key"),  # a real id, a wrong secret
    ("bsk_{id}_short", "invalid API key"),
    ("bsk_000000000000_" + "A" * 43, "invalid API key"),
])
def test_a_wrong_api_key_is_refused(client: TestClient, api_settings: Settings,
                                    credential: str, detail: str) -> None:
    made = make_key(client, api_settings).json()
    answer = client.get("/api/v1/fleet", headers=bearer(credential.format(id=made["id"])))
    assert answer.json() == {"detail": detail, "status": 401}


def test_a_revoked_api_key_stops_working_at_once(client: TestClient,
                                                 api_settings: Settings) -> None:
    admin = bearer(token(api_settings, "admin"))
    made = make_key(client, api_settings).json()
    key = made["key"]
    assert client.get("/api/v1/fleet", headers=bearer(key)).status_code == 200
    revoked = client.delete(f"/api/v1/api-keys/{made['id']}", headers=admin)
    assert revoked.status_code == 200 and revoked.json()["revoked_ms"] is not None
    answer = client.get("/api/v1/fleet", headers=bearer(key))
    assert answer.json() == {"detail": "API key revoked", "status": 401}
    with client.websocket_connect("/api/v1/ws") as ws:
        ws.send_json({"type": "auth", "token": key})
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
    assert (closed.value.code, closed.value.reason) == (4401, "API key revoked")
    # Revoking again keeps the first revocation's time; an unknown key is 404.
    again = client.delete(f"/api/v1/api-keys/{made['id']}", headers=admin)
    assert again.json()["revoked_ms"] == revoked.json()["revoked_ms"]
    missing = client.delete("/api/v1/api-keys/0123456789ab", headers=admin)
    assert missing.json() == {"detail": "no API key '0123456789ab'", "status": 404}

    entries = AuditLog(ctx_of(client).store).entries()
    assert [(e.actor, e.action, e.target) for e in entries] == [
        ("admin", "api_key.create", made["id"]), ("admin", "api_key.revoke", made["id"]),
        ("admin", "api_key.revoke", made["id"])]
    assert entries[0].details == {"name": "scada-bridge", "role": "viewer",
                                  "customers": ["Nordvik Energi AB"], "regions": ["*"],
                                  "expires_ms": None}
    assert key.split("_", 2)[2] not in json.dumps([e.details for e in entries])


def test_an_expired_api_key_is_refused(client: TestClient, api_settings: Settings) -> None:
    now = int(time.time() * 1000)
    _, past = ctx_of(client).auth.api_keys.create(
        "old-bridge", "viewer", ["*"], ["*"], created_by="admin", now_ms=now - 7_200_000,
        expires_ms=now - 3_600_000)
    answer = client.get("/api/v1/fleet", headers=bearer(past))
    assert answer.json() == {"detail": "API key expired", "status": 401}

    refused = make_key(client, api_settings, expires_ms=now - 1)
    assert refused.status_code == 422 and "body.expires_ms" in refused.json()["detail"]

    soon = make_key(client, api_settings, expires_ms=int(time.time() * 1000) + 1_000).json()
    assert client.get("/api/v1/fleet", headers=bearer(soon["key"])).status_code == 200
    time.sleep(max(0.0, soon["expires_ms"] / 1000 - time.time()) + 0.05)
    answer = client.get("/api/v1/fleet", headers=bearer(soon["key"]))
    assert answer.json() == {"detail": "API key expired", "status": 401}

