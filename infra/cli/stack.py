"""`bessmon up` (the whole local stack with the simulator) and `bessmon services` (the
local broker and Redis only)."""

from __future__ import annotations

import argparse
import contextlib
import signal
from pathlib import Path

from connectors.settings import Settings
from infra.cli.common import non_negative, parse_duration, positive_float, positive_int
from infra.sim.portfolio import DEMO_SITES, FLEET_PRESETS

DEMO_FAULT_RATE = 100.0  # `bessmon up`: ~250 faults a day on 3 sites, one every ~6 min
DEMO_FAULT_DURATIONS = 0.1  # … lasting a tenth of the realistic time


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from infra.up import run_up

    sites = FLEET_PRESETS[args.fleet_preset] if args.fleet_preset else args.sites
    return run_up(settings, sites=sites, api_port=args.api_port, seed=args.seed,
                  speed=args.speed, fault_rate=args.fault_rate,
                  fault_durations=args.fault_durations, opcua_site=args.opcua_site,
                  ticket_delay_s=args.ticket_delay,
                  notify_rules=args.notify_rules or settings.notify_rules,
                  connectors=args.connectors,
                  seed_history=args.seed_history == "contract-year")


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


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    up = sub.add_parser("up", help="run the whole local stack with the simulator")
    fleet = up.add_mutually_exclusive_group()
    fleet.add_argument("--sites", type=positive_int, metavar="N",
                       help="simulate N generated sites instead of the fleet file: up to "
                            f"{DEMO_SITES} the demo sites with their contracts, more a "
                            "portfolio with an LTSA per site (deterministic for --seed)")
    fleet.add_argument("--fleet", dest="fleet_preset", choices=sorted(FLEET_PRESETS),
                       help="a generated portfolio preset (fleet-30: 30 sites, as --sites 30)")
    up.add_argument("--api-port", type=int, help="dashboard/API port (default 8000, or a free "
                    "one when taken; 0 = any)")
    up.add_argument("--seed", type=int, default=0, help="simulator (and generated portfolio) "
                    "random seed")
    up.add_argument("--speed", type=float, default=1.0, help="simulated seconds per second")
    up.add_argument("--fault-rate", type=non_negative, default=DEMO_FAULT_RATE,
                    help=f"random faults, times the realistic rates (default "
                         f"{DEMO_FAULT_RATE:g}: a fault every few minutes on 3 sites; 0 = none)")
    up.add_argument("--fault-durations", type=positive_float, default=DEMO_FAULT_DURATIONS,
                    help=f"fault and maintenance durations, times the realistic ones (default "
                         f"{DEMO_FAULT_DURATIONS:g})")
    up.add_argument("--seed-history", choices=("contract-year", "none"),
                    default="contract-year",
                    help="contract-year (default): when the history holds nothing of a "
                         "contract's current year, seed it from the simulator before the "
                         "flows start (about 40 s for the 3 demo sites' years; fleets over "
                         "60 units are not seeded); none: months before monitoring began "
                         "show as no data")
    up.add_argument("--connectors", type=positive_int, metavar="N",
                    help="Modbus connector processes sharing the gateways (`bessmon connect "
                         "modbus --shard I/N`; default one per 400 Modbus units: "
                         "infra/up.py UNITS_PER_CONNECTOR)")
    up.add_argument("--opcua-site", help="the site served over OPC UA (default: the fleet's "
                    "last site when it has several; 'none': every site on Modbus)")
    up.add_argument("--ticket-delay", type=parse_duration, default=300.0,
                    help="simulated time from a fault to its ticket (default 5m)")
    up.add_argument("--notify-rules", type=Path, metavar="FILE",
                    help="notification rules (docs/notifications.md; or BESSMON_NOTIFY_RULES; "
                         "default <run dir>/notify-rules.yaml, which admins may edit through "
                         "the API); e-mail goes through BESSMON_SMTP_URL")
    up.set_defaults(run=cmd_up)

    services = sub.add_parser("services", help="run the local broker and Redis only")
    services.set_defaults(run=cmd_services)
