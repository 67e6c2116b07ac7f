"""Input files that are not UTF-8 are refused with the file, the line and the byte's offset —
whether read whole (YAML, status CSV) or a line at a time (exports, recordings)."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.backfill.reader import rows
from contracts.errors import InvalidInput
from contracts.textfiles import read_text, text_lines
from infra.sim.record import read_jsonl


def test_read_text_keeps_text_as_text_mode_would(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes("\ufeffa,b\r\nä,c\r\n".encode())
    assert read_text(path) == "\ufeffa,b\nä,c\n"


@pytest.mark.parametrize("name", ["export.csv", "export.jsonl", "recording.jsonl"])
def test_files_read_a_line_at_a_time_name_the_line_and_offset(tmp_path: Path,
                                                              name: str) -> None:
    path = tmp_path / name
    first = b'{"a": 1}\r\n' if name.endswith("jsonl") else b"a,b\r\n"  # 10 or 5 bytes
    path.write_bytes(first + first + b"\xc3(\n")  # 0xc3 starts a sequence 0x28 cannot end
    read = (lambda: list(read_jsonl(path))) if name.startswith("recording") else (
        lambda: list(rows(path)))
    with pytest.raises(InvalidInput) as caught:
        read()
    assert str(caught.value) == (f"{path}:3: not UTF-8 text (byte 0xc3 at offset "
                                 f"{2 * len(first)})")


def test_line_endings_are_taken_off_recordings_but_kept_for_csv(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"a": 1}\r\n\n{"a": 2}\n')
    assert list(read_jsonl(path)) == [(1, '{"a": 1}'), (3, '{"a": 2}')]
    assert [line for _, line in text_lines(path)] == ['{"a": 1}\r\n', "\n", '{"a": 2}\n']
    export = tmp_path / "e.csv"
    export.write_bytes('\ufeffa,b\r\n1,"x\r\ny"\r\n'.encode())
    assert list(rows(export)) == [(3, {"a": "1", "b": "x\r\ny"})]
