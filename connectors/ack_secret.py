"""The secret that signs the e-mails' acknowledge links (contracts/ack_links.py): the notifier
signs with it, the API verifies with it, so both must read the same one.

`BESSMON_ACK_SECRET` when set (a multi-host deployment sets it, the same on every host: at
least 32 characters, e.g. `openssl rand -base64 32`); else a key file of this machine,
`<run_dir>/auth/ack-link.key` — 32 random bytes, made owner-only on first use by whichever
process needs it first (atomically: a process racing another reads the winner's), reused
after — which is what the API and the notifier of `make up` share. Deleting the file (or
changing the variable) invalidates every link sent."""

from __future__ import annotations

import secrets
from pathlib import Path

from connectors.secret_file import read_or_create
from connectors.settings import PLACEHOLDER_TOKENS, Settings

KEY_BYTES = 32
MIN_SECRET_CHARS = 32


def ack_key_path(settings: Settings) -> Path:
    return settings.run_dir / "auth" / "ack-link.key"


def ack_secret(settings: Settings) -> bytes:
    """The signing secret (never logged: errors name the file or the variable only)."""
    if settings.ack_secret is not None:
        value = settings.ack_secret.strip()
        if value.lower() in PLACEHOLDER_TOKENS or len(value) < MIN_SECRET_CHARS:
            raise ValueError(f"BESSMON_ACK_SECRET must be a random secret of at least "
                             f"{MIN_SECRET_CHARS} characters (e.g. openssl rand -base64 32)")
        return value.encode("utf-8")
    return load_or_create_key(ack_key_path(settings))


def load_or_create_key(path: Path) -> bytes:
    """The key in `path`, made first if there is none (connectors/secret_file.py)."""
    return read_or_create(path, lambda: secrets.token_bytes(KEY_BYTES), _read)


def _read(path: Path) -> bytes:
    key = path.read_bytes()
    if len(key) != KEY_BYTES:
        raise ValueError(f"{path}: not an ack-link key ({KEY_BYTES} bytes expected); delete "
                         f"it to make a new one (links already sent stop working)")
    return key
