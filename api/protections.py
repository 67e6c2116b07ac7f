"""What every request passes through before a route sees it (pure ASGI middleware, HTTP
only; WebSockets authenticate in their first frame and are bounded by api/live.py):

- **Size**: a body over `max_request_bytes` is refused with 413 — by its Content-Length
  before it is read, or as soon as a chunked body grows past it; a Content-Length that is
  no number is 400.
- **Rate**: at most `rate_limit_per_minute` requests per client and minute, counted in Redis
  so that every API process shares the count; a client is its bearer credential (a digest of
  it, never the credential) or, without one, its address. Over the limit: 429 with
  Retry-After. Health checks are not counted. If Redis is unreachable the request goes on
  (the limiter must not take the API down with it).
- **Headers**: no sniffing, no framing, no referrer, a Content-Security-Policy that lets the
  dashboard load only from this origin, `Cache-Control: no-store` on API answers, HSTS in
  production.
- **CORS** is closed: no cross-origin browser access unless `BESSMON_CORS_ORIGINS` lists
  origins (then FastAPI's CORSMiddleware is added for exactly those; see api/main.py)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException

from connectors.redis_store import PREFIX

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CSP = ("default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
       "style-src 'self' 'unsafe-inline'; script-src 'self'; frame-ancestors 'none'; "
       "base-uri 'none'; form-action 'self'; object-src 'none'")
# The interactive API docs load Swagger UI from its CDN.
DOCS_CSP = ("default-src 'self'; img-src 'self' data: https://fastapi.tiangolo.com; "
            "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
            "script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; frame-ancestors 'none'")
UNMETERED = ("/api/v1/health",)


class BodyTooLarge(HTTPException):
    """Raised from `receive` as soon as a body without a Content-Length grows past the limit.
    An HTTPException, so that FastAPI's body parsing lets it through (it turns any other
    exception into 400 "There was an error parsing the body") and the app answers 413 in
    its one error body."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body over {limit} bytes")


class Protections:
    def __init__(self, app: ASGIApp, *, max_request_bytes: int, rate_limit_per_minute: int,
                 redis: Callable[[], aioredis.Redis | None], production: bool) -> None:
        self.app = app
        self.max_bytes = max_request_bytes
        self.limit = rate_limit_per_minute
        self.redis = redis
        self.production = production

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        path: str = scope.get("path", "")
        length = headers.get(b"content-length")
        if length is not None and not length.isdigit():  # bytes: ASCII digits only
            await self._reply(send, path, 400, "invalid Content-Length header")
            return
        # A length of more digits than any body has is too large without converting it
        # (int() refuses more than 4,300 digits).
        if length is not None and (len(length) > 18 or int(length) > self.max_bytes):
            await self._reply(send, path, 413, f"request body over {self.max_bytes} bytes")
            return
        if not path.startswith(UNMETERED):
            retry_after = await self._over_limit(scope, headers)
            if retry_after is not None:
                await self._reply(send, path, 429, "too many requests: slow down",
                                  [(b"retry-after", str(retry_after).encode())])
                return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def secured_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), *self._headers(path)]
            await send(message)

        try:
            await self.app(scope, limited_receive, secured_send)
        except BodyTooLarge as exc:  # read outside a route (the app had no handler for it)
            if not started:
                await self._reply(send, path, 413, str(exc.detail))

    async def _reply(self, send: Send, path: str, status: int, detail: str,
                     headers: list[tuple[bytes, bytes]] | None = None) -> None:
        """An answer of the middleware itself: the API's error body and the same security
        headers as every other answer."""
        body = json.dumps({"detail": detail, "status": status}).encode()
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            *(headers or []), *self._headers(path)]})
        await send({"type": "http.response.body", "body": body})

    def _headers(self, path: str) -> list[tuple[bytes, bytes]]:
        out = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
               (b"referrer-policy", b"no-referrer"),
               (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
               (b"content-security-policy",
                (DOCS_CSP if path == "/api/docs" else CSP).encode())]
        if path.startswith("/api/"):
            out.append((b"cache-control", b"no-store"))
        if self.production:
            out.append((b"strict-transport-security", b"max-age=31536000; includeSubDomains"))
        return out

    async def _over_limit(self, scope: Scope, headers: dict[bytes, bytes]) -> int | None:
        """Seconds to wait when the client is over its limit this minute, else None."""
        client = self.redis()
        if client is None:
            return None
        auth = headers.get(b"authorization", b"")
        if auth:
            who = "c:" + hashlib.sha256(auth).hexdigest()[:24]
        else:
            address = scope.get("client") or ("?", 0)
            who = f"a:{address[0]}"
        now = time.time()
        minute = int(now // 60)
        count = await _count(client, f"{PREFIX}:rate:{who}:{minute}")
        if count is not None and count > self.limit:
            return max(1, int((minute + 1) * 60 - now) + 1)
        return None


async def _count(client: aioredis.Redis, key: str) -> int | None:
    """One more on a per-minute counter (kept two minutes); None when Redis is away."""
    try:
        pipe = client.pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, 120)
        count, _ = await pipe.execute()
    except RedisError:
        return None
    return int(count)


async def login_allowed(client: aioredis.Redis, address: str, username: str,
                        per_minute: int) -> bool:
    """Failed-password guessing is bounded per address and username (shared by every API
    process); True while under the limit."""
    key = f"{PREFIX}:login:{address}:{hashlib.sha256(username.encode()).hexdigest()[:16]}:" \
          f"{int(time.time() // 60)}"
    count = await _count(client, key)
    return count is None or count <= per_minute
