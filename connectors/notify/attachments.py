"""E-mail attachments at delivery time: the outbox holds references (`AttachmentRef`: a path
in the report archive and the SHA-256 it had when archived), the sender reads the files
here, just before it sends.

Why check the hash: the e-mail says it carries the archived report, the very file the
archive's download serves and its hash proves. A file removed or changed since (a restore
from an older backup, a hand edit) is left out rather than sent as if it were the report,
and the e-mail says which and why — its download link is in the text anyway, and the
download refuses a damaged file just the same (409). Why never fail the message for it: a
missing file does not come back by retrying, and the figures and links are still worth
delivering; a failure here must never become a delivery loop."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from connectors.notify.outbox import AttachmentRef
from connectors.notify.senders import Attachment

MISSING = "the archived file is missing"
CHANGED = "the archived file changed after the report was made (its SHA-256 differs)"
UNREADABLE = "the archived file cannot be read"
NO_ARCHIVE = "this sender has no report archive to read it from"
OUTSIDE = "its path leads outside the report archive"


@dataclass(frozen=True)
class Unattached:
    """A referenced file left out, and why (one of the reasons above)."""

    name: str
    reason: str


def load_attachments(root: Path | None, refs: Sequence[AttachmentRef]
                     ) -> tuple[tuple[Attachment, ...], tuple[Unattached, ...]]:
    """The files of `refs` read from under `root`, each only if its SHA-256 is still the
    archived one; and those left out, with the reason. Never raises for a file."""
    attached: list[Attachment] = []
    left_out: list[Unattached] = []
    for ref in refs:
        data, reason = _read(root, ref)
        if data is None:
            left_out.append(Unattached(ref.name, reason))
        else:
            attached.append(Attachment(ref.name, ref.content_type, data))
    return tuple(attached), tuple(left_out)


def _read(root: Path | None, ref: AttachmentRef) -> tuple[bytes | None, str]:
    if root is None:
        return None, NO_ARCHIVE
    relative = PurePosixPath(ref.path)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        return None, OUTSIDE
    try:
        data = (root / relative).read_bytes()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None, MISSING
    except OSError:
        return None, UNREADABLE
    if hashlib.sha256(data).hexdigest() != ref.sha256.lower():
        return None, CHANGED
    return data, ""


def attachments_text(attached: Sequence[Attachment], left_out: Sequence[Unattached]) -> str:
    """The lines the sender adds at the end of the e-mail: what it carries, and each file
    it could not attach with the reason (empty when the message referenced none)."""
    lines: list[str] = []
    if attached:
        lines.append("Attached: " + ", ".join(a.name for a in attached) + ".")
    for u in left_out:
        lines.append(f"Not attached: {u.name}: {u.reason}. Use its download link above.")
    return "\n".join(lines) + "\n" if lines else ""


def with_attachments_text(body: str, attached: Sequence[Attachment],
                          left_out: Sequence[Unattached]) -> str:
    """`body` with `attachments_text` after a blank line."""
    text = attachments_text(attached, left_out)
    if not text:
        return body
    return body.rstrip("\n") + "\n\n" + text
