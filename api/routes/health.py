"""Health: the only endpoint without authentication (load balancers, `bessmon up`)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from redis.exceptions import RedisError

from api.deps import RedisDep

router = APIRouter(tags=["health"])


@router.get("/health")
async def health(redis: RedisDep, response: Response) -> dict[str, str]:
    try:
        await redis.ping()
    except RedisError:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return {"status": "degraded", "redis": "unreachable"}
    return {"status": "ok", "redis": "ok"}
