"""`bessmon connect modbus` and `bessmon connect opcua`: each connector's command is its
own (connectors/modbus/cli.py, connectors/opcua/cli.py); this groups them."""

from __future__ import annotations

import argparse

from connectors.modbus import cli as modbus_cli
from connectors.opcua import cli as opcua_cli


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    connect = sub.add_parser("connect", help="run a connector")
    connect_sub = connect.add_subparsers(dest="connector", required=True, metavar="KIND")
    modbus_cli.add_parser(connect_sub)
    opcua_cli.add_parser(connect_sub)
