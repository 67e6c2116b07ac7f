"""The dispatcher: drains the outbox — claim a due message under a lease, send it, record
the outcome (sent; retry with backoff; failed for good) — and logs one line per failure
with the reason.

Why messages are claimed one at a time: the lease only has to outlast one send (a stalled
SMTP or HTTP exchange is bounded by the senders' timeout), however long the batch; a batch
claimed at once would need a lease as long as the whole batch, and a killed dispatcher would
hold every message of it that long.

Why at-least-once and not exactly-once: nothing can make "the receiver accepted" and "the
outbox says sent" one atomic step. A dispatcher killed between them (SIGKILL, power cut)
leaves a lease that runs out; the next dispatcher sends the message again with the same id,
and the receiver drops the repeat by Message-ID / Idempotency-Key. Nothing is lost, and the
rare repeat is identifiable.

Several dispatchers (processes or threads) may drain one outbox at once: claims are
serialized by SQLite's write lock."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from connectors.notify.outbox import Outbox, OutboxMessage
from connectors.notify.senders import (
    DeliveryError,
    Email,
    PermanentError,
    SendersConfig,
    default_webhook_payload,
    parse_smtp_url,
    redact_url,
    send_email,
    send_webhook,
    slack_payload,
    teams_payload,
)
from connectors.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_LEASE_MS = 120_000
DEFAULT_BATCH = 50
DEFAULT_POLL_S = 1.0


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class DispatchReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0

    @property
    def handled(self) -> int:
        return self.sent + self.retried + self.failed


def senders_config(settings: Settings, *,
                   webhook_secrets: dict[str, bytes] | None = None) -> SendersConfig:
    """The senders' configuration from the process settings (BESSMON_SMTP_URL,
    BESSMON_SMTP_FROM); webhook keys come from the notification rules' channels."""
    smtp = parse_smtp_url(settings.smtp_url) if settings.smtp_url else None
    return SendersConfig(smtp=smtp, smtp_from=settings.smtp_from,
                         webhook_secrets=webhook_secrets)


class Dispatcher:
    def __init__(self, outbox: Outbox, config: SendersConfig,
                 clock: Callable[[], int] = wall_ms, *, lease_ms: int = DEFAULT_LEASE_MS,
                 batch: int = DEFAULT_BATCH, poll_s: float = DEFAULT_POLL_S,
                 http: httpx.Client | None = None) -> None:
        if lease_ms <= config.max_timeout_s * 1000:
            raise ValueError(f"lease_ms ({lease_ms}) must outlast the senders' timeout "
                             f"({config.max_timeout_s:g} s), or a slow send would be "
                             "claimed and sent again by another dispatcher")
        self.outbox = outbox
        self.config = config
        self.clock = clock
        self.lease_ms = lease_ms
        self.batch = batch
        self.poll_s = poll_s
        self._http = http
        self._wake = threading.Event()

    @property
    def http(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client()
        return self._http

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def wake(self) -> None:
        """Something was enqueued: dispatch now rather than at the next poll."""
        self._wake.set()

    def dispatch_once(self, now_ms: int | None = None) -> DispatchReport:
        """Send up to `batch` due messages, one claim each. With `now_ms` (tests) every
        step uses that time; otherwise the clock is read before each step."""
        report = DispatchReport()
        for _ in range(self.batch):
            claimed = self.outbox.claim(self._now(now_ms), 1, self.lease_ms)
            if not claimed:
                break
            self._deliver(claimed[0], now_ms, report)
        return report

    def run(self, stop: threading.Event) -> None:
        """Dispatch until `stop` is set: at once while messages are due, else every
        `poll_s` (or when woken)."""
        while not stop.is_set():
            try:
                report = self.dispatch_once()
            except Exception:  # the outbox itself failed (disk full, locked): keep going
                log.exception("notify: dispatching failed; trying again in %.0f s",
                              self.poll_s)
                report = DispatchReport()
            if report.handled < self.batch:
                self._wake.wait(self.poll_s)
                self._wake.clear()

    def _now(self, now_ms: int | None) -> int:
        return self.clock() if now_ms is None else now_ms

    def _deliver(self, msg: OutboxMessage, now_ms: int | None,
                 report: DispatchReport) -> None:
        try:
            detail = self.send(msg)
        except DeliveryError as e:
            if e.permanent:
                self.outbox.failed(msg.id, self._now(now_ms), str(e))
                report.failed += 1
                log.warning("notify: %s to %s (%s %s) failed for good: %s", msg.id,
                            _who(msg), msg.channel_type, msg.channel, e)
                return
            state = self.outbox.retry(msg.id, self._now(now_ms), str(e))
            if state == "failed":
                report.failed += 1
                log.warning("notify: %s to %s (%s %s) failed for good after %d attempts: "
                            "%s", msg.id, _who(msg), msg.channel_type,
                            msg.channel, msg.attempts, e)
            else:
                report.retried += 1
                log.warning("notify: %s to %s (%s %s) attempt %d failed, will retry: %s",
                            msg.id, _who(msg), msg.channel_type,
                            msg.channel, msg.attempts, e)
            return
        except Exception as e:  # a bug in a sender must not stop the others
            state = self.outbox.retry(msg.id, self._now(now_ms), f"{type(e).__name__}: {e}")
            if state == "failed":
                report.failed += 1
            else:
                report.retried += 1
            log.exception("notify: %s: unexpected error while sending", msg.id)
            return
        self.outbox.sent(msg.id, self._now(now_ms), detail)
        report.sent += 1

    def send(self, msg: OutboxMessage) -> str:
        """Deliver one message by its channel type; returns the receiver's answer."""
        cfg = self.config
        if msg.channel_type == "email":
            if cfg.smtp is None:
                raise PermanentError("no SMTP server configured (BESSMON_SMTP_URL)")
            return send_email(cfg.smtp, cfg.smtp_from,
                              Email(msg.id, msg.address, msg.subject, msg.body))
        if msg.channel_type == "webhook":
            payload = msg.payload if msg.payload is not None else default_webhook_payload(
                msg.id, msg.channel, msg.recipient, msg.subject, msg.body, msg.created_ms)
            return send_webhook(self.http, msg.address, msg.id, payload,
                                secret=cfg.secret_for(msg.channel),
                                timeout_s=cfg.http_timeout_s)
        if msg.channel_type in ("slack", "teams"):
            build = slack_payload if msg.channel_type == "slack" else teams_payload
            payload = msg.payload if msg.payload is not None else build(msg.subject,
                                                                       msg.body)
            return send_webhook(self.http, msg.address, msg.id, payload,
                                timeout_s=cfg.http_timeout_s)
        raise PermanentError(f"unknown channel type {msg.channel_type!r}")


def _who(msg: OutboxMessage) -> str:
    """The recipient for log lines; never a chat webhook URL (its path is its secret)."""
    if msg.recipient:
        return msg.recipient
    return msg.address if msg.channel_type == "email" else redact_url(msg.address)
