"""`bessmon contracts evaluate` and `bessmon report compliance`: a contract evaluated over
its periods from files (availability rules §7), printed or as a customer's report."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from connectors.settings import Settings

if TYPE_CHECKING:
    from contracts.engine import Evaluation
    from contracts.intervals import ExclusionWindow


def load_and_evaluate(args: argparse.Namespace) -> tuple[Evaluation, list[ExclusionWindow]]:
    """The inputs of `add_evaluation_inputs`, loaded, validated and evaluated — one path for
    every command that takes them, so each refuses bad input with the same message
    (`InvalidInput`). The exclusion windows are returned too: reports list them."""
    from contracts.contract import load_contract
    from contracts.engine import evaluate
    from contracts.fleet import load_fleet
    from contracts.intervals import load_exclusions, load_status

    fleet = load_fleet(args.fleet)
    contract = load_contract(args.contract)
    status = load_status(args.status, fleet)
    exclusions = load_exclusions(args.exclusions, fleet) if args.exclusions else []
    result = evaluate(fleet, contract, status, exclusions, args.period,
                      contract_source=str(args.contract))
    return result, exclusions


def cmd_contracts_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from contracts.output import evaluation_csv, evaluation_json

    result, _ = load_and_evaluate(args)
    if args.csv:
        sys.stdout.write(evaluation_csv(result))
    else:
        print(json.dumps(evaluation_json(result)))
    return 0


def cmd_report_compliance(args: argparse.Namespace, settings: Settings) -> int:
    from api.reports.csv import to_csv
    from api.reports.data import build_report
    from api.reports.pdf import to_pdf
    from api.reports.xlsx import to_xlsx

    result, exclusions = load_and_evaluate(args)
    report = build_report(result, exclusions)
    data = (to_xlsx(report) if args.format == "xlsx" else
            to_pdf(report) if args.format == "pdf" else to_csv(report).encode("utf-8"))
    try:
        args.out.write_bytes(data)
    except OSError as exc:
        print(f"bessmon: --out {args.out}: cannot write the report: {exc.strerror or exc}",
              file=sys.stderr)
        return 2
    print(f"wrote {args.out} (compliance report {report.header.contract_id} "
          f"{report.header.periods}, {args.format})")
    return 0


def add_evaluation_inputs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fleet", type=Path, required=True, help="fleet file (YAML)")
    parser.add_argument("--contract", type=Path, required=True, help="contract file (YAML)")
    parser.add_argument("--status", type=Path, required=True, help="status intervals (CSV)")
    parser.add_argument("--exclusions", type=Path, help="exclusion windows (CSV)")
    parser.add_argument("--period", required=True,
                        help="2026-10, 2026-Q2, CY3, or a range such as 2026-01..2026-12")


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    contracts = sub.add_parser("contracts", help="LTSA contract evaluation")
    contracts_sub = contracts.add_subparsers(dest="contracts_command", required=True,
                                             metavar="ACTION")
    evaluate = contracts_sub.add_parser(
        "evaluate", help="availability, LD and bonus per period (availability rules §7)",
        description="Evaluate a contract over periods; exit status 2 on invalid input.")
    add_evaluation_inputs(evaluate)
    form = evaluate.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="JSON (default)")
    form.add_argument("--csv", action="store_true", help="CSV, one row per period per unit")
    evaluate.set_defaults(run=cmd_contracts_evaluate)

    report = sub.add_parser("report", help="reports for customers")
    report_sub = report.add_subparsers(dest="report_command", required=True, metavar="REPORT")
    compliance = report_sub.add_parser(
        "compliance", help="availability, hours by class, exclusions and LD step by step",
        description="The compliance report of a contract's periods as xlsx, CSV or PDF; "
                    "exit status 2 on invalid input or an --out that cannot be written.")
    add_evaluation_inputs(compliance)
    compliance.add_argument("--format", required=True, choices=("xlsx", "csv", "pdf"))
    compliance.add_argument("--out", type=Path, required=True, help="file to write")
    compliance.set_defaults(run=cmd_report_compliance)
