"""Where the archive keeps what: `<root>/<table>/site=<id>/day=<YYYY-MM-DD>/part-<n>.parquet`,
days being the site's local calendar days (as the flows' daily availability and the
contracts count them).

A part file appears only whole: it is written under a hidden temporary name in its own
directory and renamed into place (`os.replace`, atomic on one file system), so a reader that
lists `part-*.parquet` never sees half a file and a crash leaves at most a temporary file,
removed by the next run. The parts of a day are versions: a row in a later part (higher `n`)
replaces the row with the same key in an earlier one; compaction merges them into one."""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

PART = re.compile(r"^part-(\d{6})\.parquet$")
TEMP_SUFFIX = ".tmp"
FINGERPRINT = "_fingerprint"  # sha256 of the day's content as archived (tables.fingerprint)
DAY_MS = 86_400_000


def day_dir(root: Path, table: str, site_id: str, day: dt.date) -> Path:
    return root / table / f"site={site_id}" / f"day={day.isoformat()}"


def parts(directory: Path) -> list[Path]:
    """The day's whole part files, oldest first (temporary files are not parts)."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return sorted(directory / n for n in names if PART.match(n))


def part_number(path: Path) -> int:
    match = PART.match(path.name)
    assert match is not None, path
    return int(match[1])


def next_part(directory: Path) -> Path:
    existing = parts(directory)
    n = part_number(existing[-1]) + 1 if existing else 1
    return directory / f"part-{n:06d}.parquet"


def temp_files(root: Path) -> Iterator[Path]:
    """Leftovers of writes a crash interrupted."""
    if root.is_dir():
        yield from (p for p in root.rglob(f".*{TEMP_SUFFIX}") if p.is_file())


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """What `write(temp_path)` writes, at `path`, all or nothing: a temporary file in the same
    directory, flushed to disk, then renamed over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.parent / f".{path.name}.{os.getpid()}{TEMP_SUFFIX}"
    try:
        write(temp)
        with open(temp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def day_bounds(day: dt.date, tz: ZoneInfo) -> tuple[int, int]:
    """The local day `[start_ms, end_ms)` (23 or 25 hours on a DST change)."""
    start = dt.datetime.combine(day, dt.time(), tz)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tz)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


def local_day(ms: int, tz: ZoneInfo) -> dt.date:
    return dt.datetime.fromtimestamp(ms / 1000, tz).date()


def days_overlapping(start_ms: int, end_ms: int, tz: ZoneInfo) -> list[dt.date]:
    """The local days `[start_ms, end_ms)` touches, in order."""
    if end_ms <= start_ms:
        return []
    first, last = local_day(start_ms, tz), local_day(end_ms - 1, tz)
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
