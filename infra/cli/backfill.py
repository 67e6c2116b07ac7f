"""`bessmon backfill`: an EMS/portal export into Kafka (connectors/backfill/)."""

from __future__ import annotations

import argparse
from pathlib import Path

from connectors.settings import Settings
from contracts.errors import InvalidInput


def cmd_backfill(args: argparse.Namespace, settings: Settings) -> int:
    from connectors.backfill.service import backfill
    from contracts.fleet import load_fleet

    for path in (args.source, args.mapping):
        if not path.exists():
            raise InvalidInput(str(path), "", "cannot read: No such file or directory")
    fleet = load_fleet(settings.fleet_file)
    sent = backfill(settings, fleet, args.source, args.mapping)
    print(f"sent {sent:,} records from {args.source}")
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    backfill = sub.add_parser(
        "backfill", help="import an EMS/portal export (csv, jsonl, parquet) into Kafka",
        description="Telemetry or status from an export, with its original timestamps, into "
                    "the telemetry (or status) topic; the file is checked whole first.")
    backfill.add_argument("--source", type=Path, required=True, help="the export file")
    backfill.add_argument("--mapping", type=Path, required=True,
                          help="how its columns map (YAML, see connectors/backfill/mapping.py)")
    backfill.add_argument("--fleet", type=Path, help="fleet file (default: BESSMON_FLEET_FILE)")
    backfill.add_argument("--monitoring", type=Path,
                          help="tag maps and possible ranges the values are checked against "
                               "(default: BESSMON_MONITORING_FILE)")
    backfill.set_defaults(run=cmd_backfill)
