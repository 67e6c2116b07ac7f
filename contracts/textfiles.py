"""Input files read as UTF-8 text. A file that is not UTF-8 is refused with its name and the
first byte that does not decode, so a user can find it (`xxd -s OFFSET`); Python's own message
names neither the file nor, for a streamed file, where in it the byte is."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from contracts.errors import InvalidInput


def not_utf8(source: str, exc: UnicodeDecodeError, offset: int = 0,
             line: int | None = None) -> InvalidInput:
    """The refusal of a file that is not UTF-8; `offset` is where the decoded bytes began in
    the file (for files decoded a line at a time)."""
    byte = exc.object[exc.start]
    return InvalidInput(source, "", f"not UTF-8 text (byte 0x{byte:02x} at offset "
                        f"{offset + exc.start})", line)


def read_text(path: Path) -> str:
    """The whole file as text (a UTF-8 byte-order mark is kept: readers that allow one strip
    it themselves)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(str(path), "", f"cannot read: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise not_utf8(str(path), exc, line=line) from None
    # As reading in text mode would: universal newlines.
    return text.replace("\r\n", "\n").replace("\r", "\n")


def text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line with its line ending) of a file too large to read whole."""
    try:
        f = path.open("rb")
    except OSError as exc:
        raise InvalidInput(str(path), "", f"cannot read: {exc.strerror}") from None
    with f:
        offset = 0
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise not_utf8(str(path), exc, offset, number) from None
            offset += len(raw)
            yield number, line
