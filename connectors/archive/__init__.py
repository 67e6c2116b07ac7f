"""The analytics archive: closed days of the history store as Parquet, partitioned by site
and local day (`<archive dir>/<table>/site=<id>/day=<YYYY-MM-DD>/part-<n>.parquet`), written
by `bessmon archive run` (writer.py) and read with DuckDB (query.py); historian.py puts the
archive and the history store's recent days together for the API.

The archive is at `BESSMON_ARCHIVE_DIR`, default `<run dir>/archive`."""

from __future__ import annotations

from pathlib import Path

from connectors.settings import Settings


def archive_root(settings: Settings) -> Path:
    return settings.archive_dir or settings.run_dir / "archive"
