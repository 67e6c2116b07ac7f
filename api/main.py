"""Assembles the app: protections, error bodies, routers under /api/v1, the dashboard at /
(the build of web/, `make web`: web/dist/index.html and its hashed files under /assets)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import redis.asyncio as aioredis
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, PlainTextResponse, Response

from api import errors, log_redaction
from api.build_files import BuildFiles
from api.context import ApiContext
from api.live import LiveHub
from api.metrics import HttpMetrics
from api.protections import Protections
from api.routes import (
    admin,
    alarms,
    assets,
    auth,
    battery_health,
    comms,
    contracts,
    control,
    data_quality,
    exclusions,
    faults,
    health,
    historian,
    metrics,
    notify,
    repair,
    report_archive,
    sites,
    stack,
    vendors,
    warranty,
    webhooks,
    ws,
)
from connectors.settings import REPO_ROOT, Settings, get_settings

WEB_DIST = REPO_ROOT / "web" / "dist"
NOT_BUILT = "dashboard not built: run make web\n"
REDIS_CONNECTIONS = 64  # per API process; more requests wait for one


def create_app(settings: Settings | None = None, *, web_dist: Path | None = None) -> FastAPI:
    settings = settings or get_settings()
    web_dist = web_dist or WEB_DIST
    ctx = ApiContext.build(settings)
    log_redaction.install()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A pool that waits for a free connection rather than failing: a thousand dashboards
        # reconnecting at once (an API restart) each read a snapshot, and redis-py's default
        # pool refuses the 101st with MaxConnectionsError (bench/ws_fanout.py found it).
        ctx.redis = aioredis.Redis.from_pool(aioredis.BlockingConnectionPool.from_url(
            settings.require_redis(), max_connections=REDIS_CONNECTIONS, timeout=20))
        ctx.hub = LiveHub(ctx.redis, ctx.fleet)
        await ctx.hub.start()
        try:
            yield
        finally:
            await ctx.hub.stop()
            if ctx.ticket_producer is not None:  # the webhooks' (each publish is flushed)
                ctx.ticket_producer.close()
            if ctx.command_producer is not None:  # the control routes' (flushed likewise)
                ctx.command_producer.close()
            await ctx.redis.aclose()
            ctx.history.close()
            ctx.store.close()

    app = FastAPI(title="bessmon", version="0.1.0", lifespan=lifespan,
                  docs_url="/api/docs", openapi_url="/api/v1/openapi.json", redoc_url=None,
                  description="Real-time availability and LTSA monitoring of BESS fleets. "
                              "Every endpoint but health needs a bearer credential; every "
                              "answer is limited to the caller's customers and regions.")
    app.state.ctx = ctx
    errors.install(app)
    for module in (health, auth, sites, repair, assets, historian, faults, alarms, data_quality,
                   contracts, exclusions, report_archive, control, admin, stack, notify,
                   webhooks, ws, battery_health, vendors, comms, warranty):
        app.include_router(module.router, prefix="/api/v1")
    app.include_router(metrics.router)  # /metrics, where Prometheus looks

    @app.get("/", include_in_schema=False)
    async def dashboard() -> Response:
        index = web_dist / "index.html"
        if not index.is_file():  # the API runs without it; the page says how to get it
            return PlainTextResponse(NOT_BUILT, status_code=503)
        return FileResponse(index, headers={"Cache-Control": "no-cache"})

    # Hashed file names: cached for good and gzipped (api/build_files.py).
    app.mount("/assets", BuildFiles(web_dist / "assets"), name="assets")
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=["GET", "POST", "PUT", "DELETE"],
                           allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(Protections, max_request_bytes=settings.max_request_bytes,
                       rate_limit_per_minute=settings.rate_limit_per_minute,
                       redis=lambda: ctx.redis, production=settings.environment ==
                       "production")
    app.add_middleware(HttpMetrics)  # outermost: refusals of the protections counted too
    return app
