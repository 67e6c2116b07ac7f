"""`bessmon archive run`, `schedule` and `compact`: the analytics archive
(connectors/archive/, README "Analytics") — closed days of the history store into Parquet
by site and local day, for DuckDB.

`run` looks at the closed days of the last 7 (or `--days`, or from `--since`) of every site
(or `--site`), prints one line per site-day it wrote, with its place in the run, and a
summary; running it again writes nothing new unless the history changed. `schedule` runs it
every hour (`make up` starts it). A day is closed once the flows have made it final (each
site's `final_ms`, from its snapshot in Redis, as the scheduled reports wait on it).
Configuration: the fleet, the monitoring file (the tags archived), the history store, Redis
and `BESSMON_ARCHIVE_DIR` (default `<run dir>/archive`) of the usual settings."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from collections.abc import Callable, Sequence

from connectors.settings import Settings
from contracts.errors import InvalidInput
from contracts.fleet import Fleet, load_fleet
from infra.cli.common import final_ms_reader, parse_duration, positive_int, run_every
from infra.cli.report import parse_now

SCHEDULE_EVERY_S = 3600.0


def parse_day(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _sites(settings: Settings, site: str | None) -> tuple[Fleet, list[str] | None]:
    fleet = load_fleet(settings.fleet_file)
    if site is not None and site not in {s.id for s in fleet.sites}:
        raise InvalidInput("--site", "", f"no site {site!r} in {settings.fleet_file}")
    return fleet, None if site is None else [site]


def _rows(n: int) -> str:
    return f"{n:,} row{'' if n == 1 else 's'}"


def _archive(settings: Settings, site: str | None, now_ms: int | None,
             since: dt.date | None, days: int, say: Callable[[str], None]) -> int:
    """One run; 1 when another run holds the archive."""
    from connectors.archive import archive_root
    from connectors.archive.writer import ArchiveLocked, Archiver, TableDay
    from connectors.history import open_history
    from contracts.monitoring import load_monitoring

    fleet, site_ids = _sites(settings, site)
    tags = load_monitoring(settings.monitoring_file).tags
    root = archive_root(settings)
    history = open_history(settings)
    final_ms, close_redis = final_ms_reader(settings)
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)

    def said(done: int, total: int, results: Sequence[TableDay]) -> None:
        written = [r for r in results if r.part is not None]
        if written:
            r0 = results[0]
            parts = ", ".join(f"{r.table} {_rows(r.rows)} ({r.part.name})" for r in written
                              if r.part is not None)
            say(f"[{done}/{total}] {r0.site_id} {r0.day.isoformat()}: {parts}")

    try:
        summary = Archiver(root, history, fleet, tags, final_ms).run(
            now_ms, site_ids, since=since, lookback_days=days, on_day=said)
    except ArchiveLocked as exc:  # cron started one while the last still runs: say so
        print(f"bessmon: archive run: {exc}", file=sys.stderr)
        return 1
    finally:
        close_redis()
        history.close()
    say(f"archive: {summary.days} closed site-days looked at, {summary.written} written, "
        f"{summary.days - summary.written} unchanged ({root})")
    return 0


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    return _archive(settings, args.site, args.now, args.since, args.days,
                    lambda line: print(line, flush=True))


def cmd_schedule(args: argparse.Namespace, settings: Settings) -> int:
    """`run` (the closed days of the last `--days`) now and every `--every` until SIGINT or
    SIGTERM."""
    return run_every(args.every, f"archive run (the last {args.days} days)", lambda say: _archive(
        settings, None, None, None, args.days, say))


def cmd_compact(args: argparse.Namespace, settings: Settings) -> int:
    from connectors.archive import archive_root
    from connectors.archive.writer import ArchiveLocked, Archiver
    from connectors.history import open_history

    fleet, site_ids = _sites(settings, args.site)
    root = archive_root(settings)
    history = open_history(settings)
    try:
        done = Archiver(root, history, fleet, (), lambda _site: None).compact(site_ids)
    except ArchiveLocked as exc:
        print(f"bessmon: archive compact: {exc}", file=sys.stderr)
        return 1
    finally:
        history.close()
    for directory in done:
        print(f"compacted {directory.relative_to(root)}")
    print(f"archive: {len(done)} days compacted ({root})")
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    archive = sub.add_parser("archive", help="the analytics archive (Parquet)")
    actions = archive.add_subparsers(dest="archive_command", required=True, metavar="ARCHIVE")
    run = actions.add_parser(
        "run", help="archive the closed days of the history",
        description="Each closed day (final by the flows, and over) of each site into the "
                    "Parquet archive: one line per site-day written; running it again writes "
                    "nothing new unless the history changed.")
    run.add_argument("--now", type=parse_now, default=None, metavar="ISO_TIME",
                     help="decide which days are over as at this time (default: now)")
    run.add_argument("--site", default=None, metavar="ID", help="only this site")
    run.add_argument("--since", type=parse_day, default=None, metavar="YYYY-MM-DD",
                     help="from this local day (default: the last --days closed days)")
    run.add_argument("--days", type=positive_int, default=7, metavar="N",
                     help="the closed days looked at without --since (default 7)")
    run.set_defaults(run=cmd_run)
    schedule = actions.add_parser(
        "schedule", help="run every hour (make up starts it)",
        description="`archive run` now and every --every until stopped; a failed run is "
                    "logged and the next one tried.")
    schedule.add_argument("--every", type=parse_duration, default=SCHEDULE_EVERY_S,
                          metavar="DURATION", help="between runs (default 1h)")
    schedule.add_argument("--days", type=positive_int, default=7, metavar="N",
                          help="the closed days each run looks at (default 7)")
    schedule.set_defaults(run=cmd_schedule)
    compact = actions.add_parser("compact", help="merge each day's parts into one")
    compact.add_argument("--site", default=None, metavar="ID", help="only this site")
    compact.set_defaults(run=cmd_compact)
