"""`bessmon connect modbus --devices F`: the command-line face of the Modbus TCP connector
(beside connectors/opcua/cli.py, its OPC UA twin).

`add_parser` adds the `modbus` action to `bessmon connect`'s subparsers and makes `run` the
function the command runs."""

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
    parser = subparsers.add_parser("modbus", help="poll Modbus TCP devices into Kafka")
    parser.add_argument("--devices", type=Path, required=True, help="device list (YAML)")
    parser.add_argument("--shard", type=shard_arg, default=(0, 1), metavar="I/N",
                        help="poll only shard I of N of the list (whole gateways; 0 ≤ I < N): "
                             "N connectors share a fleet, each gateway polled by one")
    parser.set_defaults(run=run)
    return parser


def shard_arg(text: str) -> tuple[int, int]:
    index, sep, count = text.partition("/")
    if not (sep and index.isdigit() and count.isdigit() and int(index) < int(count)):
        raise argparse.ArgumentTypeError(f"must be I/N with 0 ≤ I < N, got {text!r}")
    return int(index), int(count)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run until SIGINT/SIGTERM. A refused device list raises `InvalidInput` (the caller
    prints it)."""
    from connectors.modbus.service import run_modbus_connector

    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("pymodbus", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_modbus_connector(settings, args.devices, stop, part=args.shard)

    index, count = args.shard
    part = f"modbus-{args.devices.stem}" + (f"-{index + 1}of{count}" if count > 1 else "")
    with metrics.exposed(settings, part):
        asyncio.run(main())
    return 0
