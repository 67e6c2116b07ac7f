"""E-mail attachments without an SMTP server: the MIME message `build_email` makes (parsed
back as a mail client would), the MIME types, and reading the referenced files at delivery
time — attached only when their SHA-256 is still the archived one, otherwise left out with
the reason the e-mail gives. (The report e-mail through a real SMTP server:
tests/api/test_report_archive.py.)"""

from __future__ import annotations

import email
import email.policy
import hashlib
from email.message import EmailMessage
from pathlib import Path

import pytest

from connectors.notify.attachments import (
    CHANGED,
    MISSING,
    NO_ARCHIVE,
    OUTSIDE,
    Unattached,
    attachments_text,
    load_attachments,
    with_attachments_text,
)
from connectors.notify.outbox import AttachmentRef
from connectors.notify.senders import (
    Attachment,
    Email,
    build_email,
    email_bytes,
    message_id,
    mime_type,
)

PDF = b"%PDF-1.7\n" + bytes(range(256)) * 40  # binary, every byte value
XLSX = b"PK\x03\x04" + b"\x00\xff" * 3000
CSV = "contract,period,availability_pct\nLTSA-NORDVIK,2026-10,98.512 — ü\n".encode()
SENDER = "bessmon@fleet.example"


def parse(message: EmailMessage) -> EmailMessage:
    """The message as it goes on the wire, read back as a mail client reads it."""
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_the_files_arrive_as_attachments_with_names_types_and_bytes() -> None:
    files = (Attachment("LTSA-NORDVIK-2026-10-v1.pdf", "application/pdf", PDF),
             Attachment("LTSA-NORDVIK-2026-10-v1.xlsx", "application/vnd.openxmlformats-"
                        "officedocument.spreadsheetml.sheet", XLSX),
             Attachment("LTSA-NORDVIK-2026-10-v1.csv", "text/csv; charset=utf-8", CSV))
    msg = Email("report:LTSA-NORDVIK:2026-10:v1:a@b.example", "a@b.example",
                "Compliance report LTSA-NORDVIK 2026-10", "Availability: 98.512 %\n", files)
    assert email_bytes(msg, SENDER) is None  # the hand-written fast path has no parts
    got = parse(build_email(msg, SENDER))
    assert got.get_content_type() == "multipart/mixed"
    assert got["Message-ID"] == message_id(msg.id)
    body = got.get_body(("plain",))
    assert body is not None and body.get_content() == "Availability: 98.512 %\n"
    parts = list(got.iter_attachments())
    assert [(p.get_filename(), p.get_content_type()) for p in parts] == [
        (f.name, f.content_type.split(";")[0]) for f in files]
    assert [p.get_payload(decode=True) for p in parts] == [PDF, XLSX, CSV]
    assert parts[2].get_param("charset") == "utf-8"
    assert all(p.get_content_disposition() == "attachment" for p in parts)


def test_without_attachments_the_message_is_plain_text() -> None:
    msg = Email("x", "a@b.example", "s", "text\n")
    assert email_bytes(msg, SENDER) is not None
    assert parse(build_email(msg, SENDER)).get_content_type() == "text/plain"


@pytest.mark.parametrize(("content_type", "expected"), [
    ("application/pdf", ("application", "pdf", {})),
    ("text/csv; charset=utf-8", ("text", "csv", {"charset": "utf-8"})),
    ('Text/CSV; Charset="UTF-8"', ("text", "csv", {"charset": "UTF-8"})),
    ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
     ("application", "vnd.openxmlformats-officedocument.spreadsheetml.sheet", {})),
    ("pdf", ("application", "octet-stream", {})),
    ("", ("application", "octet-stream", {})),
    ("text/csv\r\nBcc: x@evil.example", ("application", "octet-stream", {})),
    ("text/csv; charset=utf-8\r\nBcc: x", ("text", "csv", {})),
])
def test_mime_types(content_type: str, expected: tuple[str, str, dict[str, str]]) -> None:
    assert mime_type(content_type) == expected


def ref(root: Path, relative: str, data: bytes, name: str | None = None) -> AttachmentRef:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return AttachmentRef(relative, name or path.name, "application/pdf",
                         hashlib.sha256(data).hexdigest(), len(data))


def test_files_are_read_at_delivery_and_checked_against_their_hash(tmp_path: Path) -> None:
    root = tmp_path / "reports"
    good = ref(root, "LTSA-NORDVIK/2026-10/v1/report.pdf", PDF, "N-v1.pdf")
    changed = ref(root, "LTSA-NORDVIK/2026-10/v1/report.xlsx", XLSX, "N-v1.xlsx")
    (root / changed.path).write_bytes(XLSX + b"edited")
    gone = ref(root, "LTSA-NORDVIK/2026-10/v1/report.csv", CSV, "N-v1.csv")
    (root / gone.path).unlink()
    outside = ref(tmp_path, "secret.pdf", b"not a report", "secret.pdf")
    sneaky = AttachmentRef("../secret.pdf", "s.pdf", "application/pdf", outside.sha256, 12)
    absolute = AttachmentRef(str(tmp_path / "secret.pdf"), "a.pdf", "application/pdf",
                             outside.sha256, 12)
    a_dir = AttachmentRef("LTSA-NORDVIK", "d.pdf", "application/pdf", "00" * 32, 0)
    attached, left_out = load_attachments(root, [good, changed, gone, sneaky, absolute, a_dir])
    assert attached == (Attachment("N-v1.pdf", "application/pdf", PDF),)
    assert left_out == (Unattached("N-v1.xlsx", CHANGED), Unattached("N-v1.csv", MISSING),
                        Unattached("s.pdf", OUTSIDE), Unattached("a.pdf", OUTSIDE),
                        Unattached("d.pdf", MISSING))
    assert load_attachments(None, [good]) == ((), (Unattached("N-v1.pdf", NO_ARCHIVE),))
    assert load_attachments(root, []) == ((), ())


def test_the_text_says_what_is_attached_and_what_not_and_why() -> None:
    pdf = Attachment("N-v1.pdf", "application/pdf", PDF)
    xlsx = Attachment("N-v1.xlsx", "application/pdf", XLSX)
    assert attachments_text([pdf, xlsx], []) == "Attached: N-v1.pdf, N-v1.xlsx.\n"
    assert attachments_text([pdf], [Unattached("N-v1.csv", CHANGED)]) == (
        "Attached: N-v1.pdf.\n"
        f"Not attached: N-v1.csv: {CHANGED}. Use its download link above.\n")
    assert attachments_text([], []) == ""
    body = "Download:\n  PDF: https://h/v1.pdf\n"
    assert with_attachments_text(body, [], [Unattached("N-v1.pdf", MISSING)]) == (
        "Download:\n  PDF: https://h/v1.pdf\n\n"
        "Not attached: N-v1.pdf: the archived file is missing. Use its download link above.\n")
    assert with_attachments_text(body, [], []) == body
