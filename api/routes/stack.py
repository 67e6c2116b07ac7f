"""For admins: the parts of the stack as `bessmon up`'s supervisor sees them
(`<run dir>/stack.json`, infra/up.py): each part's state — running, or restarting after it
died — how often it was restarted and how it last exited.

    GET /stack   {"supervised": bool, "updated_ms": …, "parts": [{"name", "state",
                  "restarts", "last_exit"}, …]}

An API not started by `bessmon up` (no stack.json in its run directory) answers
`supervised: false` and no parts: it knows of no other part."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ValidationError

from api.auth.permissions import Permission
from api.auth.principal import Principal
from api.deps import CtxDep, require
from api.errors import ERRORS

router = APIRouter(tags=["admin"], responses=ERRORS)
StackReader = Annotated[Principal, Depends(require(Permission.STACK_READ))]


class StackPart(BaseModel):
    name: str
    state: Literal["running", "restarting"]
    restarts: int
    last_exit: int | None  # the exit status of its last death (negative: killed by signal)


class StackHealth(BaseModel):
    supervised: bool
    updated_ms: int | None  # when the supervisor last wrote what it knows
    parts: list[StackPart]


def read_stack(file: Path) -> StackHealth:
    try:
        updated_ms = int(file.stat().st_mtime * 1000)
        raw = json.loads(file.read_text(encoding="utf-8"))
        parts = [StackPart(name=name, **{k: v for k, v in part.items() if k != "pid"})
                 for name, part in raw.get("parts", {}).items()]
    except (OSError, ValueError, TypeError, AttributeError, ValidationError):
        return StackHealth(supervised=False, updated_ms=None, parts=[])
    return StackHealth(supervised=True, updated_ms=updated_ms, parts=parts)


@router.get("/stack")
async def stack_health(ctx: CtxDep, caller: StackReader) -> StackHealth:
    return await run_in_threadpool(read_stack, ctx.settings.run_dir / "stack.json")
