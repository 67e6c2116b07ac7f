"""`bessmon flows` (the dataflows, one process or a cluster) and `bessmon replay` (recorded
telemetry through the broker and the flows, infra/replay.py)."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
import time
from pathlib import Path

from connectors.settings import Settings
from contracts.errors import InvalidInput
from infra.cli.common import positive_int, setup_logging


def cmd_flows(args: argparse.Namespace, settings: Settings) -> int:
    import datetime as dt

    from bytewax.recovery import RecoveryConfig, init_db_dir
    from bytewax.run import cli_main

    from connectors import metrics
    from connectors.kafka import ensure_topics
    from contracts.fleet import load_fleet
    from contracts.monitoring import load_monitoring
    from contracts.native import why_not_compiled
    from flows.site_state import SiteSettings
    from flows.telemetry_flow import build_flow, fewer_collections
    from infra.replay import load_site_contracts

    setup_logging()
    why = why_not_compiled()
    logging.getLogger("bessmon.flows").info(
        "contract engine: %s", "compiled" if why is None else f"Python ({why})")
    fleet = load_fleet(settings.fleet_file)
    config = load_monitoring(settings.monitoring_file)
    contracts = load_site_contracts(settings, fleet)
    child = args.process_id is not None
    if not child:
        ensure_topics(settings.require_kafka(), [
            settings.topic_telemetry, settings.topic_tickets, settings.topic_status,
            settings.topic_availability, settings.topic_dlq, settings.topic_breaches,
            settings.topic_alerts, settings.topic_device_health], settings.topic_partitions)
        if args.recovery_dir and not any(args.recovery_dir.glob("*")):
            args.recovery_dir.mkdir(parents=True, exist_ok=True)
            # One recovery partition per process: a cluster resumes with as many processes.
            init_db_dir(args.recovery_dir, args.processes)
        if args.processes > 1:
            return _flow_cluster(args)
    recovery = RecoveryConfig(args.recovery_dir) if args.recovery_dir else None
    flow = build_flow(settings, fleet, config, contracts, tail=not args.to_end,
                      now_ms=None if args.to_end else (lambda: int(time.time() * 1000)),
                      site_settings=SiteSettings.of(config,
                                                    account_from_contract_year=args.to_end),
                      finish_at_eof=args.to_end, snapshots=recovery is not None,
                      resume=not args.to_end)
    # SIGTERM keeps its default (exit at once): Kafka keeps the input, and with a recovery
    # directory the flow resumes from its last snapshot. Each worker process its metrics.
    part = "flows" if args.process_id is None else f"flows-{args.process_id}"
    with contextlib.suppress(KeyboardInterrupt), metrics.exposed(settings, part), \
            fewer_collections():
        cli_main(flow, process_id=args.process_id,
                 addresses=args.addresses.split(",") if args.addresses else None,
                 epoch_interval=dt.timedelta(seconds=args.epoch_interval),
                 recovery_config=recovery)
    return 0


def _flow_cluster(args: argparse.Namespace) -> int:
    """`--processes N`: N worker processes of one Bytewax cluster on loopback (processes,
    not threads: the GIL makes threads slower than one worker). Kafka partitions
    and sites are spread over them; SIGINT/SIGTERM reach every one; the first to fail stops
    the others, and the worst exit status is this command's."""
    import subprocess

    from infra.ports import free_port
    from infra.services import die_with_parent

    addresses = ",".join(f"127.0.0.1:{free_port()}" for _ in range(args.processes))
    base = [sys.executable, "-m", "infra.cli", "flows", "--epoch-interval",
            str(args.epoch_interval), "--addresses", addresses]
    base += ["--to-end"] if args.to_end else []
    base += ["--recovery-dir", str(args.recovery_dir)] if args.recovery_dir else []
    procs = [subprocess.Popen([*base, "--process-id", str(i)], preexec_fn=die_with_parent)
             for i in range(args.processes)]

    def forward(signum: int, _frame: object) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, forward)
    stopping = False
    while any(p.poll() is None for p in procs):
        if not stopping and any(p.returncode not in (None, 0) for p in procs):
            stopping = True  # a cluster without one of its workers stalls: stop the rest
            forward(signal.SIGTERM, None)
        time.sleep(0.1)
    codes = [p.returncode for p in procs]
    return max((abs(c) for c in codes), default=0)


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from contracts.fleet import load_fleet
    from contracts.monitoring import load_monitoring
    from contracts.output import periods_json
    from infra.replay import load_site_contracts, produce, replay

    if not args.telemetry.exists():
        raise InvalidInput(str(args.telemetry), "", "cannot read: No such file or directory")
    if args.speed != "max":
        n = produce(settings.model_copy(update={"kafka_bootstrap_servers":
                                                settings.require_kafka()}),
                    settings.topic_telemetry, args.telemetry, float(args.speed))
        print(f"sent {n:,} samples to {settings.topic_telemetry} at {args.speed}× speed")
        return 0
    fleet = load_fleet(settings.fleet_file)
    config = load_monitoring(settings.monitoring_file)
    contracts = load_site_contracts(settings, fleet)
    periods = replay(settings, fleet, config, contracts, args.telemetry,
                     status_out=args.status_out, telemetry_history=args.telemetry_history,
                     say=lambda m: print(m, file=sys.stderr))
    print(json.dumps(periods_json(periods, fleet)))
    return 0


def speed(text: str) -> str:
    if text == "max":
        return text
    try:
        if float(text) > 0:
            return text
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"speed must be 'max' or a positive number, got {text!r}")


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    flows = sub.add_parser("flows", help="run the dataflows")
    flows.add_argument("--recovery-dir", type=Path,
                       help="snapshot state here and resume from it after a crash")
    flows.add_argument("--epoch-interval", type=float, default=10.0,
                       help="seconds between state snapshots (default 10)")
    flows.add_argument("--to-end", action="store_true",
                       help="stop at the end of the topics, making everything final "
                            "(replays; no clock-skew check)")
    flows.add_argument("--processes", type=positive_int, default=1,
                       help="worker processes of one Bytewax cluster (default 1)")
    flows.add_argument("--process-id", type=int, help=argparse.SUPPRESS)
    flows.add_argument("--addresses", help=argparse.SUPPRESS)
    flows.set_defaults(run=cmd_flows)

    replay = sub.add_parser(
        "replay", help="recorded telemetry through the broker and flows",
        description="At --speed max: through topics of its own and the flow to their end; "
                    "prints each site's final periods (availability rules §7). At --speed N: "
                    "into the running stack's telemetry topic, N times faster than it happened.")
    replay.add_argument("--fleet", type=Path, help="fleet file (default: BESSMON_FLEET_FILE)")
    replay.add_argument("--telemetry", type=Path, required=True,
                        help="recording: one TelemetrySample JSON per line")
    replay.add_argument("--contracts", type=Path, help="directory of contract files")
    replay.add_argument("--monitoring", type=Path, help="monitoring config file")
    replay.add_argument("--speed", type=speed, default="max",
                        help="max (own topics, to the end) or N× real time into the stack")
    replay.add_argument("--status-out", type=Path,
                        help="write the derived status intervals here (CSV, availability rules §1)")
    replay.add_argument("--no-telemetry-history", dest="telemetry_history",
                        action="store_false",
                        help="leave the per-minute tag values out of the history (statuses, "
                             "availability, events and periods are written; at 1-minute polls "
                             "the minutes are most of a replay's time)")
    replay.set_defaults(run=cmd_replay)
