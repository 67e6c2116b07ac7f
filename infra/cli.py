"""`bessmon`: one command, a subcommand per part (`bessmon <command> --help`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from connectors.opcua import cli as opcua_cli
from connectors.settings import Settings, get_settings
from contracts.errors import InvalidInput

if TYPE_CHECKING:
    from contracts.engine import Evaluation
    from contracts.intervals import ExclusionWindow

DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")


def parse_duration(text: str) -> float:
    """`90`, `30s`, `5m`, `2h`, `1d` → seconds."""
    match = DURATION.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (try 30s, 5m, 2h)")
    value, unit = float(match[1]), match[2] or "s"
    seconds = value * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
    if seconds <= 0:
        raise argparse.ArgumentTypeError("a duration must be positive")
    return seconds


DEMO_FAULT_RATE = 100.0  # `bessmon up`: ~250 faults a day on 3 sites, one every ~6 min
DEMO_FAULT_DURATIONS = 0.1  # … lasting a tenth of the realistic time


def non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number ≥ 0, got {text!r}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def shard(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)/(\d+)", text)
    if not match or not int(match[1]) < int(match[2]):
        raise argparse.ArgumentTypeError(f"must be I/N with 0 ≤ I < N, got {text!r}")
    return int(match[1]), int(match[2])


def tag_value(text: str) -> float | str:
    """A number where it reads as a finite one, else the text (string points)."""
    try:
        value = float(text)
    except ValueError:
        return text
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number or text, got {text!r}")
    return value


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number ≥ 1, got {text!r}")
    return int(text)


def _logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("pymodbus", "uvicorn.access", "httpx", "asyncua"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _stop_on_signals(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


# -- commands ------------------------------------------------------------------------------

def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from infra.up import run_up

    return run_up(settings, sites=args.sites, api_port=args.api_port, seed=args.seed,
                  speed=args.speed, fault_rate=args.fault_rate,
                  fault_durations=args.fault_durations, opcua_site=args.opcua_site,
                  ticket_delay_s=args.ticket_delay)


def cmd_services(args: argparse.Namespace, settings: Settings) -> int:
    import threading

    from infra.services import local_services

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with local_services(settings.run_dir / "logs", kafka=settings.kafka_bootstrap_servers,
                        redis_url=settings.redis_url) as (kafka, redis_url):
        print(f"KAFKA_BOOTSTRAP_SERVERS={kafka}\nREDIS_URL={redis_url}", flush=True)
        print("# services are up; Ctrl-C stops them", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            done.wait()
    return 0


def cmd_sim(args: argparse.Namespace, settings: Settings) -> int:
    if args.sim_command in ("fault", "clear", "set", "release"):
        return _sim_control(args, settings)
    import secrets
    import string

    from connectors.modbus.profile import load_profiles
    from contracts.fleet import Fleet, load_fleet
    from infra.sim.faults import FaultRates
    from infra.sim.fleetgen import fleet_yaml, generate_fleet
    from infra.sim.server import Simulator, serve
    from infra.sim.ticket_sender import WebhookSender
    from infra.sim.tickets import TicketDesk

    _logging()
    fleet_file = args.fleet or settings.fleet_file
    if args.sites:
        fleet_file = settings.run_dir / "fleet.yaml"
        fleet_file.parent.mkdir(parents=True, exist_ok=True)
        fleet_file.write_text(fleet_yaml(generate_fleet(args.sites)), encoding="utf-8")
    fleet = load_fleet(fleet_file)
    if args.shard:
        index, count = args.shard
        fleet = Fleet(sites=fleet.sites[index::count])
    if args.opcua_site and args.opcua_site not in {s.id for s in fleet.sites}:
        print(f"bessmon sim: --opcua-site: no site {args.opcua_site!r} in {fleet_file}",
              file=sys.stderr)
        return 2
    sender = desk = None
    if args.tickets_url:
        secret = os.environ.get("BESSMON_WEBHOOK_SECRET_JIRA", "")
        if not secret:
            print("bessmon sim: --tickets-url needs the Jira webhook secret in "
                  "BESSMON_WEBHOOK_SECRET_JIRA (the API's)", file=sys.stderr)
            return 2
        sender = WebhookSender(args.tickets_url, secret.encode())
        # A project key of its own per run: tickets of several runs never share a key.
        run_tag = "".join(secrets.choice(string.ascii_uppercase) for _ in range(3))
        desk = TicketDesk(delay_s=args.ticket_delay, project=f"SIM{run_tag}")
    rates = None if args.fault_rate == 0 else \
        FaultRates().scaled(args.fault_rate).with_durations(args.fault_durations)
    sim = Simulator(fleet, load_profiles(settings.profiles_dir), seed=args.seed, speed=args.speed,
                    fault_rates=rates, tickets=desk)
    token = os.environ.get("BESSMON_SIM_TOKEN") or _new_token()
    devices_out = args.devices_out or settings.run_dir / "devices.yaml"
    opcua_out = args.opcua_devices_out or devices_out.with_name("opcua-devices.yaml")
    modbus_sites = len(fleet.sites) - (1 if args.opcua_site else 0)

    def ready(devices: object, control_port: int) -> None:
        where = f"{modbus_sites} sites on Modbus TCP" + (
            f", 1 on OPC UA ({args.opcua_site})" if args.opcua_site else "")
        lists = [str(devices_out)] if devices is not None else []
        lists += [str(opcua_out)] if args.opcua_site else []
        faults = f"faults ×{args.fault_rate:g}" if rates else "no random faults"
        tickets = f"; tickets to {args.tickets_url}" if args.tickets_url else ""
        print(f"Simulator: {where}, {len(sim.models)} units; devices in {', '.join(lists)}; "
              f"{faults}{tickets}; control http://127.0.0.1:{control_port}", flush=True)

    async def main() -> None:
        task = asyncio.ensure_future(serve(
            sim, devices_out=devices_out, token=token, control_port=args.control_port,
            ready=ready, opcua_site=args.opcua_site, opcua_devices_out=opcua_out,
            tickets=sender))
        stop = asyncio.Event()
        _stop_on_signals(asyncio.get_running_loop(), stop)
        await asyncio.wait({task, asyncio.ensure_future(stop.wait())},
                           return_when=asyncio.FIRST_COMPLETED)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(main())
    return 0


def _new_token() -> str:
    import secrets

    return secrets.token_urlsafe(24)


def _sim_control(args: argparse.Namespace, settings: Settings) -> int:
    url, token = os.environ.get("BESSMON_SIM_URL"), os.environ.get("BESSMON_SIM_TOKEN")
    state_file = settings.run_dir / "stack.json"
    if not url and state_file.exists():
        state = json.loads(state_file.read_text())
        url, token = state["sim_url"], state["sim_token"]
    if not url or not token:
        print("bessmon sim: no running simulator found (start `make up`, or set BESSMON_SIM_URL "
              "and BESSMON_SIM_TOKEN)", file=sys.stderr)
        return 2
    headers = {"Authorization": f"Bearer {token}"}
    try:
        if args.sim_command == "fault":
            response = httpx.post(f"{url}/faults", headers=headers, timeout=10,
                                  json={"asset_id": args.asset_id, "duration_s": args.duration,
                                        "kind": args.kind, "severity": args.severity})
        elif args.sim_command == "set":
            response = httpx.post(f"{url}/values", headers=headers, timeout=10,
                                  json={"asset_id": args.asset_id, "tag": args.tag,
                                        "value": args.value})
        elif args.sim_command == "release":
            response = httpx.delete(f"{url}/values/{args.asset_id}/{args.tag}",
                                    headers=headers, timeout=10)
        else:
            response = httpx.delete(f"{url}/faults/{args.asset_id}", headers=headers, timeout=10)
    except httpx.HTTPError as exc:
        print(f"bessmon sim: simulator at {url} unreachable: {exc}", file=sys.stderr)
        return 1
    if response.status_code >= 400:
        print(f"bessmon sim: {response.json().get('detail', response.text)}", file=sys.stderr)
        return 2
    if args.sim_command == "fault":
        what = "fault" if args.kind == "trip" else args.kind.replace("_", " ")
        print(f"{what} on {args.asset_id} for {args.duration:.0f}s")
    elif args.sim_command == "set":
        print(f"{args.asset_id} {args.tag} pinned to {args.value} (until "
              f"`bessmon sim release {args.asset_id} {args.tag}`)")
    elif args.sim_command == "release":
        released = response.json()["released"]
        print(f"{args.asset_id} {args.tag}: {'released' if released else 'was not pinned'}")
    else:
        print(f"{args.asset_id}: {'cleared' if response.json()['cleared'] else 'no fault active'}")
    return 0


def cmd_connect(args: argparse.Namespace, settings: Settings) -> int:
    from connectors.modbus.service import run_modbus_connector

    _logging()

    async def main() -> None:
        stop = asyncio.Event()
        _stop_on_signals(asyncio.get_running_loop(), stop)
        await run_modbus_connector(settings, args.devices, stop)

    asyncio.run(main())
    return 0


def cmd_flows(args: argparse.Namespace, settings: Settings) -> int:
    import datetime as dt

    from bytewax.recovery import RecoveryConfig, init_db_dir
    from bytewax.run import cli_main

    from connectors.kafka import ensure_topics
    from contracts.fleet import load_fleet
    from contracts.monitoring import load_monitoring
    from flows.site_state import SiteSettings
    from flows.telemetry_flow import build_flow, fewer_collections
    from infra.replay import load_site_contracts

    _logging()
    fleet = load_fleet(settings.fleet_file)
    config = load_monitoring(settings.monitoring_file)
    contracts = load_site_contracts(settings, fleet)
    child = args.process_id is not None
    if not child:
        ensure_topics(settings.require_kafka(), [
            settings.topic_telemetry, settings.topic_tickets, settings.topic_status,
            settings.topic_availability, settings.topic_dlq, settings.topic_breaches,
            settings.topic_alerts], settings.topic_partitions)
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
                      finish_at_eof=args.to_end, snapshots=recovery is not None)
    # SIGTERM keeps its default (exit at once): Kafka keeps the input, and with a recovery
    # directory the flow resumes from its last snapshot.
    with contextlib.suppress(KeyboardInterrupt), fewer_collections():
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
    from infra.replay import load_site_contracts, periods_json, produce, replay

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
                     status_out=args.status_out, say=lambda m: print(m, file=sys.stderr))
    print(json.dumps(periods_json(periods, fleet)))
    return 0


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


def speed(text: str) -> str:
    if text == "max":
        return text
    try:
        if float(text) > 0:
            return text
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"speed must be 'max' or a positive number, got {text!r}")


def cmd_api(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from api.main import create_app

    _logging()
    # No per-message deflate on the live feed: compressing every frame for every client costs
    # more CPU than a NOC's network saves (bench/ws_fanout.py).
    uvicorn.run(create_app(settings), host=args.host or settings.api_host,
                port=args.port or settings.api_port, log_level="warning",
                ws_per_message_deflate=False)
    return 0


def cmd_audit_verify(args: argparse.Namespace, settings: Settings) -> int:
    """Exit 0 when the audit log is whole, 1 (with every problem) when it is not."""
    from api.audit import verify
    from api.store import ApiStore

    path = settings.api_db_path
    if not path.exists():
        print(f"bessmon: {path}: no audit log here (BESSMON_API_DB, BESSMON_RUN_DIR)",
              file=sys.stderr)
        return 2
    result = verify(ApiStore(path))
    head = f"newest entry {result.head[0]}, hash {result.head[1]}" if result.head else "empty"
    if result.ok:
        print(f"audit log {path}: {result.entries} entries, chain intact; {head}")
        return 0
    print(f"audit log {path}: TAMPERED — {len(result.problems)} problem(s):", file=sys.stderr)
    for problem in result.problems:
        print(f"  {problem}", file=sys.stderr)
    return 1


def cmd_users(args: argparse.Namespace, settings: Settings) -> int:
    """Local users (api/auth/users.py); every change is in the audit log."""
    import getpass

    from api.audit import AuditLog
    from api.auth.users import UserDirectory, add_user, set_disabled
    from api.store import ApiStore

    path = settings.users_path
    if args.users_command == "list":
        for u in UserDirectory(path).all():
            print(f"{u.username}\t{u.role}\tcustomers={','.join(u.customers)}\t"
                  f"regions={','.join(u.regions)}" + ("\tdisabled" if u.disabled else ""))
        return 0
    actor = os.environ.get("SUDO_USER") or os.environ.get("USER") or "cli"
    audit = AuditLog(ApiStore(settings.api_db_path))
    now_ms = int(time.time() * 1000)
    if args.users_command == "add":
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = getpass.getpass(f"password for {args.username}: ")
            if getpass.getpass("again: ") != password:
                print("bessmon: the passwords differ", file=sys.stderr)
                return 2
        if len(password) < 10:
            print("bessmon: a password has at least 10 characters", file=sys.stderr)
            return 2
        user = add_user(path, args.username, password, args.role, args.customer, args.region)
        audit.append(f"cli:{actor}", "user.set", target=user.username, now_ms=now_ms,
                     details={"role": user.role, "customers": list(user.customers),
                              "regions": list(user.regions)})
        print(f"{user.username}: {user.role}, customers {', '.join(user.customers)}, "
              f"regions {', '.join(user.regions)} (in {path})")
        return 0
    if not set_disabled(path, args.username, args.users_command == "disable"):
        print(f"bessmon: {path}: no user {args.username!r}", file=sys.stderr)
        return 2
    audit.append(f"cli:{actor}", f"user.{args.users_command}", target=args.username,
                 now_ms=now_ms)
    print(f"{args.username}: {args.users_command}d")
    return 0


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
    from api.reports.compliance import build_report, to_csv, to_pdf, to_xlsx

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


# -- parser --------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bessmon", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="run the whole local stack with the simulator")
    up.add_argument("--sites", type=positive_int, help="simulate N generated sites instead of "
                    "the fleet file")
    up.add_argument("--api-port", type=int, help="dashboard/API port (default 8000, or a free "
                    "one when taken; 0 = any)")
    up.add_argument("--seed", type=int, default=0, help="simulator random seed")
    up.add_argument("--speed", type=float, default=1.0, help="simulated seconds per second")
    up.add_argument("--fault-rate", type=non_negative, default=DEMO_FAULT_RATE,
                    help=f"random faults, times the realistic rates (default "
                         f"{DEMO_FAULT_RATE:g}: a fault every few minutes on 3 sites; 0 = none)")
    up.add_argument("--fault-durations", type=positive_float, default=DEMO_FAULT_DURATIONS,
                    help=f"fault and maintenance durations, times the realistic ones (default "
                         f"{DEMO_FAULT_DURATIONS:g})")
    up.add_argument("--opcua-site", help="the site served over OPC UA (default: the fleet's "
                    "last site when it has several; 'none': every site on Modbus)")
    up.add_argument("--ticket-delay", type=parse_duration, default=300.0,
                    help="simulated time from a fault to its ticket (default 5m)")
    up.set_defaults(run=cmd_up)

    services = sub.add_parser("services", help="run the local broker and Redis only")
    services.set_defaults(run=cmd_services)

    sim = sub.add_parser("sim", help="run the fleet simulator, or control a running one")
    sim.add_argument("--fleet", type=Path, help="fleet file (default: BESSMON_FLEET_FILE)")
    sim.add_argument("--sites", type=positive_int, help="generate N sites instead")
    sim.add_argument("--devices-out", type=Path, help="where to write the connector's "
                     "device list")
    sim.add_argument("--control-port", type=int, default=0, help="HTTP control port")
    sim.add_argument("--seed", type=int, default=0,
                     help="random seed: the same seed, the same physics and faults")
    sim.add_argument("--speed", type=positive_float, default=1.0,
                     help="simulated seconds per wall-clock second (e.g. 60 for demos)")
    sim.add_argument("--fault-rate", type=non_negative, default=1.0,
                     help="random faults (inverter trips, DC block isolations, HVAC failures, "
                          "comms drops, derates) and maintenance, times the realistic rates "
                          "(default 1; 0 = none)")
    sim.add_argument("--fault-durations", type=positive_float, default=1.0,
                     help="their durations, times the realistic ones (default 1)")
    sim.add_argument("--opcua-site", metavar="SITE_ID",
                     help="serve this site's units over OPC UA instead of Modbus TCP")
    sim.add_argument("--opcua-devices-out", type=Path, help="where to write the OPC UA "
                     "connector's device list (default: opcua-devices.yaml beside "
                     "--devices-out)")
    sim.add_argument("--shard", type=shard, metavar="I/N",
                     help="serve only every N-th site from the I-th (0-based): a large fleet "
                          "served by N simulator processes, one core each")
    sim.add_argument("--tickets-url", metavar="API_URL",
                     help="send Jira ticket webhooks for faults to this API "
                          "(secret: BESSMON_WEBHOOK_SECRET_JIRA)")
    sim.add_argument("--ticket-delay", type=parse_duration, default=300.0,
                     help="simulated time from a fault to its ticket (default 5m)")
    sim.set_defaults(run=cmd_sim, sim_command=None)
    sim_sub = sim.add_subparsers(dest="sim_command", metavar="ACTION")
    fault = sim_sub.add_parser("fault", help="trip an asset (a site: all its units)")
    fault.add_argument("asset_id")
    fault.add_argument("--for", dest="duration", type=parse_duration, default=300.0,
                       help="how long, e.g. 90s, 5m, 2h (default 5m)")
    fault.add_argument("--kind", default="trip", choices=("trip", "maintenance", "derate",
                                                          "hvac_failure", "comms_drop"),
                       help="what goes wrong (default trip; the others apply to units and "
                            "sites)")
    fault.add_argument("--severity", type=float, default=0.5,
                       help="derate: the share of power kept (default 0.5)")
    clear = sim_sub.add_parser("clear", help="end an injected fault now")
    clear.add_argument("asset_id")
    pin = sim_sub.add_parser("set", help="pin a tag of an asset to a value (e.g. a hot DC "
                             "block: bessmon sim set elbe-u01-i1-b3 cell_temp_max_c 50)")
    pin.add_argument("asset_id")
    pin.add_argument("tag")
    pin.add_argument("value", type=tag_value, help="a number (or text, for a text point)")
    release = sim_sub.add_parser("release", help="let a pinned tag follow the physics again")
    release.add_argument("asset_id")
    release.add_argument("tag")

    connect = sub.add_parser("connect", help="run a connector")
    connect_sub = connect.add_subparsers(dest="connector", required=True, metavar="KIND")
    modbus = connect_sub.add_parser("modbus", help="poll Modbus TCP devices into Kafka")
    modbus.add_argument("--devices", type=Path, required=True, help="device list (YAML)")
    connect.set_defaults(run=cmd_connect)
    opcua_cli.add_parser(connect_sub)

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
    replay.set_defaults(run=cmd_replay)

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

    from api.auth.permissions import ROLES

    audit = sub.add_parser("audit", help="the API's audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify = audit_sub.add_parser("verify", help="check the hash chain: exit 1 if tampered")
    verify.set_defaults(run=cmd_audit_verify)

    users = sub.add_parser("users", help="local users of the API (embedded default)")
    users_sub = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    add = users_sub.add_parser("add", help="add a user, or replace one (password asked)")
    add.add_argument("username")
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("--customer", action="append", required=True,
                     help="a customer the user may see (repeat; '*' for all)")
    add.add_argument("--region", action="append", required=True,
                     help="a region the user may see (repeat; '*' for all)")
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from the first line of standard input")
    users_sub.add_parser("list", help="the users, their roles and scopes")
    for action in ("disable", "enable"):
        toggle = users_sub.add_parser(action, help=f"{action} a user (their tokens "
                                      f"{'stop' if action == 'disable' else 'start'} working)")
        toggle.add_argument("username")
    users.set_defaults(run=cmd_users)

    api = sub.add_parser("api", help="serve the API and dashboard")
    api.add_argument("--host")
    api.add_argument("--port", type=int)
    api.set_defaults(run=cmd_api)
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


if __name__ == "__main__":
    sys.exit(main())
