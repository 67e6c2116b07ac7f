"""`bessmon`: one command, a subcommand per part (`bessmon <command> --help`).

Each command group is a module of this package with its `add_parsers`: `stack` (up,
services), `sim`, `connect` (modbus, opcua), `flows` (flows, replay), `backfill`, `contracts`
(contracts evaluate, report compliance), `users` (audit, users), `api`, `control` (the
control loop's `run`, estop), `notify` (the notifier's `run`), `tickets` (the ticket
poller's `poll`), `report` (report run-due, report schedule: the scheduled compliance
reports, added to the `report` group `contracts` makes), `archive` (archive run, archive
compact: the analytics archive), `backup` (backup, restore: the durable state); `common`
holds what they share."""

from __future__ import annotations

import argparse
import sys

from connectors.settings import get_settings
from contracts.errors import InvalidInput
from infra.cli import (
    api,
    archive,
    backfill,
    backup,
    connect,
    contracts,
    control,
    flows,
    notify,
    report,
    sim,
    stack,
    tickets,
    users,
)

# --help's order
GROUPS = (stack, sim, connect, flows, backfill, contracts, report, archive, users, api,
          control, notify, tickets, backup)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bessmon",
        description="`bessmon`: one command, a subcommand per part (`bessmon <command> --help`).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a command. Invalid input (`InvalidInput`, which names its file, `--period` or other
    option) and invalid settings from the environment exit with status 2 and one line on
    stderr. Only the settings are reported as such: a `ValueError` raised by a command is not
    a setting, and labelling it one (as this once did) sent users looking in the wrong place —
    an input file's error without the file's name is a bug, and its traceback says where."""
    args = build_parser().parse_args(argv)
    try:
        settings = get_settings()
    except ValueError as exc:  # pydantic's ValidationError: BESSMON_* from the environment
        print(f"bessmon: invalid setting: {exc}", file=sys.stderr)
        return 2
    overrides = {name: value for name, value in (
        ("fleet_file", getattr(args, "fleet", None)),
        ("contracts_dir", getattr(args, "contracts", None)),
        ("monitoring_file", getattr(args, "monitoring", None))) if value is not None}
    if overrides and args.command in ("replay", "backfill"):
        settings = settings.model_copy(update=overrides)
    try:
        return int(args.run(args, settings))
    except InvalidInput as exc:
        print(f"bessmon: {exc}", file=sys.stderr)
        return 2

