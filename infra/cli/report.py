"""`bessmon report run-due` and `bessmon report schedule`: the scheduled compliance reports
(api/reports/archive.py, README "Scheduled reports") — each closed period's report into the
archive `<run dir>/reports/`, new versions e-mailed to the contracts' `report_recipients`
through the notifier's outbox, and the daily availability summary. `make up` starts
`schedule` (every 10 minutes).

Configuration: `BESSMON_REPORTS_FILE` (default `<run dir>/reports.yaml`, optional:
contracts/reporting.py `ReportsConfig`); the contracts, fleet, history, Redis (for each
site's `final_ms`) and outbox of the usual settings."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from collections.abc import Callable
from pathlib import Path

from connectors.settings import Settings
from infra.cli.common import final_ms_reader, parse_duration, run_every

SCHEDULE_EVERY_S = 600.0
BASE_URL_HELP = ("the API's address for the e-mails' download links (default: the reports "
                 "file's base_url, else http://<api host>:<api port>/)")


def reports_file(settings: Settings) -> Path:
    return Path(os.environ.get("BESSMON_REPORTS_FILE") or settings.run_dir / "reports.yaml")


def parse_now(text: str) -> int:
    """`--now`: an ISO-8601 time with its UTC offset (or Z) → epoch ms."""
    try:
        moment = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {text!r}") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs a UTC offset (e.g. "
                                         "2026-11-03T08:00:00+01:00 or …Z)")
    return int(moment.timestamp() * 1000)


def _run(settings: Settings, now_ms: int | None, contract_id: str | None,
         out: Callable[[str], None], base_url: str | None = None, *,
         notes: bool = True) -> int:
    from api.reports.archive import ReportArchive, Scheduler, archive_root
    from connectors.api_store import ApiStore, approved_windows
    from connectors.history import open_history
    from connectors.notify.outbox import Outbox
    from contracts.contract import fleet_contracts, load_contracts
    from contracts.errors import InvalidInput
    from contracts.fleet import load_fleet
    from contracts.reporting import load_reports_config

    config = load_reports_config(reports_file(settings))
    fleet = load_fleet(settings.fleet_file)
    contracts = fleet_contracts(load_contracts(settings.contracts_dir), fleet)
    if contract_id is not None and contract_id not in {c.id for c in contracts.values()}:
        raise InvalidInput("--contract", "", f"no contract {contract_id!r} in "
                                             f"{settings.contracts_dir}")
    history = open_history(settings)
    archive = ReportArchive(archive_root(settings.run_dir))
    outbox = Outbox(settings.notify_db_path)
    store = ApiStore(settings.api_db_path)  # the approved exclusion windows
    final_ms, close_redis = final_ms_reader(settings)
    base_url = base_url or config.base_url or \
        f"http://{settings.api_host}:{settings.api_port}/"
    try:
        scheduler = Scheduler(fleet, contracts, history, archive, outbox, config, final_ms,
                              base_url, lambda c: approved_windows(store, c.id))
        result = scheduler.run_due(now_ms if now_ms is not None else scheduler.now_ms(),
                                   contract_id)
    finally:
        close_redis()
        store.close()
        outbox.close()
        archive.close()
        history.close()
    for line in result.lines + (result.notes if notes else []):
        out(line)
    for problem in result.problems:
        print(f"bessmon: report run-due: {problem}", file=sys.stderr)
    return 1 if result.problems else 0


def cmd_run_due(args: argparse.Namespace, settings: Settings) -> int:
    return _run(settings, args.now, args.contract, print, args.base_url)


def cmd_schedule(args: argparse.Namespace, settings: Settings) -> int:
    """`run-due` now and every `--every` until SIGINT or SIGTERM."""
    return run_every(args.every, "report run-due", lambda say: _run(
        settings, None, None, say, args.base_url, notes=False))


def _report_actions(sub: argparse._SubParsersAction[argparse.ArgumentParser]
                    ) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """The `report` command's subcommands: the group infra/cli/contracts.py made for
    `report compliance` (registered before this module), or a new one."""
    report = sub.choices.get("report")
    if report is None:
        report = sub.add_parser("report", help="reports for customers")
        return report.add_subparsers(dest="report_command", required=True, metavar="REPORT")
    for action in report._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise RuntimeError("the report command has no subcommands")


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    actions = _report_actions(sub)
    run_due = actions.add_parser(
        "run-due", help="generate and deliver the compliance reports that are due",
        description="Each closed measurement period's compliance report (settlement delay "
                    "passed) into the archive, a new version when late data changed it; new "
                    "versions e-mailed to the contract's report_recipients. Prints one line "
                    "per thing done; running it twice does nothing twice.")
    run_due.add_argument("--now", type=parse_now, default=None, metavar="ISO_TIME",
                         help="decide what is due as at this time (default: now)")
    run_due.add_argument("--contract", default=None, metavar="ID",
                         help="only this contract (and no daily summary)")
    run_due.add_argument("--base-url", help=BASE_URL_HELP)
    run_due.set_defaults(run=cmd_run_due)
    schedule = actions.add_parser("schedule", help="run-due every 10 minutes (make up "
                                                   "starts it)")
    schedule.add_argument("--every", type=parse_duration, default=SCHEDULE_EVERY_S,
                          metavar="DURATION", help="between runs (default 10m)")
    schedule.add_argument("--base-url", help=BASE_URL_HELP)
    schedule.set_defaults(run=cmd_schedule)
