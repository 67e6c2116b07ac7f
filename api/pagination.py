"""One style of pagination everywhere: `?limit=` (1..500, default 100) and `?cursor=` — the
opaque `next_cursor` of the page before; a page is `{"items": [...], "next_cursor": str |
null}`, null on the last page."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Annotated, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

from api.errors import BadInput

T = TypeVar("T")
LimitQ = Annotated[int, Query(ge=1, le=500, description="items per page")]
CursorQ = Annotated[str | None, Query(max_length=200, description="next_cursor of the "
                                      "page before")]


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


def encode_cursor(position: int) -> str:
    return base64.urlsafe_b64encode(f"p{position}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    if cursor is None:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not text.startswith("p") or not text[1:].isdigit():
            raise ValueError
        return int(text[1:])
    except ValueError:
        raise BadInput("query.cursor", "not a cursor this API gave out") from None


def page(items: Sequence[T], cursor: str | None, limit: int) -> Page[T]:
    """A page of an ordered list (the lists here are small: a fleet's sites, a site's
    alarms; the history's large ones page in the store)."""
    start = decode_cursor(cursor)
    chunk = list(items[start:start + limit])
    more = start + limit < len(items)
    return Page(items=chunk, next_cursor=encode_cursor(start + limit) if more else None)
