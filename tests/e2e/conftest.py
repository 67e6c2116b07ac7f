from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import uvicorn
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Playwright,
    ViewportSize,
    expect,
    sync_playwright,
)

from api.main import create_app
from connectors.settings import REPO_ROOT, Settings
from tests.api.accounts import token, write_users
from tests.stack import RunningStack, start_stack, wait_gone

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
BUILD = REPO_ROOT / "web" / "dist" / "index.html"  # the dashboard as `make web` builds it
WEB_DIST = BUILD.parent
LIVE_MS = 20_000  # the dashboard's live feed connects within this


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


@pytest.fixture
def context(request: pytest.FixtureRequest, browser: Browser) -> Iterator[BrowserContext]:
    """A browser context of the module's `VIEWPORT` (default 1600 × 900) that takes
    downloads."""
    default: ViewportSize = {"width": 1600, "height": 900}
    viewport: ViewportSize = getattr(request.module, "VIEWPORT", default)
    ctx = browser.new_context(viewport=viewport, accept_downloads=True)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    """A page whose uncaught errors fail the test."""
    p = context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    yield p
    assert errors == [], f"errors in the page: {errors}"


class LiveServer:
    """The app under uvicorn on a loopback port, in a thread of this process: the API and
    the built dashboard without a whole stack, for pages tested over a seeded history."""

    def __init__(self, settings: Settings) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
        app = create_app(settings, web_dist=WEB_DIST)
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws="auto"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]},
                                       daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "uvicorn did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


@pytest.fixture(scope="module")
def server(settings: Settings) -> Iterator[LiveServer]:
    """A `LiveServer` of the module's `settings`."""
    running = LiveServer(settings)
    yield running
    running.stop()


def fresh_settings(redis_url: str, base: Path) -> Settings:
    """Settings under `base` with the test accounts (tests/api/accounts.py), an empty run
    directory to seed, and no `bessmon:*` key left in Redis by an earlier module."""
    client: redis.Redis = redis.Redis.from_url(redis_url)
    for key in client.scan_iter("bessmon:*"):
        client.delete(key)
    client.close()
    settings = Settings(REDIS_URL=redis_url, run_dir=base / "run",
                        users_file=base / "users.yaml", jwt_key_file=base / "jwt.pem")
    write_users(settings)
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    return settings


def open_page(page: Page, server: LiveServer, settings: Settings, user: str,
              route: str) -> None:
    """Sign `user` in with a token in the address, wait for the live feed, go to `route`."""
    page.goto(f"{server.url}#token={token(settings, user)}")
    expect(page.locator("#connection")).to_have_text("live", timeout=LIVE_MS)
    page.evaluate("route => { location.hash = route }", route)
