"""The secret that signs the e-mails' acknowledge links (contracts/ack_links.py): the notifier
signs with it, the API verifies with it, so both must read the same one.

`BESSMON_ACK_SECRET` when set (a multi-host deployment sets it, the same on every host: at
least 32 characters, e.g. `openssl rand -base64 32`); else a key file of this machine,
`<run_dir>/auth/ack-link.key` — 32 random bytes, made owner-only on first use by whichever
process needs it first (atomically: a process racing another reads the winner's), reused
after — which is what the API and the notifier of `make up` share. Deleting the file (or
changing the variable) invalidates every link sent."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

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
    """The key in `path`, made first if there is none. Created whole or not at all: written
    to a temporary file (mode 0600) and hard-linked to its name, which fails if another
    process got there first — then theirs is used."""
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(KEY_BYTES))
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):  # another process made it first: use theirs
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return _read(path)


def _read(path: Path) -> bytes:
    key = path.read_bytes()
    if len(key) != KEY_BYTES:
        raise ValueError(f"{path}: not an ack-link key ({KEY_BYTES} bytes expected); delete "
                         f"it to make a new one (links already sent stop working)")
    return key
