"""Send the simulated service desk's tickets to the API's Jira webhook.

Deliveries leave one at a time, in the order they were made (a ticket's resolution never
overtakes its creation). A delivery the API could take later — no connection (the API not up
yet, or restarting), a timeout, 409 (being processed), 429, 5xx — is tried again with
exponential backoff, up to `attempts` times; one the API refuses for good (400, 401, 403,
404, 413, 422: a wrong secret, a fleet without that asset) is logged and dropped. Nothing here
raises into the simulator: a ticket is worth a log line, never a crash."""

from __future__ import annotations

import asyncio
import logging
from collections import deque

import httpx

from infra.sim.tickets import Delivery

log = logging.getLogger(__name__)
WEBHOOK_PATH = "/api/v1/webhooks/jira"
RETRY_STATUSES = frozenset({408, 409, 425, 429})


class WebhookSender:
    def __init__(self, api_url: str, secret: bytes, *, attempts: int = 8,
                 backoff_s: float = 1.0, backoff_max_s: float = 30.0, timeout_s: float = 20.0,
                 max_queued: int = 10_000) -> None:
        if not secret:
            raise ValueError("a webhook secret is required")
        self.url = api_url.rstrip("/") + WEBHOOK_PATH
        self._secret = secret
        self.attempts = attempts
        self.backoff_s, self.backoff_max_s = backoff_s, backoff_max_s
        self.timeout_s = timeout_s
        self._queue: deque[Delivery] = deque(maxlen=max_queued)
        self._wake = asyncio.Event()
        self.sent: list[tuple[str, str, str]] = []  # (ticket key, change, API answer status)
        self.dropped: list[tuple[str, str, str]] = []  # (ticket key, change, why)

    def submit(self, delivery: Delivery) -> None:
        """Queue a delivery (never blocks; the oldest is dropped when the queue is full)."""
        if len(self._queue) == self._queue.maxlen:
            old = self._queue[0]
            log.error("ticket queue full: dropping %s %s", old.ticket_key, old.change)
            self.dropped.append((old.ticket_key, old.change, "queue full"))
        self._queue.append(delivery)
        self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def run(self) -> None:
        """Send queued deliveries until cancelled."""
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            while True:
                if not self._queue:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                delivery = self._queue[0]
                await self._send(client, delivery)
                if self._queue and self._queue[0] is delivery:
                    self._queue.popleft()

    async def _send(self, client: httpx.AsyncClient, delivery: Delivery) -> None:
        what = f"ticket {delivery.ticket_key} {delivery.change}"
        for attempt in range(1, self.attempts + 1):
            try:
                response = await client.post(self.url, content=delivery.body,
                                             headers=delivery.headers(self._secret))
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                code = response.status_code
                if code < 300:
                    status = _answer(response)
                    log.info("%s delivered (%s)", what, status)
                    self.sent.append((delivery.ticket_key, delivery.change, status))
                    return
                problem = f"answered {code}: {_detail(response)}"
                if code < 500 and code not in RETRY_STATUSES:
                    log.error("%s refused by %s, dropped: %s", what, self.url, problem)
                    self.dropped.append((delivery.ticket_key, delivery.change, problem))
                    return
            if attempt == self.attempts:
                break
            wait_s = min(self.backoff_s * 2 ** (attempt - 1), self.backoff_max_s)
            log.warning("%s not delivered to %s (attempt %d of %d, next in %.0f s): %s",
                        what, self.url, attempt, self.attempts, wait_s, problem)
            await asyncio.sleep(wait_s)
        log.error("%s dropped after %d attempts: %s", what, self.attempts, problem)
        self.dropped.append((delivery.ticket_key, delivery.change, problem))


def _field(response: httpx.Response, name: str, default: str) -> str:
    try:
        data = response.json()
    except ValueError:
        return default
    return str(data.get(name, default)) if isinstance(data, dict) else default


def _answer(response: httpx.Response) -> str:
    return _field(response, "status", "accepted")


def _detail(response: httpx.Response) -> str:
    return _field(response, "detail", response.text)[:300]
