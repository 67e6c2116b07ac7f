"""What every webhook check shares: one error, HMAC-SHA256, constant-time comparison.

Each vendor module has its own `verify_*` (pure functions of the raw body, the header values
and the secret); the webhook route answers `Unverified` with 401."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac


class Unverified(Exception):
    """The request does not prove it comes from the vendor: signature missing or wrong,
    timestamp too old. The message says which, never what was expected."""


def hmac_sha256(secret: bytes, message: bytes) -> bytes:
    return hmac.new(secret, message, hashlib.sha256).digest()


def same(expected: bytes, given: bytes) -> bool:
    """Constant-time equality (the time taken does not tell how much of `given` matched)."""
    return hmac.compare_digest(expected, given)


def hex_digest(value: str) -> bytes:
    try:
        return bytes.fromhex(value.strip())
    except ValueError:
        raise Unverified("signature is not hexadecimal") from None


def b64_digest(value: str) -> bytes:
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise Unverified("signature is not base64") from None
