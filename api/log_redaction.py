"""Credentials kept out of the server's logs. Our own code never logs one, but uvicorn at
debug level logs WebSocket frames (first and last characters of each): the live feed's
`{"type": "auth", "token": …}` frame would put part of a token or API key secret in the log.
A filter on the server's loggers blanks what looks like a credential — a `"token"` value, a
bearer credential, an API key, a JWT — before any handler sees the record."""

from __future__ import annotations

import logging
import re

SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi",
                  "websockets.server", "websockets.protocol")
_PATTERNS = (
    (re.compile(r'("token"\s*:\s*")[^"]*'), r"\1<redacted>"),
    (re.compile(r"(\bbearer\s+)\S+", re.IGNORECASE), r"\1<redacted>"),
    (re.compile(r"\bbsk_[0-9a-f]{12}_[A-Za-z0-9_-]*"), "bsk_<redacted>"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*(\.[A-Za-z0-9_-]*)?"), "<redacted jwt>"),
)


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactCredentials(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True  # a record that cannot be formatted is the handler's to report
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


_FILTER = RedactCredentials()


def install() -> None:
    """Put the filter on the server's loggers (once, however many apps are created)."""
    for name in SERVER_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
