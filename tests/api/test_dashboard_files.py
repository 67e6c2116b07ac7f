"""The API serves the dashboard's build (web/dist): its page at `/` under a CSP that lets it
load only its own scripts, its hashed files under /assets cached for good and gzipped for
browsers that take it — and still starts without a build, saying how to make one."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.build_files import IMMUTABLE, accepts_gzip
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


def test_hashed_files_are_cached_for_good_and_sent_gzipped(api_settings: Settings,
                                                           tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    script = ("export const sites = [" + ",".join(f'"site-{n}"' for n in range(2000))
              + "];\n").encode()
    (dist / "assets" / "index-abc.js").write_bytes(script)
    (dist / "assets" / "logo-abc.png").write_bytes(b"\x89PNG" + bytes(range(256)) * 8)
    with TestClient(create_app(api_settings, web_dist=dist)) as client:
        for _ in range(2):  # the second from the memory cache: the same bytes
            zipped = client.get("/assets/index-abc.js", headers={"Accept-Encoding": "gzip"})
            assert zipped.status_code == 200
            assert zipped.headers["content-encoding"] == "gzip"
            assert zipped.headers["cache-control"] == IMMUTABLE
            assert zipped.headers["vary"] == "Accept-Encoding"
            assert "javascript" in zipped.headers["content-type"]
            assert zipped.content == script  # (httpx decompresses)
            wire = int(zipped.headers["content-length"])
            assert wire == zipped.num_bytes_downloaded < len(script) / 4
        plain = client.get("/assets/index-abc.js", headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in plain.headers and plain.content == script
        assert plain.headers["cache-control"] == IMMUTABLE
        assert plain.headers["etag"] != zipped.headers["etag"]
        refused = client.get("/assets/index-abc.js", headers={"Accept-Encoding": "gzip;q=0"})
        assert "content-encoding" not in refused.headers
        image = client.get("/assets/logo-abc.png", headers={"Accept-Encoding": "gzip"})
        assert "content-encoding" not in image.headers  # compressed already: sent as it is
        assert image.headers["cache-control"] == IMMUTABLE
        assert client.get("/assets/gone-abc.js",
                          headers={"Accept-Encoding": "gzip"}).status_code == 404


@pytest.mark.parametrize(("header", "ok"), [
    ("gzip", True), ("gzip, deflate, br", True), ("br;q=1.0, gzip;q=0.8", True), ("*", True),
    ("GZIP", True), ("", False), ("identity", False), ("gzip;q=0", False), ("br", False),
    ("gzip;q=0.0, *;q=0", False), ("gzip;q=x", False), ("deflate, *;q=0.1", True)])
def test_accept_encoding_is_read_as_browsers_write_it(header: str, ok: bool) -> None:
    assert accepts_gzip(header) is ok
