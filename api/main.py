"""Assembles the app: protections, error bodies, routers under /api/v1, the dashboard at /."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from api import errors, log_redaction
from api.context import ApiContext
from api.live import LiveHub
from api.protections import Protections
from api.routes import admin, alarms, assets, auth, contracts, health, sites, webhooks, ws
from connectors.settings import REPO_ROOT, Settings, get_settings

WEB_DIR = REPO_ROOT / "web"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    ctx = ApiContext.build(settings)
    log_redaction.install()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx.redis = aioredis.Redis.from_url(settings.require_redis())
        ctx.hub = LiveHub(ctx.redis, ctx.fleet)
        await ctx.hub.start()
        try:
            yield
        finally:
            await ctx.hub.stop()
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
    for module in (health, auth, sites, assets, alarms, contracts, admin, webhooks, ws):
        app.include_router(module.router, prefix="/api/v1")

    @app.get("/", include_in_schema=False)
    async def dashboard() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/web", StaticFiles(directory=WEB_DIR), name="web")
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(Protections, max_request_bytes=settings.max_request_bytes,
                       rate_limit_per_minute=settings.rate_limit_per_minute,
                       redis=lambda: ctx.redis, production=settings.environment ==
                       "production")
    return app
