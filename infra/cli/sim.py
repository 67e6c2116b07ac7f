"""`bessmon sim`: run the fleet simulator, or control a running one (fault, clear, set,
release) and ask it what damage its equipment suffered (damage)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import sys
from pathlib import Path

import httpx

from connectors.settings import Settings
from infra.cli.common import (
    non_negative,
    parse_duration,
    positive_float,
    positive_int,
    setup_logging,
    stop_on_signals,
)

# What `bessmon sim fault --kind` injects (infra/sim/server.py InjectKind).
FAULT_KINDS = ("trip", "maintenance", "derate", "hvac_failure", "comms_drop", "protection_loss",
               "heat_leak", "overload", "soc_runaway")


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


def cmd_sim(args: argparse.Namespace, settings: Settings) -> int:
    if args.sim_command in ("fault", "clear", "set", "release", "damage"):
        return _sim_control(args, settings)
    import secrets
    import string

    from connectors.modbus.profile import load_profiles
    from contracts.fleet import Fleet, load_fleet
    from infra.sim.faults import FaultRates
    from infra.sim.portfolio import generate_portfolio, write_portfolio
    from infra.sim.server import Simulator, previous_ports, serve
    from infra.sim.ticket_sender import WebhookSender
    from infra.sim.tickets import TicketDesk

    setup_logging()
    fleet_file = args.fleet or settings.fleet_file
    if args.sites:  # the same portfolio as `bessmon up --sites N --seed S`
        fleet_file, contracts_dir = write_portfolio(generate_portfolio(args.sites, args.seed),
                                                    settings.run_dir)
        if contracts_dir is not None:
            print(f"bessmon sim: {args.sites} generated sites in {fleet_file}, their contracts "
                  f"in {contracts_dir} (BESSMON_FLEET_FILE and BESSMON_CONTRACTS_DIR for the "
                  "other parts)", file=sys.stderr)
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
                    fault_rates=rates, tickets=desk, watchdog_s=args.watchdog_s)
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

    ports, opcua_port = previous_ports(fleet, devices_out, opcua_out) if args.keep_ports \
        else ({}, 0)

    async def main() -> None:
        task = asyncio.ensure_future(serve(
            sim, devices_out=devices_out, token=token, control_port=args.control_port,
            ready=ready, opcua_site=args.opcua_site, opcua_devices_out=opcua_out,
            tickets=sender, ports=ports, opcua_port=opcua_port))
        stop = asyncio.Event()
        stop_on_signals(asyncio.get_running_loop(), stop)
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
        elif args.sim_command == "damage":
            response = httpx.get(f"{url}/damage", headers=headers, timeout=10)
        else:
            response = httpx.delete(f"{url}/faults/{args.asset_id}", headers=headers, timeout=10)
    except httpx.HTTPError as exc:
        print(f"bessmon sim: simulator at {url} unreachable: {exc}", file=sys.stderr)
        return 1
    if response.status_code >= 400:
        print(f"bessmon sim: {response.json().get('detail', response.text)}", file=sys.stderr)
        return 2
    if args.sim_command == "damage":
        print(json.dumps(response.json(), indent=2, sort_keys=True))
    elif args.sim_command == "fault":
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


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sim = sub.add_parser("sim", help="run the fleet simulator, or control a running one")
    sim.add_argument("--fleet", type=Path, help="fleet file (default: BESSMON_FLEET_FILE)")
    sim.add_argument("--sites", type=positive_int, help="generate N sites instead (the "
                     "portfolio of `bessmon up --sites N`, for --seed)")
    sim.add_argument("--devices-out", type=Path, help="where to write the connector's "
                     "device list")
    sim.add_argument("--control-port", type=int, default=0, help="HTTP control port")
    sim.add_argument("--keep-ports", action="store_true",
                     help="serve on the ports of the device lists written before, where still "
                          "free (a restarted simulator answers where the connectors poll)")
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
    sim.add_argument("--watchdog-s", type=positive_float, default=10.0,
                     help="wall-clock seconds without a heartbeat change before a unit's "
                          "controller stops it (armed by its first heartbeat write; "
                          "default 10)")
    sim.set_defaults(run=cmd_sim, sim_command=None)
    sim_sub = sim.add_subparsers(dest="sim_command", metavar="ACTION")
    fault = sim_sub.add_parser("fault", help="trip an asset (a site: all its units)")
    fault.add_argument("asset_id")
    fault.add_argument("--for", dest="duration", type=parse_duration, default=300.0,
                       help="how long, e.g. 90s, 5m, 2h (default 5m)")
    fault.add_argument("--kind", default="trip", choices=FAULT_KINDS,
                       help="what goes wrong (default trip; the others apply to units and "
                            "sites: protection_loss, heat_leak, overload and soc_runaway put "
                            "the equipment at risk, see `bessmon sim damage`)")
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
    sim_sub.add_parser("damage", help="what the simulated equipment suffered (JSON: simulated "
                       "seconds and events by unit and kind, and in total)")
