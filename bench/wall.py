"""The browser at the wall (issue 16): does a page left open on a 30-site fleet keep up, and
does it leak?

A `bessmon up --sites N` of its own (default 30, the fleet channel updating every second) and
one headless Chromium page at 1920×1080 on a view of the dashboard (`--view wall`, the
default, or `overview`), left running for `--minutes`. Through the Chrome DevTools Protocol
(`Performance.getMetrics`) it samples every `--every` seconds:

  * the main thread's busy share: the growth of `TaskDuration` (the seconds the renderer's
    main thread spent in tasks: scripts, style, layout, paint) over the growth of the
    wall clock — 0.20 is a fifth of one core;
  * the JavaScript heap in use (`JSHeapUsedSize`) right after a forced garbage collection
    (`HeapProfiler.collectGarbage`), so that what is measured is what the page keeps.

Reported: the busy share over the whole run and its worst sampling window; the heap after
the first minute (the page's working set, once its charts and caches are built), at the end,
its maximum, and the slope of a least-squares line through the samples after the first
minute, in MB per hour. The page's own script errors are counted (they should be none).

    make web && .venv/bin/python -m bench.wall [--minutes 60] [--view wall|overview] [--sites 30]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from playwright.sync_api import CDPSession, expect, sync_playwright

from bench.dashboard import CHROMIUM_ARGS, DIST
from tests.stack import start_stack

ROUTES = {"wall": "#/wall", "overview": "#/"}


def metrics(cdp: CDPSession) -> dict[str, float]:
    got: dict[str, Any] = cdp.send("Performance.getMetrics")
    return {m["name"]: float(m["value"]) for m in got["metrics"]}


def heap_after_gc(cdp: CDPSession) -> float:
    cdp.send("HeapProfiler.collectGarbage")
    return metrics(cdp)["JSHeapUsedSize"]


def slope_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, bytes) in bytes per hour; 0 with fewer than 2 points."""
    if len(points) < 2:
        return 0.0
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx * 3600


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="how long the page runs")
    parser.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--view", choices=sorted(ROUTES), default="wall")
    parser.add_argument("--sites", type=int, default=30)
    parser.add_argument("--run-dir", type=Path,
                        help="the stack's run directory (default: a temporary one)")
    args = parser.parse_args()
    if not (DIST / "index.html").exists():
        print("web/dist is missing: run make web first", file=sys.stderr)
        return 2
    if args.minutes <= 0 or args.every <= 0 or args.sites < 1:
        print("--minutes, --every and --sites must be positive", file=sys.stderr)
        return 2

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    duration_s = args.minutes * 60
    every_s = min(args.every, duration_s)
    settle_s = min(60.0, duration_s / 4)  # the first minute builds charts and caches
    errors: list[str] = []
    busy: list[tuple[float, float]] = []  # (elapsed s, busy share of the window before it)
    heap: list[tuple[float, float]] = []  # (elapsed s, bytes after GC)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args.run_dir or Path(tmp) / "run"
        say(f"starting bessmon up --sites {args.sites} (run dir {run_dir})…")
        stack = start_stack(run_dir, "--sites", str(args.sites))
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                            args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1920, "height": 1080})
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                page.goto(f"{stack.url}#token={stack.token}")
                expect(page.locator("#connection")).to_have_text("live", timeout=60_000)
                page.evaluate("route => { location.hash = route }", ROUTES[args.view])
                page.wait_for_timeout(3_000)
                cdp = page.context.new_cdp_session(page)
                cdp.send("Performance.enable", {"timeDomain": "timeTicks"})
                start = metrics(cdp)
                last = start
                heap.append((0.0, heap_after_gc(cdp)))
                t0 = time.monotonic()
                say(f"{args.view}: sampling every {every_s:.0f} s for {args.minutes:g} min…")
                while (elapsed := time.monotonic() - t0) < duration_s:
                    page.wait_for_timeout(min(every_s, duration_s - elapsed) * 1000)
                    now = metrics(cdp)
                    window = now["Timestamp"] - last["Timestamp"]
                    share = (now["TaskDuration"] - last["TaskDuration"]) / window
                    elapsed = time.monotonic() - t0
                    busy.append((elapsed, share))
                    heap.append((elapsed, heap_after_gc(cdp)))
                    last = metrics(cdp)  # the GC's own work is not the page's
                    say(f"  {elapsed / 60:5.1f} min: main thread {share:6.1%}, "
                        f"heap {heap[-1][1] / 1e6:6.2f} MB")
                end = metrics(cdp)
                browser.close()
        finally:
            stack.stop()
    total_s = end["Timestamp"] - start["Timestamp"]
    share_all = sum(b for _, b in busy) / len(busy)
    settled = [(t, h) for t, h in heap if t >= settle_s] or heap[-1:]
    result = {
        "bench": "wall", "view": args.view, "sites": args.sites,
        "minutes": round(total_s / 60, 2), "samples": len(busy),
        "main_thread_busy": {"mean": round(share_all, 4),
                             "worst_window": round(max(b for _, b in busy), 4)},
        "heap_mb": {"after_first_minute": round(settled[0][1] / 1e6, 2),
                    "end": round(heap[-1][1] / 1e6, 2),
                    "max": round(max(h for _, h in heap) / 1e6, 2),
                    "slope_mb_per_hour": round(slope_per_hour(settled) / 1e6, 3)},
        "page_errors": len(errors),
    }
    print(f"{args.view} at {args.sites} sites over {result['minutes']} min: main thread busy "
          f"{share_all:.1%} of a core (worst {args.every:g}-s window "
          f"{result['main_thread_busy']['worst_window']:.1%}); heap after GC "
          f"{result['heap_mb']['after_first_minute']} MB → {result['heap_mb']['end']} MB "
          f"(max {result['heap_mb']['max']} MB, slope {result['heap_mb']['slope_mb_per_hour']} "
          f"MB/h); page errors: {len(errors)}")
    # The last line, for scripts: one JSON object.
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
