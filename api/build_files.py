"""The dashboard's hashed files as the API serves them (web/dist/assets, `make web`).

A file's name carries the hash of its content, so a file under /assets never changes: it is
sent with `Cache-Control: public, max-age=31536000, immutable` (a browser never asks for it
again; a new build is new names). Text files (JS, CSS, SVG, JSON, source maps) go out
gzip-compressed (level 9) to a browser that accepts it — each compressed once and kept in
memory (the whole build is a few hundred kB), so a thousand dashboards loading the page cost
one compression per file. A missing file is a 404 even while there is no build at all (one
may be made while the API runs)."""

from __future__ import annotations

import gzip
import os
import threading
from pathlib import Path

from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import Headers
from starlette.types import Scope

IMMUTABLE = "public, max-age=31536000, immutable"
COMPRESSIBLE = frozenset({".js", ".mjs", ".css", ".svg", ".json", ".map", ".txt", ".html"})
MAX_CACHED = 256  # files; a build has a dozen


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding header allows gzip (`gzip` or `*`, not with q=0)."""
    for part in accept_encoding.split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() not in ("gzip", "*"):
            continue
        q = params.strip().lower()
        if q.startswith("q="):
            try:
                if float(q[2:]) == 0:
                    continue
            except ValueError:
                continue
        return True
    return False


class BuildFiles(StaticFiles):
    def __init__(self, directory: Path) -> None:
        super().__init__(directory=directory, check_dir=False)
        self._gzipped: dict[tuple[str, int, int], bytes] = {}
        self._lock = threading.Lock()

    async def check_config(self) -> None:
        return None

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code not in (200, 304):
            return response
        response.headers["Cache-Control"] = IMMUTABLE
        if not isinstance(response, FileResponse) or \
                os.path.splitext(str(response.path))[1].lower() not in COMPRESSIBLE:
            return response
        response.headers["Vary"] = "Accept-Encoding"
        if not accepts_gzip(Headers(scope=scope).get("accept-encoding", "")) or \
                response.stat_result is None:
            return response
        body = await run_in_threadpool(self._gzip, str(response.path), response.stat_result)
        headers = {k: v for k, v in response.headers.items()
                   if k.lower() not in ("content-length", "etag")}
        if etag := response.headers.get("etag"):
            headers["ETag"] = etag[:-1] + '-gzip"' if etag.endswith('"') else etag + "-gzip"
        headers["Content-Encoding"] = "gzip"
        return Response(body, status_code=200, headers=headers,
                        media_type=response.media_type)

    def _gzip(self, path: str, stat: os.stat_result) -> bytes:
        key = (path, stat.st_mtime_ns, stat.st_size)
        with self._lock:
            cached = self._gzipped.get(key)
        if cached is not None:
            return cached
        data = gzip.compress(Path(path).read_bytes(), compresslevel=9, mtime=0)
        with self._lock:
            if len(self._gzipped) >= MAX_CACHED:
                self._gzipped.clear()
            self._gzipped[key] = data
        return data
