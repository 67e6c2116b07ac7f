"""Evidence files of exclusion windows (docs/exclusions.md), content-addressed: a file's bytes
are stored once at `<run dir>/evidence/<sha256>`, whoever uploads them and to whichever
exclusion; its name, size and content type are recorded per exclusion in the API's store
(connectors/api_store.py `ExclusionStore`). Uploads are size-limited while they stream in,
names are sanitised (a name is shown and offered for download, never used as a path)."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import unicodedata
from pathlib import Path
from typing import BinaryIO

MAX_EVIDENCE_BYTES = 20 * 1024 * 1024  # 20 MiB a file
CHUNK = 1 << 16
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._ ()+-]+")
_CONTENT_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}$")


class TooLarge(ValueError):
    """The file is over the limit (nothing was kept)."""


def evidence_dir(run_dir: Path) -> Path:
    return run_dir / "evidence"


def is_sha256(text: str) -> bool:
    return _SHA256.fullmatch(text) is not None


def path_of(directory: Path, sha256: str) -> Path:
    if not is_sha256(sha256):
        raise ValueError(f"not a SHA-256: {sha256[:80]!r}")
    return directory / sha256


def safe_name(name: str | None) -> str:
    """The last part of an uploaded name, in plain printable ASCII (accents folded, anything
    else `_`), at most 120 characters keeping the extension; `evidence` when nothing is
    left. Safe in a Content-Disposition header and in a listing."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    folded = unicodedata.normalize("NFKD", base).encode("ascii", "ignore").decode()
    clean = _UNSAFE.sub("_", folded).strip(" ._")
    if len(clean) > 120:
        stem, dot, ext = clean.rpartition(".")
        clean = (stem[:110] + dot + ext[:9]) if dot and len(ext) <= 9 else clean[:120]
    return clean or "evidence"


def safe_content_type(content_type: str | None) -> str:
    media = (content_type or "").partition(";")[0].strip().lower()
    return media if _CONTENT_TYPE.fullmatch(media) else "application/octet-stream"


def store_file(directory: Path, source: BinaryIO, limit: int = MAX_EVIDENCE_BYTES
               ) -> tuple[str, int]:
    """Copy `source` into the store: (sha256, size). `TooLarge` as soon as it exceeds
    `limit` bytes (the partial copy is removed). The same content twice is stored once."""
    directory.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    fd, temp = tempfile.mkstemp(dir=directory, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := source.read(CHUNK):
                size += len(chunk)
                if size > limit:
                    raise TooLarge(f"the file is over {limit} bytes")
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        sha = digest.hexdigest()
        target = directory / sha
        if target.exists():
            os.unlink(temp)
        else:
            os.replace(temp, target)
        return sha, size
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise
