from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Playwright, sync_playwright

from connectors.settings import REPO_ROOT
from tests.stack import RunningStack, start_stack, wait_gone

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
BUILD = REPO_ROOT / "web" / "dist" / "index.html"  # the dashboard as `make web` builds it


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    if not BUILD.exists():
        pytest.fail(f"{BUILD} is missing: build the dashboard first (make web)")
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Debian's headless Chromium, one per test module."""
    b = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
    yield b
    b.close()


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """One `bessmon up` (fresh broker, Redis, simulator, connector, flows, API) per test
    module, with the module's `STACK_ARGS` if it has any; tickets follow faults after 15 s
    (not 5 min) so tests can look for them."""
    extra: tuple[str, ...] = getattr(request.module, "STACK_ARGS", ())
    running = start_stack(Path(tmp_path_factory.mktemp("stack")), "--ticket-delay", "15s",
                          *extra)
    pids = {int(p) for p in running.state()["children"].values()}  # type: ignore[attr-defined]
    yield running
    # A test may have restarted the API: its new process must go too.
    pids |= {int(p) for p in running.state()["children"].values()}  # type: ignore[attr-defined]
    assert running.stop() == 0
    assert wait_gone(sorted(pids)) == []
