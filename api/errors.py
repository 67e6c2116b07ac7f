"""One error body everywhere: `{"detail": "<what is wrong>", "status": <code>}`, and for
invalid input also `"errors": [{"loc": "query.limit", "msg": "…"}]` naming each field."""

from __future__ import annotations

from fastapi import FastAPI, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from contracts.yamltext import describe


class ErrorBody(BaseModel):
    detail: str
    status: int
    errors: list[dict[str, str]] | None = None


class BadInput(HTTPException):
    """422 for input the schema lets through but a route's own check refuses (a cursor this
    API never gave out, a range that ends before it starts): answered like a schema error,
    the field named in `errors`, so that clients handle every invalid input one way."""

    def __init__(self, loc: str, msg: str) -> None:
        super().__init__(status.HTTP_422_UNPROCESSABLE_CONTENT, f"invalid request: {loc}: {msg}")
        self.errors = [{"loc": loc, "msg": msg}]


def install(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        body: dict[str, object] = {"detail": str(exc.detail), "status": exc.status_code}
        if isinstance(exc, BadInput):
            body["errors"] = exc.errors
        return JSONResponse(body, exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": ".".join(str(p) for p in e["loc"]), "msg": describe(e)}
                  for e in exc.errors()]
        summary = "; ".join(f"{e['loc']}: {e['msg']}" for e in errors[:3])
        return JSONResponse({"detail": f"invalid request: {summary}", "status": 422,
                             "errors": errors}, 422)


ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorBody, "description": text} for code, text in (
        (401, "no credential, or one that proves nothing"),
        (403, "the caller's role does not allow this"),
        (404, "no such thing, or none the caller may see"),
        (422, "invalid input: every bad field named"),
        (429, "too many requests: see Retry-After"),
    )}
