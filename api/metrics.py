"""The API's HTTP figures (connectors/metrics.py defines them): every request counted by
method, route template and status, and timed — by the template (`/api/v1/sites/{site_id}`),
never the path, so a site id or a scanner's made-up paths add no series (a path no route
matches is `(unmatched)`). A pure ASGI middleware: nothing but a clock read and two
increments per request; WebSockets are counted by the live feed (api/routes/ws.py)."""

from __future__ import annotations

import time

from fastapi.routing import iter_route_contexts
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from connectors import metrics

UNMATCHED = "(unmatched)"


class HttpMetrics:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._templates: dict[int, str] | None = None  # route object → its whole path

    def _template(self, scope: Scope) -> str:
        """The template of the route the router chose (it puts the route into the scope it
        was given: this one). A router included under a prefix keeps its routes' own paths
        (`/sites/{site_id}`): the whole one (`/api/v1/sites/{site_id}`) comes from the
        app's route table, read once."""
        route = scope.get("route")
        if route is None:
            return UNMATCHED
        if self._templates is None:
            app = scope.get("app")
            self._templates = {id(c.route): c.path for c in
                               iter_route_contexts(getattr(app, "routes", [])) if c.path}
        return self._templates.get(id(route)) or getattr(route, "path", None) or UNMATCHED

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers when the app raises before it answered

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = self._template(scope)
            method = str(scope.get("method", ""))
            metrics.HTTP_REQUESTS.labels(method, route, str(status)).inc()
            metrics.HTTP_SECONDS.labels(method, route).observe(time.perf_counter() - started)
