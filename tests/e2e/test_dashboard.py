"""The dashboard in a real headless Chromium against the running stack."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.stack import RunningStack

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    yield context.new_page()
    context.close()


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_overview_lists_every_site_and_shows_an_injected_fault(stack: RunningStack,
                                                               page: Page) -> None:
    page.goto(f"{stack.url}#token={stack.token}")
    expect(page.locator("#connection")).to_have_text("live", timeout=15_000)
    tiles = page.locator(".site")
    expect(tiles).to_have_count(3)
    expect(tiles.locator("h2")).to_have_text(["Nordvik Storage", "Elbe Grid Battery",
                                               "Mesa Verde BESS"])
    assert "token" not in page.url  # the token leaves the address bar
    mesa = page.locator('.site[data-site="mesa"]')
    unit = mesa.locator('.unit[data-unit="mesa-u02"]')
    expect(unit).to_have_attribute("data-state", "available", timeout=15_000)

    result = stack.bessmon("sim", "fault", "mesa-u02", "--for", "5m")
    assert result.returncode == 0, result.stderr
    expect(unit).to_have_attribute("data-state", "unavailable", timeout=15_000)
    expect(mesa).to_have_attribute("data-level", "unavailable")
    expect(mesa.locator(".counts")).to_contain_text("1 unavailable")

    assert stack.bessmon("sim", "clear", "mesa-u02").returncode == 0
    expect(unit).to_have_attribute("data-state", "available", timeout=15_000)


@pytest.mark.e2e
def test_without_a_token_the_page_asks_for_the_link(stack: RunningStack, page: Page) -> None:
    page.goto(stack.url)
    expect(page.locator("#connection")).to_have_text("not signed in")
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator(".site")).to_have_count(0)
