"""`bessmon api`: serve the API and the dashboard."""

from __future__ import annotations

import argparse
from typing import Any

from connectors.settings import Settings
from infra.cli.common import setup_logging


def cmd_api(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from api.main import create_app

    setup_logging()
    # No per-message deflate on the live feed: compressing every frame for every client costs
    # more CPU than a NOC's network saves (bench/ws_fanout.py).
    options: dict[str, Any] = {"host": args.host or settings.api_host,
                               "port": args.port or settings.api_port,
                               "log_level": "warning", "ws_per_message_deflate": False}
    if args.workers > 1:
        # Several processes on one port, the kernel dealing out the connections. Each has its
        # own fan-out from Redis; the channels' sequence numbers live in Redis, so a client
        # resumes on whichever process it reaches. Each builds the app from the environment.
        uvicorn.run("api.main:create_app", factory=True, workers=args.workers, **options)
    else:
        uvicorn.run(create_app(settings), **options)
    return 0


def workers(text: str) -> int:
    n = int(text)
    if not 1 <= n <= 64:
        raise argparse.ArgumentTypeError(f"--workers must be 1 to 64, not {n}")
    return n


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    api = sub.add_parser("api", help="serve the API and dashboard")
    api.add_argument("--host")
    api.add_argument("--port", type=int)
    api.add_argument("--workers", type=workers, default=1,
                     help="API processes sharing the port (default 1); more serve more live "
                          "dashboards, a core each")
    api.set_defaults(run=cmd_api)
