"""`bessmon connect opcua --devices F`: the command-line face of the OPC UA connector.

`add_parser` adds the `opcua` action to `bessmon connect`'s subparsers and makes `run` the
function the command runs (its own `run` default overrides `connect`'s)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path

from connectors import metrics
from connectors.settings import Settings


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "opcua", help="subscribe to OPC UA servers into Kafka",
        description="Subscribe to the nodes of the devices in the device list and publish "
                    "their data changes (telemetry) and the devices' health into Kafka.")
    parser.add_argument("--devices", type=Path, required=True,
                        help="device list (YAML): endpoints, security, node maps")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run until SIGINT/SIGTERM. A refused device list raises `InvalidInput` (the caller
    prints it)."""
    from connectors.opcua.service import run_opcua_connector

    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("asyncua").setLevel(logging.ERROR)  # we log what matters ourselves

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_opcua_connector(settings, args.devices, stop)

    with metrics.exposed(settings, f"opcua-{args.devices.stem}"):
        asyncio.run(main())
    return 0
