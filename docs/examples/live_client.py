"""A minimal bessmon live-feed client for integrators (docs/websocket.md): signs in with a
bearer token, subscribes to channels, prints every snapshot and update as one JSON line, and
after a dropped connection reconnects and resumes each channel from the last sequence number
it saw — nothing lost, nothing twice. The test suite runs it (tests/api/test_ws_resume.py).

    python docs/examples/live_client.py --url ws://127.0.0.1:8000/api/v1/ws \\
        --token "$TOKEN" --channel fleet --channel alarms [--state seqs.json]

`--state FILE` keeps the last sequence numbers across runs of the program too; `--updates N`
stops after N updates (for scripts and tests). Needs `pip install websockets`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect


def run(url: str, token: str, channels: list[str], state: Path | None,
        updates: int | None) -> int:
    seqs: dict[str, int] = json.loads(state.read_text()) if state and state.exists() else {}
    seen = 0
    backoff = 0.5
    while True:
        try:
            with connect(url, open_timeout=10) as ws:
                ws.send(json.dumps({"type": "auth", "token": token}))
                ready = json.loads(ws.recv(timeout=10))
                if ready["type"] != "ready":
                    print(json.dumps(ready), file=sys.stderr)
                    return 2
                for channel in channels:
                    request: dict[str, Any] = {"type": "subscribe", "channel": channel}
                    if channel in seqs:
                        request["since"] = seqs[channel]  # resume where we were
                    ws.send(json.dumps(request))
                backoff = 0.5
                while True:
                    msg = json.loads(ws.recv())
                    if msg["type"] in ("snapshot", "resume", "update"):
                        seqs[msg["channel"]] = msg["seq"]
                        if state:
                            state.write_text(json.dumps(seqs))
                    if msg["type"] in ("snapshot", "update", "error"):
                        print(json.dumps(msg), flush=True)
                    if msg["type"] == "update":
                        seen += 1
                        if updates is not None and seen >= updates:
                            return 0
        except ConnectionClosed as closed:
            if closed.rcvd is not None and closed.rcvd.code == 4401:
                print(f"not authenticated: {closed.rcvd.reason}", file=sys.stderr)
                return 2
        except OSError:
            pass  # the API is away: try again
        time.sleep(backoff)
        backoff = min(backoff * 2, 10.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--channel", action="append", required=True)
    parser.add_argument("--state", type=Path)
    parser.add_argument("--updates", type=int)
    args = parser.parse_args()
    return run(args.url, args.token, args.channel, args.state, args.updates)


if __name__ == "__main__":
    sys.exit(main())
