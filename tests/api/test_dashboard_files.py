"""The API serves the dashboard's build (web/dist): its page at `/` under a CSP that lets it
load only its own scripts, its hashed files under /assets — and still starts without a
build, saying how to make one."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from api.main import create_app
from api.protections import CSP
from connectors.settings import Settings


def test_the_built_page_and_its_files_are_served(api_settings: Settings,
                                                 tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text('<!doctype html><title>bessmon</title>'
                                     '<script type="module" src="/assets/index-abc.js"></script>')
    (dist / "assets" / "index-abc.js").write_text("console.log('bessmon')")
    with TestClient(create_app(api_settings, web_dist=dist)) as client:
        page = client.get("/")
        assert page.status_code == 200 and "<title>bessmon</title>" in page.text
        assert page.headers["cache-control"] == "no-cache"
        assert page.headers["content-security-policy"] == CSP
        assert "script-src 'self'" in CSP and "'unsafe-inline'" not in \
            CSP.split("script-src", 1)[1].split(";", 1)[0]
        script = client.get("/assets/index-abc.js")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
        assert client.get("/assets/missing.js").status_code == 404


def test_without_a_build_the_api_starts_and_says_how_to_build(api_settings: Settings,
                                                              tmp_path: Path) -> None:
    with TestClient(create_app(api_settings, web_dist=tmp_path / "nothing")) as client:
        assert client.get("/api/v1/health").status_code == 200
        page = client.get("/")
        assert page.status_code == 503
        assert page.text == "dashboard not built: run make web\n"
        assert client.get("/assets/index.js").status_code == 404
