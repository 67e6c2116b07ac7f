"""A bounded, append-only spool on disk: records wait here, in order, while the broker is
unreachable, and survive a restart of the process that wrote them.

Records go into segment files (`<n>.seg`) as length-prefixed frames; a cursor file says how
far the oldest segment has been handed on. Appends are flushed to the OS at once (a crash of
the process loses nothing; `fsync` every `sync_every` appends bounds what a crash of the
machine could lose)."""

from __future__ import annotations

import os
import shutil
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

_HEADER = struct.Struct(">III")  # topic, key, value lengths
SEGMENT_BYTES = 64 * 1024 * 1024


class SpoolFull(RuntimeError):
    """The spool reached its size limit: the record was not taken."""


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    key: bytes
    value: bytes


class Spool:
    def __init__(self, directory: Path, max_bytes: int, *, sync_every: int = 1000) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.sync_every = sync_every
        directory.mkdir(parents=True, exist_ok=True)
        self._segments = sorted(int(p.stem) for p in directory.glob("*.seg"))
        self._cursor_path = directory / "cursor"
        self._read_pos = int(self._cursor_path.read_text()) if self._cursor_path.exists() else 0
        self._writer: BinaryIO | None = None
        self._appends = 0
        self._bytes = sum(p.stat().st_size for p in directory.glob("*.seg")) - self._read_pos

    @property
    def waiting_bytes(self) -> int:
        return max(0, self._bytes)

    @property
    def empty(self) -> bool:
        return self._bytes <= 0

    def append(self, record: Record) -> None:
        topic = record.topic.encode()
        frame = _HEADER.pack(len(topic), len(record.key), len(record.value)) + topic + \
            record.key + record.value
        if self._bytes + len(frame) > self.max_bytes:
            raise SpoolFull(f"spool {self.directory} is full ({self.max_bytes:,} bytes)")
        if self._writer is None or self._writer.tell() + len(frame) > SEGMENT_BYTES:
            self._roll()
        assert self._writer is not None
        self._writer.write(frame)
        self._writer.flush()
        self._bytes += len(frame)
        self._appends += 1
        if self._appends % self.sync_every == 0:
            os.fsync(self._writer.fileno())

    def _roll(self) -> None:
        if self._writer is not None:
            os.fsync(self._writer.fileno())
            self._writer.close()
        number = (self._segments[-1] + 1) if self._segments else 0
        self._segments.append(number)
        self._writer = (self.directory / f"{number}.seg").open("ab")

    def peek(self, limit: int) -> Iterator[tuple[Record, int]]:
        """Up to `limit` oldest records with the size each frees once committed."""
        given = 0
        pos = self._read_pos
        for number in list(self._segments):
            path = self.directory / f"{number}.seg"
            with path.open("rb") as f:
                f.seek(pos)
                while given < limit:
                    head = f.read(_HEADER.size)
                    if len(head) < _HEADER.size:
                        break
                    lt, lk, lv = _HEADER.unpack(head)
                    body = f.read(lt + lk + lv)
                    if len(body) < lt + lk + lv:
                        break  # a frame being written: not complete yet
                    yield (Record(body[:lt].decode(), body[lt:lt + lk], body[lt + lk:]),
                           _HEADER.size + lt + lk + lv)
                    given += 1
            if given >= limit:
                return
            pos = 0

    def commit(self, freed: int) -> None:
        """The oldest records, `freed` bytes of them, have been handed on."""
        self._bytes -= freed
        pos = self._read_pos + freed
        while len(self._segments) > 1:  # fully read segments before the newest: delete
            first = self.directory / f"{self._segments[0]}.seg"
            size = first.stat().st_size
            if pos < size:
                break
            first.unlink()
            self._segments.pop(0)
            pos -= size
        if self._bytes <= 0 and len(self._segments) == 1:  # nothing waits: start over
            if self._writer is not None:
                self._writer.close()
                self._writer = None
            (self.directory / f"{self._segments[0]}.seg").unlink()
            self._segments.clear()
            self._bytes = 0
            pos = 0
        self._read_pos = pos
        tmp = self._cursor_path.with_suffix(".tmp")
        tmp.write_text(str(pos))
        tmp.replace(self._cursor_path)

    def prepend(self, records: list[Record]) -> None:
        """Put `records` in front of everything waiting (what a stopping producer took back
        from librdkafka: older than anything spooled). Rewrites the spool; for shutdown, not
        for the hot path. Never refused for size: these records were accepted already."""
        if not records:
            return
        fresh = self.directory.with_name(self.directory.name + ".new")
        shutil.rmtree(fresh, ignore_errors=True)
        target = Spool(fresh, max(self.max_bytes, 1) * 2, sync_every=self.sync_every)
        for record in records:
            target.append(record)
        for record, _ in self.peek(1 << 62):
            target.append(record)
        target.close()
        self.close()
        old = self.directory.with_name(self.directory.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        self.directory.rename(old)
        fresh.rename(self.directory)
        shutil.rmtree(old)
        self.__init__(self.directory, self.max_bytes,  # type: ignore[misc]
                      sync_every=self.sync_every)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.flush()
            os.fsync(self._writer.fileno())
            self._writer.close()
            self._writer = None
