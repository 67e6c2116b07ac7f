"""`bessmon api`: serve the API and the dashboard."""

from __future__ import annotations

import argparse

from connectors.settings import Settings
from infra.cli.common import setup_logging


def cmd_api(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from api.main import create_app

    setup_logging()
    # No per-message deflate on the live feed: compressing every frame for every client costs
    # more CPU than a NOC's network saves (bench/ws_fanout.py).
    uvicorn.run(create_app(settings), host=args.host or settings.api_host,
                port=args.port or settings.api_port, log_level="warning",
                ws_per_message_deflate=False)
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    api = sub.add_parser("api", help="serve the API and dashboard")
    api.add_argument("--host")
    api.add_argument("--port", type=int)
    api.set_defaults(run=cmd_api)
