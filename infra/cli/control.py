"""`bessmon control`: the control loop and its commands. `run` is the loop itself
(control/service.py; `bessmon up` starts it). `estop` puts emergency stops straight on
`bess.commands` — no API in the way, for the operator at a shell when the dashboard is not
there — and writes them to the same audit log as the API's.

    bessmon control run
    bessmon control estop UNIT_OR_SITE --reason TEXT   one unit, or every unit of a site

The broker is KAFKA_BOOTSTRAP_SERVERS, or the running stack's (`<run dir>/stack.json`, as
`bessmon sim` finds its simulator); the fleet is BESSMON_FLEET_FILE, or the stack's."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
import uuid
from pathlib import Path

from connectors.settings import Settings

PUBLISH_TIMEOUT_S = 15.0


def _stack_state(settings: Settings) -> dict[str, object]:
    state_file = settings.run_dir / "stack.json"
    if not state_file.exists():
        return {}
    state: dict[str, object] = json.loads(state_file.read_text())
    return state


def actor() -> str:
    """Who ran the command: the OS user (the one behind sudo, when it was used)."""
    return "cli:" + (os.environ.get("SUDO_USER") or getpass.getuser())


def cmd_estop(args: argparse.Namespace, settings: Settings) -> int:
    """Emergency stop of a unit, or of every unit of a site: exit 0 once the broker has
    every command, 1 when it did not take them (audited as failed), 2 for an unknown id or
    no broker to send to."""
    from confluent_kafka import KafkaException

    from connectors.api_store import ApiStore
    from connectors.audit import AuditLog
    from connectors.kafka import CheckedProducer, DeliveryFailed, ensure_topics
    from contracts.control import ControlCommand
    from contracts.fleet import load_fleet

    reason = args.reason.strip()
    if not 1 <= len(reason) <= 500:
        print("bessmon control: --reason must be 1 to 500 characters", file=sys.stderr)
        return 2
    state = _stack_state(settings)
    bootstrap = settings.kafka_bootstrap_servers or state.get("kafka")
    if not isinstance(bootstrap, str) or not bootstrap:
        print("bessmon control: no broker: set KAFKA_BOOTSTRAP_SERVERS, or start the stack "
              "(`make up`)", file=sys.stderr)
        return 2
    fleet_file = settings.fleet_file
    if "BESSMON_FLEET_FILE" not in os.environ and isinstance(state.get("fleet_file"), str):
        fleet_file = Path(str(state["fleet_file"]))  # the stack's (it may be generated)
    fleet = load_fleet(fleet_file)
    target = args.target
    asset = fleet.assets.get(target)
    if asset is None or asset.kind not in ("unit", "site"):
        print(f"bessmon control: no unit or site {target!r} in {fleet_file}", file=sys.stderr)
        return 2
    units = [target] if asset.kind == "unit" else [u.id for u in fleet.site(target).units]
    now_ms = int(time.time() * 1000)
    who = actor()
    commands = [ControlCommand(command_id=uuid.uuid4().hex, unit_id=u, kind="estop",
                               actor=who, reason=reason, ts_ms=now_ms) for u in units]
    audit = AuditLog(ApiStore(settings.api_db_path))
    error: str | None = None
    producer: CheckedProducer | None = None
    try:
        ensure_topics(bootstrap, [settings.topic_commands, settings.topic_command_results],
                      settings.topic_partitions)
        config: dict[str, str | int | bool] = {"client.id": "bessmon-cli-control",
                                               "message.timeout.ms": 10_000, "linger.ms": 0}
        producer = CheckedProducer(bootstrap, **config)
        for c in commands:
            producer.produce(settings.topic_commands, c.unit_id, c.model_dump_json().encode())
        producer.flush(PUBLISH_TIMEOUT_S)
    except (DeliveryFailed, KafkaException) as exc:
        error = str(exc)
    finally:
        if producer is not None:
            producer.close()
    for c in commands:
        details: dict[str, object] = {"reason": c.reason, "command_id": c.command_id}
        if error is not None:
            details["error"] = error
        audit.append(who, "control.estop", target=c.unit_id, now_ms=now_ms, details=details,
                     outcome="failed" if error else "ok")
    if error is not None:
        print(f"bessmon control: NOT SENT — the broker at {bootstrap} did not take the "
              f"emergency stop ({error}); stop the equipment at the site", file=sys.stderr)
        return 1
    for c in commands:
        print(f"{c.command_id}\testop\t{c.unit_id}")
    return 0


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    """The control loop until SIGINT or SIGTERM (control/service.py)."""
    from connectors import metrics
    from control.service import run_control
    from infra.cli.common import setup_logging

    setup_logging()
    with metrics.exposed(settings, "control"):
        return run_control(settings)


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    control = sub.add_parser("control", help="the control loop: run it, emergency stops")
    control_sub = control.add_subparsers(dest="control_command", required=True,
                                         metavar="ACTION")

    estop = control_sub.add_parser(
        "estop", help="emergency stop of a unit, or of every unit of a site (straight to "
                      "the broker; audited)")
    estop.add_argument("target", metavar="UNIT_OR_SITE", help="a battery unit's or a site's id")
    estop.add_argument("--reason", required=True, help="why (1–500 characters; audited)")
    estop.set_defaults(run=cmd_estop)

    run = control_sub.add_parser(
        "run", help="run the control loop (breaches and commands → setpoints; `bessmon up` "
                    "starts it)")
    run.set_defaults(run=cmd_run)
