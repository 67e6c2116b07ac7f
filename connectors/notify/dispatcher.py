"""The dispatcher: drains the outbox — claim due messages under a lease, send them, record
the outcome (sent; retry with backoff; failed for good) — and logs one line per failure
with the reason.

Why several workers (threads, `workers`, 4 by default), each with its own kept-open SMTP
connection: a message's time is mostly waiting for the receiver's answers, so one sender
at a time is as slow as the sum of those waits, and one slow receiver held up every other
message; a connection per message cost more round trips than the message itself.

Why claims are small and each message's lease is checked before it is sent: the lease only
has to outlast one send (a stalled SMTP or HTTP exchange is bounded by the senders'
timeout). A worker claims one message, and while its claims come back full, twice as many
(up to `claim`) — fewer transactions when a backlog builds, and a lone message is never
held behind others. A claimed message whose lease would no longer outlast a send when its
turn comes is given back untried (`Outbox.release`); so a killed dispatcher holds no
message longer than the lease. Each delivery is recorded before the worker sends anything
else, not with the others of its claim at the end: a dispatcher killed mid-claim would
leave accepted messages unrecorded, to go out twice. (Claims are not synced to disk, the
deliveries are: see the outbox.)

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

from connectors import metrics
from connectors.notify.attachments import load_attachments, with_attachments_text
from connectors.notify.outbox import Outbox, OutboxMessage
from connectors.notify.senders import (
    DeliveryError,
    Email,
    PermanentError,
    SendersConfig,
    SmtpConfig,
    SmtpConnection,
    default_webhook_payload,
    parse_smtp_url,
    redact_url,
    send_webhook,
    slack_payload,
    teams_payload,
)
from connectors.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_LEASE_MS = 120_000
DEFAULT_BATCH = 50
DEFAULT_POLL_S = 1.0
DEFAULT_WORKERS = 4  # sender threads: enough to overlap the waits for receivers' answers
DEFAULT_CLAIM = 8  # most messages one worker claims at once (only while a backlog lasts)
DEFAULT_SMTP_IDLE_S = 30.0  # a kept SMTP connection idle this long is closed


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class DispatchReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    released: int = 0  # claimed but given back untried (the lease ran low)

    @property
    def handled(self) -> int:
        return self.sent + self.retried + self.failed


def senders_config(settings: Settings, *,
                   webhook_secrets: dict[str, bytes] | None = None) -> SendersConfig:
    """The senders' configuration from the process settings (BESSMON_SMTP_URL,
    BESSMON_SMTP_FROM, the report archive for attachments); webhook keys come from the
    notification rules' channels."""
    smtp = parse_smtp_url(settings.smtp_url) if settings.smtp_url else None
    return SendersConfig(smtp=smtp, smtp_from=settings.smtp_from,
                         webhook_secrets=webhook_secrets,
                         attachments_root=settings.report_archive_dir)


