"""Assembles the app: routers under /api/v1, the dashboard at /."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from api.live import LiveHub
from api.routes import health, sites, webhooks, ws
from connectors.settings import REPO_ROOT, Settings, get_settings
from contracts.fleet import load_fleet

WEB_DIR = REPO_ROOT / "web"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    if settings.api_token is None:
        raise RuntimeError("BESSMON_API_TOKEN is not set: the API never runs without "
                           "authentication (bessmon up generates one per run)")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.redis = aioredis.Redis.from_url(settings.require_redis())
        app.state.hub = LiveHub(app.state.redis)
        await app.state.hub.start()
        try:
            yield
        finally:
            await app.state.hub.stop()
            await app.state.redis.aclose()

    app = FastAPI(title="bessmon", version="0.1.0", lifespan=lifespan,
                  docs_url="/api/docs", openapi_url="/api/v1/openapi.json", redoc_url=None)
    app.state.settings = settings
    app.state.token = settings.api_token.get_secret_value()
    app.state.fleet = load_fleet(settings.fleet_file)
    for module in (health, sites, webhooks, ws):
        app.include_router(module.router, prefix="/api/v1")

    @app.get("/", include_in_schema=False)
    async def dashboard() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/web", StaticFiles(directory=WEB_DIR), name="web")
    return app
