"""A secret kept in a file of this machine (the e-mails' ack-link key, the metrics token),
made on first use by whichever process needs it first and reused after: written whole to a
temporary file (mode 0600) and hard-linked to its name, which fails if another process got
there first — then theirs is read. So two processes starting together (the API and the
notifier of `make up`) always end up with the same secret, and none is ever half-written."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def read_or_create(path: Path, new: Callable[[], bytes], read: Callable[[Path], T]) -> T:
    """`read(path)`, after making the file with `new()` if there is none."""
    try:
        return read(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(new())
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):  # another process made it first: theirs
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return read(path)