class Dispatcher:
    """Drains one outbox with `workers` sender threads (`run`), each with its own SMTP
    connection (kept open, `SmtpConnection`) and its own outbox connection; webhooks share
    one pooled HTTP client. `dispatch_once` is the same work in the calling thread."""

    def __init__(self, outbox: Outbox, config: SendersConfig,
                 clock: Callable[[], int] = wall_ms, *, lease_ms: int = DEFAULT_LEASE_MS,
                 batch: int = DEFAULT_BATCH, poll_s: float = DEFAULT_POLL_S,
                 http: httpx.Client | None = None, workers: int = DEFAULT_WORKERS,
                 claim: int = DEFAULT_CLAIM, smtp_idle_s: float = DEFAULT_SMTP_IDLE_S) -> None:
        if lease_ms <= config.max_timeout_s * 1000:
            raise ValueError(f"lease_ms ({lease_ms}) must outlast the senders' timeout "
                             f"({config.max_timeout_s:g} s), or a slow send would be "
                             "claimed and sent again by another dispatcher")
        if workers < 1 or claim < 1 or batch < 1:
            raise ValueError("workers, claim and batch must be at least 1")
        self.outbox = outbox
        self.config = config
        self.clock = clock
        self.lease_ms = lease_ms
        self.batch = batch
        self.poll_s = poll_s
        self.workers = workers
        self.claim = claim
        self.smtp_idle_s = smtp_idle_s
        self._send_bound_ms = int(config.max_timeout_s * 1000)
        self._http = http
        self._lock = threading.Lock()  # guards _http's creation and _smtps
        self._smtps: list[SmtpConnection] = []  # every thread's, for close()
        self._opened_before = 0  # connections opened by workers that ended
        self._local = threading.local()  # this thread's SmtpConnection
        self._doorbell = threading.Condition()
        self._rings = 0  # wake-ups not yet taken by a worker (at most one per worker)

    @property
    def http(self) -> httpx.Client:
        with self._lock:
            if self._http is None:
                self._http = httpx.Client()
            return self._http

    @property
    def smtp_opened(self) -> int:
        """SMTP connections opened so far (a figure for the benchmark and the logs: far
        fewer than messages when connections are reused)."""
        with self._lock:
            return self._opened_before + sum(c.opened for c in self._smtps)

    def close(self) -> None:
        """Close the kept SMTP connections (QUIT) and the HTTP client. Call it after `run`
        returned: a connection in use by a worker would be closed under it."""
        with self._lock:
            smtps, http, self._http = list(self._smtps), self._http, None
        for smtp in smtps:
            smtp.close()
        if http is not None:
            http.close()

    def wake(self) -> None:
        """Something was enqueued: a waiting worker dispatches now rather than at the next
        poll (and wakes another when it finds a backlog)."""
        with self._doorbell:
            self._rings = min(self._rings + 1, self.workers)
            self._doorbell.notify()

    def dispatch_once(self, now_ms: int | None = None) -> DispatchReport:
        """Send up to `batch` due messages in the calling thread. With `now_ms` (tests)
        every step uses that time; otherwise the clock is read before each step."""
        report = DispatchReport()
        taken, want = 0, 1
        while taken < self.batch:
            n = min(want, self.batch - taken)
            got = self._round(n, now_ms, report)
            taken += got
            if got < n:
                break
            want = min(want * 2, self.claim)
        return report

    def run(self, stop: threading.Event) -> None:
        """Dispatch until `stop` is set, with `workers` threads (this one and the others it
        starts, joined before it returns): at once while messages are due, else every
        `poll_s` (or when woken). Each worker's SMTP connection is closed when it ends."""
        halt = threading.Event()  # the others end with this one, however it ends
        others = [threading.Thread(target=self._work, args=(stop, halt, True),
                                   name=f"notify-sender-{i}", daemon=True)
                  for i in range(1, self.workers)]
        for t in others:
            t.start()
        try:
            self._work(stop, halt, False)
        finally:
            halt.set()
            with self._doorbell:
                self._doorbell.notify_all()
            for t in others:
                t.join()

    def send(self, msg: OutboxMessage) -> str:
        """Deliver one message by its channel type; returns the receiver's answer."""
        cfg = self.config
        if msg.channel_type == "email":
            if cfg.smtp is None:
                raise PermanentError("no SMTP server configured (BESSMON_SMTP_URL)")
            if not msg.attachments:
                return self._smtp(cfg.smtp).send(cfg.smtp_from, Email(
                    msg.id, msg.address, msg.subject, msg.body))
            # Read now, not when enqueued (the outbox holds references): a file missing or
            # changed is left out and the text says so — never a failed delivery for it.
            attached, left_out = load_attachments(cfg.attachments_root, msg.attachments)
            answer = self._smtp(cfg.smtp).send(cfg.smtp_from, Email(
                msg.id, msg.address, msg.subject,
                with_attachments_text(msg.body, attached, left_out), attached))
            if left_out:
                answer += "; not attached: " + ", ".join(
                    f"{u.name} ({u.reason})" for u in left_out)
            return answer
        # Other channels ignore `msg.attachments`: the text and its links are what they carry.
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

    # -- internals -----------------------------------------------------------------------

    def _now(self, now_ms: int | None) -> int:
        return self.clock() if now_ms is None else now_ms

    def _smtp(self, config: SmtpConfig) -> SmtpConnection:
        """This thread's kept SMTP connection (made on first use)."""
        conn: SmtpConnection | None = getattr(self._local, "smtp", None)
        if conn is None:
            conn = SmtpConnection(config, idle_s=self.smtp_idle_s)
            with self._lock:
                self._smtps.append(conn)
            self._local.smtp = conn
        return conn

    def _work(self, stop: threading.Event, halt: threading.Event, own_thread: bool) -> None:
        """One worker: claim (1, then doubling up to `claim` while claims come back full),
        send, record; wait for a wake-up or `poll_s` when nothing is due."""
        want = 1
        try:
            while not (stop.is_set() or halt.is_set()):
                try:
                    got = self._round(want, None, DispatchReport())
                except Exception:  # the outbox itself failed (disk full, locked): keep going
                    log.exception("notify: dispatching failed; trying again in %.0f s",
                                  self.poll_s)
                    want = 1
                    halt.wait(self.poll_s)
                    continue
                if got >= want:  # perhaps more due: claim more (a backlog: with help)
                    if want > 1:
                        self.wake()
                    want = min(want * 2, self.claim)
                else:
                    want = 1
                    self._idle()
        finally:
            self._retire(own_thread)

    def _idle(self) -> None:
        conn: SmtpConnection | None = getattr(self._local, "smtp", None)
        if conn is not None:
            conn.close_if_idle()
        with self._doorbell:
            if not self._rings:
                self._doorbell.wait(self.poll_s)
            if self._rings:
                self._rings -= 1

    def _retire(self, own_thread: bool) -> None:
        """A worker ends: its SMTP connection is closed (QUIT) and forgotten, and the outbox
        connection of a thread it started closed."""
        conn: SmtpConnection | None = getattr(self._local, "smtp", None)
        if conn is not None:
            self._local.smtp = None
            with self._lock:
                if conn in self._smtps:
                    self._smtps.remove(conn)
                    self._opened_before += conn.opened
            conn.close()
        if own_thread:
            self.outbox.close()

    def _round(self, n: int, now_ms: int | None, report: DispatchReport) -> int:
        """Claim up to `n` due messages, send them one after the other, recording each
        outcome before the next send. A message whose lease would not outlast a send by
        the time its turn comes is given back untried, with those after it. Returns how
        many were claimed."""
        claimed = self.outbox.claim(self._now(now_ms), n, self.lease_ms)
        for i, msg in enumerate(claimed):
            now = self._now(now_ms)
            if now + self._send_bound_ms >= msg.claimed_until_ms:
                back = self.outbox.release([m.id for m in claimed[i:]],
                                           msg.claimed_until_ms, now)
                report.released += back
                log.info("notify: %d claimed messages given back: their lease would not "
                         "outlast another send", back)
                break
            detail = self._deliver(msg, now_ms, report)
            if detail is not None:  # recorded before the next send: see the module's text
                self.outbox.sent(msg.id, self._now(now_ms), detail)
        return len(claimed)

    def _deliver(self, msg: OutboxMessage, now_ms: int | None,
                 report: DispatchReport) -> str | None:
        """Send one message and record a failure; the receiver's answer when it was
        delivered (recorded by the caller)."""
        started = time.monotonic()
        try:
            try:
                detail = self.send(msg)
            finally:
                metrics.NOTIFY_SEND_SECONDS.labels(msg.channel_type).observe(
                    time.monotonic() - started)
        except DeliveryError as e:
            if e.permanent:
                self.outbox.failed(msg.id, self._now(now_ms), str(e))
                report.failed += 1
                metrics.NOTIFY_MESSAGES.labels(msg.channel_type, "failed").inc()
                log.warning("notify: %s to %s (%s %s) failed for good: %s", msg.id,
                            _who(msg), msg.channel_type, msg.channel, e)
                return None
            state = self.outbox.retry(msg.id, self._now(now_ms), str(e))
            metrics.NOTIFY_MESSAGES.labels(msg.channel_type, "failed" if state == "failed"
                                           else "retried").inc()
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
            return None
        except Exception as e:  # a bug in a sender must not stop the others
            state = self.outbox.retry(msg.id, self._now(now_ms), f"{type(e).__name__}: {e}")
            metrics.NOTIFY_MESSAGES.labels(msg.channel_type, "failed" if state == "failed"
                                           else "retried").inc()
            if state == "failed":
                report.failed += 1
            else:
                report.retried += 1
            log.exception("notify: %s: unexpected error while sending", msg.id)
            return None
        report.sent += 1
        metrics.NOTIFY_MESSAGES.labels(msg.channel_type, "sent").inc()
        return detail


def _who(msg: OutboxMessage) -> str:
    """The recipient for log lines; never a chat webhook URL (its path is its secret)."""
    if msg.recipient:
        return msg.recipient
    return msg.address if msg.channel_type == "email" else redact_url(msg.address)
