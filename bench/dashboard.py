"""Dashboard figures (issue 8): what the browser downloads and how soon the overview shows.

Measured:
  * the build's size: every JS and CSS file of web/dist, raw and gzip (level 9) — the
    overview needs only the entry chunk and the stylesheet; ECharts comes in its own chunk
    when a view first draws a chart;
  * bytes on the wire: what a cold load of the page receives until its first tile (the page
    and its files as served — the API gzips the hashed files — without the API's answers);
  * time to first render: navigation start → the first site tile rendered (the page's
    `bessmon:first-tile` performance mark, its startTime), over `--loads` cold loads (a new
    browser context each: empty cache) in headless Chromium against a `bessmon up` of its
    own on this machine (loopback: no network latency in it).

With --screenshots it first lets the stack run with a few faults (a tripped unit, a tripped
DC block, a hot cell with its alarm, the ticket that follows the trip) and saves the
overview, a site's drill-down and a unit's detail at 1600×900 to docs/.

    make web && .venv/bin/python -m bench.dashboard [--loads 10] [--screenshots --warmup 480]
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, Request, ViewportSize, expect, sync_playwright

from connectors.settings import REPO_ROOT
from tests.stack import RunningStack, start_stack

DIST = REPO_ROOT / "web" / "dist"
DOCS = REPO_ROOT / "docs"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWPORT: ViewportSize = {"width": 1600, "height": 900}


def bundle_sizes() -> list[tuple[str, int, int, bool]]:
    """(file, bytes, gzip bytes, loaded by the first page) per JS and CSS file of the build."""
    index = (DIST / "index.html").read_text(encoding="utf-8")
    first = set(re.findall(r'(?:src|href)="/assets/([^"]+)"', index))
    out = []
    for path in sorted((DIST / "assets").iterdir()):
        if path.suffix in (".js", ".css"):
            data = path.read_bytes()
            out.append((path.name, len(data), len(gzip.compress(data, 9)), path.name in first))
    return out


def first_render_ms(stack: RunningStack, loads: int) -> tuple[list[float], list[int]]:
    """Per cold load: navigation start → first site tile (ms), and the bytes on the wire for
    the page and its files (response bodies as sent: compressed where the server compresses,
    the API's JSON answers and the live feed not counted)."""
    times, wire = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        for k in range(loads + 1):  # the first load, uncounted, warms the API up
            context = browser.new_context(viewport=VIEWPORT)  # a cold cache every time
            page = context.new_page()
            files: list[Request] = []

            def keep(request: Request, into: list[Request] = files) -> None:
                into.append(request)

            page.on("requestfinished", keep)
            page.goto(f"{stack.url}#token={stack.token}")
            page.wait_for_selector(".site-tile", timeout=30_000)
            mark = None
            while mark is None:  # set in the frame that drew the tile
                mark = page.evaluate("performance.getEntriesByName('bessmon:first-tile')[0]"
                                     "?.startTime ?? null")
            if k:
                times.append(float(mark))
                wire.append(sum(r.sizes()["responseBodySize"] for r in files
                                if "/api/" not in r.url))
            context.close()
        browser.close()
    return times, wire


def sim(stack: RunningStack, *args: str) -> None:
    result = stack.bessmon("sim", *args)
    if result.returncode != 0:
        raise SystemExit(f"bessmon sim {' '.join(args)}: {result.stderr}")


def screenshots(stack: RunningStack, say: Callable[[str], None], warmup_s: float) -> list[Path]:
    say(f"letting the stack run {warmup_s:.0f} s (history for the charts)…")
    time.sleep(warmup_s)
    sim(stack, "fault", "mesa-u02", "--for", "30m")
    sim(stack, "fault", "elbe-u02-i2-b5", "--for", "30m")
    sim(stack, "fault", "nordvik-u04", "--kind", "derate", "--severity", "0.6", "--for", "3m")
    sim(stack, "set", "elbe-u04-i1-b7", "cell_temp_max_c", "49")
    time.sleep(min(120.0, warmup_s))  # the faults' statuses final, their tickets sent
    paths = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page: Page = browser.new_page(viewport=VIEWPORT)
        page.goto(f"{stack.url}#token={stack.token}")
        say("waiting for contract KPIs, the alarm and the ticket of the trip…")
        expect(page.locator('.site-tile[data-site="elbe"]')).to_have_attribute(
            "data-warning", re.compile("ok|watch|ld_risk"), timeout=180_000)
        expect(page.locator(".side .alarm-row").first).to_be_visible(timeout=60_000)
        page.wait_for_timeout(3_000)
        paths.append(DOCS / "dashboard-overview.png")
        page.screenshot(path=paths[-1])
        page.evaluate("location.hash = '#/site/elbe'")
        expect(page.locator('.asset-cell[data-asset="elbe-u02-i2-b5"]')).to_have_attribute(
            "data-state", "unavailable", timeout=30_000)
        page.wait_for_timeout(4_000)  # the charts drawn
        paths.append(DOCS / "dashboard-site.png")
        page.screenshot(path=paths[-1])
        page.evaluate("location.hash = '#/asset/mesa-u02'")
        expect(page.locator(".ticket-row").first).to_be_visible(timeout=120_000)
        page.wait_for_timeout(4_000)
        paths.append(DOCS / "dashboard-unit.png")
        page.screenshot(path=paths[-1])
        browser.close()
    return paths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loads", type=int, default=10)
    parser.add_argument("--screenshots", action="store_true",
                        help="save the overview and drill-down screenshots to docs/")
    parser.add_argument("--run-dir", type=Path,
                        help="the stack's run directory (default: a temporary one)")
    parser.add_argument("--warmup", type=float, default=0.0,
                        help="seconds the stack runs before the screenshots' faults")
    args = parser.parse_args()
    if not (DIST / "index.html").exists():
        print("web/dist is missing: run make web first", file=sys.stderr)
        return 2

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    sizes = bundle_sizes()
    print(f"{'file':<34} {'bytes':>9} {'gzip':>9}  loaded")
    for name, raw, gz, first in sizes:
        print(f"{name:<34} {raw:>9,} {gz:>9,}  {'first page' if first else 'on demand'}")
    first_raw = sum(r for _, r, _, f in sizes if f)
    first_gz = sum(g for _, _, g, f in sizes if f)
    print(f"{'first page (JS + CSS)':<34} {first_raw:>9,} {first_gz:>9,}")
    print(f"{'everything':<34} {sum(s[1] for s in sizes):>9,} {sum(s[2] for s in sizes):>9,}")

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args.run_dir or Path(tmp) / "run"
        say(f"starting bessmon up (run dir {run_dir})…")
        stack = start_stack(run_dir, "--ticket-delay", "15s")
        try:
            time.sleep(5)  # the flows' first snapshots
            times, wire = first_render_ms(stack, args.loads)
            print(f"time to first render (navigation start → first site tile), {len(times)} "
                  f"cold loads: median {statistics.median(times):.0f} ms, "
                  f"min {min(times):.0f} ms, max {max(times):.0f} ms")
            print(f"bytes on the wire to the first render (page, JS, CSS as served): "
                  f"{statistics.median(wire):,.0f}")
            if args.screenshots:
                for path in screenshots(stack, say, args.warmup):
                    print(f"saved {path.relative_to(REPO_ROOT)}")
        finally:
            stack.stop()
    # The last line, for scripts: one JSON object.
    print(json.dumps({"bench": "dashboard", "first_page_bytes": first_raw,
                      "first_page_gzip_bytes": first_gz, "loads": len(times),
                      "first_load_wire_bytes": round(statistics.median(wire)),
                      "first_render_ms": {"median": round(statistics.median(times)),
                                          "min": round(min(times)),
                                          "max": round(max(times))}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
