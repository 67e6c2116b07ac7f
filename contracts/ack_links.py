"""Signed one-time links that acknowledge an alarm from its e-mail (pure: no I/O).

A token is `<payload>.<signature>`: the payload is the base64url (unpadded) of a compact JSON
object naming the site, the alarm, the recipient the link was sent to, the expiry (epoch ms)
and a nonce; the signature is the base64url of HMAC-SHA256 over a domain tag and the payload
text, truncated to 128 bits. It has the shape of a JWT (`eyJ….…`), so the API's log filter
(api/log_redaction.py) blanks it in access logs.

The token proves only that this deployment made the link for that recipient and alarm, and
until when. That it is used once (its nonce claimed in Redis) and that the recipient may
acknowledge that site's alarms are the API's to check (api/routes/alarms.py)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from typing import Literal

DEFAULT_TTL_MS = 24 * 3_600_000
ACK_PATH = "api/v1/alarms/ack"
MAX_TOKEN_CHARS = 4096  # a link's token is a few hundred characters; anything longer is junk
MAX_FIELD_CHARS = 256
_SIG_BYTES = 16  # HMAC-SHA256 truncated to 128 bits
_DOMAIN = b"bessmon/ack-link/v1\x00"  # the key signs nothing else under this tag
_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{22}")

Reason = Literal["malformed", "bad signature", "expired"]


@dataclass(frozen=True)
class AckClaim:
    site_id: str
    alarm_id: str
    recipient: str
    expires_ms: int
    nonce: str


class AckLinkInvalid(ValueError):
    """A token that proves nothing now; the message is safe to show (it never echoes the
    token). An expired token's signature held: its `claim` is given, for the audit log."""

    def __init__(self, reason: Reason, detail: str | None = None, *,
                 claim: AckClaim | None = None) -> None:
        super().__init__(detail or reason)
        self.reason: Reason = reason
        self.claim = claim


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(raw) != text:  # non-canonical trailing bits: one token has one spelling
        raise ValueError("non-canonical base64")
    return raw


def _sign(secret: bytes, payload: str) -> str:
    mac = hmac.new(secret, _DOMAIN + payload.encode("ascii"), hashlib.sha256).digest()
    return _b64(mac[:_SIG_BYTES])


def _check_secret(secret: bytes) -> None:
    if len(secret) < 16:
        raise ValueError("an ack-link secret has at least 16 bytes")


def make_token(secret: bytes, *, site_id: str, alarm_id: str, recipient: str,
               expires_ms: int, nonce: str) -> str:
    """A signed token for one recipient acknowledging one alarm until `expires_ms`. Every
    text is 1 to 256 characters; the nonce must be unique per link (it is what makes the
    link one-time)."""
    _check_secret(secret)
    for name, value in (("site_id", site_id), ("alarm_id", alarm_id),
                        ("recipient", recipient), ("nonce", nonce)):
        if not isinstance(value, str) or not 0 < len(value) <= MAX_FIELD_CHARS:
            raise ValueError(f"{name} must be 1 to {MAX_FIELD_CHARS} characters")
    if isinstance(expires_ms, bool) or not isinstance(expires_ms, int) or expires_ms < 0:
        raise ValueError("expires_ms must be a non-negative integer (epoch ms)")
    body = json.dumps({"s": site_id, "a": alarm_id, "r": recipient, "e": expires_ms,
                       "n": nonce}, separators=(",", ":"), ensure_ascii=True)
    payload = _b64(body.encode("ascii"))
    token = f"{payload}.{_sign(secret, payload)}"
    if len(token) > MAX_TOKEN_CHARS:
        raise ValueError(f"the token would be over {MAX_TOKEN_CHARS} characters")
    return token


def verify_token(secret: bytes, token: str, now_ms: int) -> AckClaim:
    """The token's claim, if this secret signed it and it is still valid at `now_ms` (valid
    while `now_ms < expires_ms`); AckLinkInvalid("malformed" | "bad signature" | "expired")
    otherwise. The signature is checked (in constant time) before the payload is read."""
    _check_secret(secret)
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS \
            or _SHAPE.fullmatch(token) is None:
        raise AckLinkInvalid("malformed", "malformed link: not a token of this service")
    payload, signature = token.split(".")
    if not hmac.compare_digest(_sign(secret, payload).encode(), signature.encode()):
        raise AckLinkInvalid("bad signature",
                             "bad signature: the link was altered or is not from this service")
    try:
        data = json.loads(_unb64(payload).decode("ascii"))
        claim = AckClaim(site_id=data["s"], alarm_id=data["a"], recipient=data["r"],
                         expires_ms=data["e"], nonce=data["n"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, binascii.Error):
        raise AckLinkInvalid("malformed", "malformed link: its content is unreadable") \
            from None
    if not (all(isinstance(v, str) and v for v in (claim.site_id, claim.alarm_id,
                                                   claim.recipient, claim.nonce))
            and isinstance(claim.expires_ms, int) and not isinstance(claim.expires_ms, bool)):
        raise AckLinkInvalid("malformed", "malformed link: its content is unreadable")
    if now_ms >= claim.expires_ms:
        raise AckLinkInvalid("expired", "this link has expired", claim=claim)
    return claim


def ack_url(base_url: str, secret: bytes, *, site_id: str, alarm_id: str, recipient: str,
            now_ms: int, ttl_ms: int = DEFAULT_TTL_MS, nonce: str | None = None) -> str:
    """`<base_url>api/v1/alarms/ack?token=…`: the page that acknowledges `alarm_id` for
    `recipient`, valid for `ttl_ms` from `now_ms`. `base_url` is the API's public address
    ending in "/". Without a `nonce`, a random one (128 bits) is drawn."""
    if not base_url.endswith("/"):
        raise ValueError(f"base_url must end with '/': {base_url!r}")
    if ttl_ms <= 0:
        raise ValueError("ttl_ms must be positive")
    token = make_token(secret, site_id=site_id, alarm_id=alarm_id, recipient=recipient,
                       expires_ms=now_ms + ttl_ms, nonce=nonce or secrets.token_urlsafe(16))
    return f"{base_url}{ACK_PATH}?token={token}"
