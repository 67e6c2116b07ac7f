"""What every command group of `bessmon` shares: argument types and the process setup."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import re
import signal
import threading
import time
from collections.abc import Callable

from connectors.settings import Settings

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


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number ≥ 1, got {text!r}")
    return int(text)


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("pymodbus", "uvicorn.access", "httpx", "asyncua"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def stop_on_signals(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


def final_ms_reader(settings: Settings) -> tuple[Callable[[str], int | None],
                                                 Callable[[], None]]:
    """Each site's `final_ms` (how far the flows have made its history final) from its
    snapshot in Redis, and a closer — what the scheduled reports and the archive wait on.
    Without Redis configured there are no flows to wait for (an imported history): None, the
    history is final as it stands. With Redis, a site without a snapshot (the flows have not
    reported yet) is final nowhere: 0."""
    if not settings.redis_url:
        return (lambda _site: None), (lambda: None)
    import redis

    from connectors.redis_store import site_key

    client = redis.Redis.from_url(settings.redis_url, socket_timeout=10)

    def final_ms(site_id: str) -> int | None:
        raw = client.get(site_key(site_id))
        value = json.loads(raw).get("final_ms") if raw else None
        return int(value) if value is not None else 0

    return final_ms, client.close


def run_every(every_s: float, name: str, run: Callable[[Callable[[str], None]], object]) -> int:
    """`run(say)` now and every `every_s` (from one start to the next) until SIGINT or
    SIGTERM, each line said with its UTC time; a run that fails (a bad file, a lost
    connection) is said, and the next one tried. The schedules `make up` starts (reports,
    the archive)."""
    setup_logging()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    def say(line: str) -> None:
        print(f"{dt.datetime.now(dt.UTC).isoformat(timespec='seconds')} {line}", flush=True)

    say(f"{name}: every {every_s:g} s")
    while not stop.is_set():
        started = time.monotonic()
        try:
            run(say)
        except Exception as exc:
            say(f"{name} failed: {type(exc).__name__}: {exc}")
        stop.wait(max(1.0, every_s - (time.monotonic() - started)))
    return 0
