"""The notification senders against real receivers: an SMTP server (aiosmtpd, in a thread;
plain, STARTTLS with AUTH LOGIN, implicit TLS, with a self-signed certificate made here) and
an HTTP receiver (`http.server`, in a thread) that checks the HMAC signature itself. The
dispatcher is driven through them: delivered messages are marked sent, temporary failures
retried with the reason in the delivery log, permanent ones failed at once — and a
dispatcher killed with SIGKILL mid-send loses nothing."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from connectors.notify.dispatcher import Dispatcher, senders_config
from connectors.notify.outbox import AttachmentRef, Outbox
from connectors.notify.senders import (
    Email,
    PermanentError,
    SendersConfig,
    SmtpConnection,
    TemporaryError,
    message_id,
    parse_smtp_url,
    send_email,
    send_webhook,
    slack_payload,
    teams_payload,
)
from connectors.settings import Settings
from infra.ports import free_port
from tests.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
SECRET = b"notify-whsec-8c1e9a7d4e3b5f2b"
USER, PASSWORD = "alerts@bessmon.test", "p@ss:wörd"
FROM = "bessmon <bessmon@fleet.example>"




# --------------------------------------------------------------------------- SMTP server

@dataclass
class Received:
    rcpt: list[str]
    mail_from: str
    message: EmailMessage
    tls: bool
    login: str | None


@dataclass
class Recorder:
    """aiosmtpd handler: records accepted mail; refuses some recipients; can hold the n-th
    DATA (never answering it until released) to imitate a slow server."""

    received: list[Received] = field(default_factory=list)
    hold_nth: int | None = None
    data_count: int = 0
    holding: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)

    async def handle_RCPT(self, server: SMTPServer, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if address.startswith("nobody@"):
            return "550 5.1.1 <nobody@example.com>: no such user"
        if address.startswith("busy@"):
            return "450 4.2.1 mailbox busy, try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTPServer, session: Session,
                          envelope: Envelope) -> str:
        self.data_count += 1
        if self.hold_nth is not None and self.data_count == self.hold_nth:
            self.holding.set()
            while not self.released.is_set():
                await asyncio.sleep(0.02)
            return "451 4.3.0 held message dropped"
        assert isinstance(envelope.content, bytes)
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        login = session.auth_data if isinstance(session.auth_data, str) else None
        self.received.append(Received(list(envelope.rcpt_tos), str(envelope.mail_from), msg,
                                      session.ssl is not None, login))
        return "250 2.0.0 OK queued"

    def ids(self) -> list[str]:
        return [str(r.message["X-Bessmon-Event-Id"]) for r in self.received]


def authenticator(server: SMTPServer, session: Session, envelope: Envelope, mechanism: str,
                  auth_data: Any) -> AuthResult:
    ok = (isinstance(auth_data, LoginPassword) and auth_data.login.decode() == USER
          and auth_data.password.decode() == PASSWORD)
    return AuthResult(success=ok, handled=False, auth_data=USER if ok else None)


@dataclass
class Tls:
    cafile: Path
    server: ssl.SSLContext


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    """A self-signed certificate for localhost / 127.0.0.1, trusted through cafile=."""
    d = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (d / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(d / "cert.pem", d / "key.pem")
    return Tls(d / "cert.pem", ctx)


@pytest.fixture
def smtp_server() -> Iterator[Callable[..., tuple[Recorder, int]]]:
    controllers: list[tuple[Controller, Recorder]] = []

    def start(**kwargs: Any) -> tuple[Recorder, int]:
        recorder = Recorder()
        port = free_port()
        controller = Controller(recorder, hostname="127.0.0.1", port=port, **kwargs)
        controller.start()
        controllers.append((controller, recorder))
        return recorder, port

    yield start
    for controller, recorder in controllers:
        recorder.released.set()
        controller.stop()


def mail(id: str, to: str = "oncall@example.com") -> Email:
    return Email(id, to, "ALARM nordvik-u01: SOC below 5 %", "SOC 4.2 % at 12:00:03 UTC.\n")


# --------------------------------------------------------------------------- e-mail tests

def test_parse_smtp_url() -> None:
    c = parse_smtp_url("smtp://alerts%40fleet.example:p%40ss@mail.example:587?starttls=1")
    assert (c.host, c.port, c.implicit_tls, c.starttls) == ("mail.example", 587, False,
                                                            "always")
    assert (c.username, c.password) == ("alerts@fleet.example", "p@ss")
    assert "p@ss" not in repr(c)
    c = parse_smtp_url("smtps://relay.example")
    assert (c.port, c.implicit_tls, c.starttls) == (465, True, "never")
    c = parse_smtp_url("smtp://relay.example?starttls=auto&timeout=5&verify=0")
    assert (c.port, c.starttls, c.timeout_s, c.verify) == (25, "auto", 5.0, False)
    assert parse_smtp_url("smtp://relay.example?starttls=0").starttls == "never"
    assert parse_smtp_url("smtp://relay.example").starttls == "auto"


@pytest.mark.parametrize(("url", "message"), [
    ("http://relay.example", "must start with smtp:// or smtps://"),
    ("relay.example:25", "must start with smtp:// or smtps://"),
    ("smtp://", "has no host"),
    ("smtp://relay.example:99999", "port must be a number"),
    ("smtp://relay.example:abc", "port must be a number"),
    ("smtp://relay.example/inbox", "takes no path"),
    ("smtp://:secret@relay.example", "password but no user name"),
    ("smtp://relay.example?starttls=maybe", "starttls must be 1, 0 or auto"),
    ("smtp://relay.example?tls=1", "unknown parameter 'tls'"),
    ("smtps://relay.example?starttls=1", "TLS from the start"),
    ("smtp://relay.example?timeout=0", "timeout must be seconds"),
    ("smtp://relay.example?verify=perhaps", "verify must be 1 or 0"),
])
def test_parse_smtp_url_says_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as e:
        parse_smtp_url(url)
    assert "secret" not in str(e.value)


def test_plain_email_arrives_with_a_stable_message_id(
        smtp_server: Callable[..., tuple[Recorder, int]]) -> None:
    rec, port = smtp_server()
    config = parse_smtp_url(f"smtp://127.0.0.1:{port}?starttls=auto&timeout=5")
    detail = send_email(config, FROM, mail("nordvik-u01.soc_low.raised.1780000000000"))
    assert "accepted" in detail
    id2 = "nordvik-u01:soc_low:raised @1780000000000=x"  # characters a Message-ID cannot hold
    send_email(config, FROM, mail(id2))
    first, second = rec.received
    assert first.message["Message-ID"] == "<nordvik-u01.soc_low.raised.1780000000000@bessmon>"
    assert second.message["Message-ID"] == message_id(id2) == \
        "<nordvik-u01=3Asoc_low=3Araised=20=401780000000000=3Dx@bessmon>"
    assert second.message["X-Bessmon-Event-Id"] == id2
    # Injective and valid for any id: dots only where a dot-atom allows them.
    assert [message_id(i) for i in (".a", "a.", "a..b", "a=b", "ü")] == [
        "<=2Ea@bessmon>", "<a=2E@bessmon>", "<a.=2Eb@bessmon>", "<a=3Db@bessmon>",
        "<=C3=BC@bessmon>"]
    assert first.rcpt == ["oncall@example.com"]
    assert first.mail_from == "bessmon@fleet.example"  # the envelope takes the bare address
    assert first.message["From"] == FROM
    assert first.message["Subject"] == "ALARM nordvik-u01: SOC below 5 %"
    body = first.message.get_body(("plain",))
    assert body is not None
    assert body.get_content().replace("\r\n", "\n") == "SOC 4.2 % at 12:00:03 UTC.\n"
    assert not first.tls and first.login is None  # auto: the server offered no STARTTLS


def test_starttls_and_auth_login(tls: Tls,
                                 smtp_server: Callable[..., tuple[Recorder, int]]) -> None:
    # The server insists on STARTTLS before anything and offers only AUTH LOGIN.
    rec, port = smtp_server(tls_context=tls.server, require_starttls=True,
                            authenticator=authenticator, auth_require_tls=True,
                            auth_exclude_mechanism=["PLAIN"])
    base = f"smtp://alerts%40bessmon.test:p%40ss%3Aw%C3%B6rd@127.0.0.1:{port}"
    for starttls in ("1", "auto"):
        config = parse_smtp_url(f"{base}?starttls={starttls}&cafile={tls.cafile}&timeout=5")
        send_email(config, FROM, mail(f"tls-{starttls}"))
    assert [(r.tls, r.login) for r in rec.received] == [(True, USER), (True, USER)]
    # A wrong password is a permanent failure (5xx), and says whose login failed.
    bad = parse_smtp_url(f"smtp://{USER.replace('@', '%40')}:nope@127.0.0.1:{port}"
                         f"?starttls=1&cafile={tls.cafile}&timeout=5")
    with pytest.raises(PermanentError, match=r"refused the login of 'alerts@bessmon.test': 535"):
        send_email(bad, FROM, mail("bad-login"))
    # An untrusted certificate is refused (no cafile: the system CAs do not know ours).
    untrusted = parse_smtp_url(f"{base}?starttls=1&timeout=5")
    with pytest.raises(TemporaryError, match="certificate not trusted"):
        send_email(untrusted, FROM, mail("untrusted"))


def test_a_kept_connection_does_starttls_and_auth_once(
        tls: Tls, smtp_server: Callable[..., tuple[Recorder, int]]) -> None:
    rec, port = smtp_server(tls_context=tls.server, require_starttls=True,
                            authenticator=authenticator, auth_require_tls=True,
                            auth_exclude_mechanism=["PLAIN"])
    conn = SmtpConnection(parse_smtp_url(
        f"smtp://alerts%40bessmon.test:p%40ss%3Aw%C3%B6rd@127.0.0.1:{port}"
        f"?starttls=1&cafile={tls.cafile}&timeout=5"))
    try:
        for i in range(3):
            conn.send(FROM, mail(f"kept-{i}"))
    finally:
        conn.close()
    assert conn.opened == 1  # one handshake and one login for the three
    assert [(r.tls, r.login) for r in rec.received] == [(True, USER)] * 3
    assert rec.ids() == ["kept-0", "kept-1", "kept-2"]


def test_starttls_required_but_not_offered_is_permanent(
        smtp_server: Callable[..., tuple[Recorder, int]]) -> None:
    rec, port = smtp_server()
    with pytest.raises(PermanentError, match="does not offer STARTTLS"):
        send_email(parse_smtp_url(f"smtp://127.0.0.1:{port}?starttls=1&timeout=5"), FROM,
                   mail("x"))
    assert rec.received == []


def test_implicit_tls(tls: Tls, smtp_server: Callable[..., tuple[Recorder, int]]) -> None:
    rec, port = smtp_server(ssl_context=tls.server)
    send_email(parse_smtp_url(f"smtps://127.0.0.1:{port}?cafile={tls.cafile}&timeout=5"),
               FROM, mail("smtps"))
    assert rec.ids() == ["smtps"]


def test_refused_recipients_are_classified(
        smtp_server: Callable[..., tuple[Recorder, int]]) -> None:
    rec, port = smtp_server()
    config = parse_smtp_url(f"smtp://127.0.0.1:{port}?timeout=5")
    with pytest.raises(PermanentError, match=r"refused recipient nobody@example.com: 550"):
        send_email(config, FROM, mail("a", "nobody@example.com"))
    with pytest.raises(TemporaryError, match=r"refused recipient busy@example.com: 450"):
        send_email(config, FROM, mail("b", "busy@example.com"))
    with pytest.raises(PermanentError, match="not an e-mail address"):
        send_email(config, FROM, mail("c", "oncall@example.com\r\nBcc: all@example.com"))
    assert rec.received == []


def test_silent_server_times_out() -> None:
    with socket.socket() as listener:  # accepts connections (the kernel does), never speaks
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        config = parse_smtp_url(f"smtp://127.0.0.1:{port}?timeout=0.3")
        with pytest.raises(TemporaryError, match=r"timed out after 0\.3 s"):
            send_email(config, FROM, mail("x"))


def test_unreachable_smtp_server_is_retried_with_the_reason_logged(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()  # nothing listens there
    box = Outbox(tmp_path / "notify.db")
    box.enqueue("m1", channel="ops-mail", channel_type="email", address="oncall@example.com",
                recipient="oncall", subject="ALARM", body="x", now_ms=1_000)
    config = SendersConfig(smtp=parse_smtp_url(f"smtp://127.0.0.1:{port}?timeout=2"),
                           smtp_from=FROM, http_timeout_s=2)
    dispatcher = Dispatcher(box, config, lease_ms=5_000)
    with caplog.at_level(logging.WARNING, logger="connectors.notify.dispatcher"):
        report = dispatcher.dispatch_once(now_ms=2_000)
    assert (report.sent, report.retried, report.failed) == (0, 1, 0)
    [entry] = box.log()
    assert entry.state == "pending" and entry.attempts == 1
    assert entry.last_error == f"SMTP 127.0.0.1:{port}: connection refused"
    assert entry.next_attempt_ms == 3_000  # 1 s backoff
    [line] = [r.getMessage() for r in caplog.records]
    assert line == (f"notify: m1 to oncall (email ops-mail) attempt 1 failed, will retry: "
                    f"SMTP 127.0.0.1:{port}: connection refused")
    assert dispatcher.dispatch_once(now_ms=2_999).handled == 0  # still backing off
    assert dispatcher.dispatch_once(now_ms=3_000).retried == 1
    assert box.log()[0].next_attempt_ms == 5_000  # then 2 s


def test_dispatcher_sends_email_and_fails_a_refused_recipient_at_once(
        tmp_path: Path, smtp_server: Callable[..., tuple[Recorder, int]]) -> None:
    rec, port = smtp_server()
    box = Outbox(tmp_path / "notify.db")
    for id, to in (("ok", "oncall@example.com"), ("gone", "nobody@example.com")):
        box.enqueue(id, channel="ops-mail", channel_type="email", address=to,
                    subject="ALARM", body="x", now_ms=1_000)
    config = SendersConfig(smtp=parse_smtp_url(f"smtp://127.0.0.1:{port}?timeout=5"),
                           smtp_from=FROM, http_timeout_s=5)
    report = Dispatcher(box, config, lease_ms=10_000).dispatch_once(now_ms=1_000)
    assert (report.sent, report.retried, report.failed) == (1, 0, 1)
    ok, gone = box.get("ok"), box.get("gone")
    assert ok is not None and ok.state == "sent" and ok.sent_ms == 1_000
    assert gone is not None and gone.state == "failed" and gone.attempts == 1
    assert gone.last_error is not None and "550 5.1.1" in gone.last_error
    assert rec.ids() == ["ok"]


def test_no_smtp_configured_is_a_permanent_failure(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "notify.db")
    box.enqueue("m", channel="c", channel_type="email", address="a@example.com",
                subject="s", body="b", now_ms=0)
    assert Dispatcher(box, SendersConfig()).dispatch_once(now_ms=0).failed == 1
    assert box.log()[0].last_error == "no SMTP server configured (BESSMON_SMTP_URL)"


def test_senders_config_from_settings(tmp_path: Path) -> None:
    s = Settings(run_dir=tmp_path, smtp_url="smtps://a%40b:pw@relay.example",
                 smtp_from="BESS alarms <alarms@fleet.example>")
    config = senders_config(s, webhook_secrets={"scada": SECRET})
    assert config.smtp is not None and config.smtp.implicit_tls
    assert config.smtp.username == "a@b" and config.smtp_from == s.smtp_from
    assert config.secret_for("scada") == SECRET and config.secret_for("other") is None
    assert senders_config(Settings(run_dir=tmp_path)).smtp is None
    with pytest.raises(ValueError, match="must start with smtp://"):
        senders_config(Settings(run_dir=tmp_path, smtp_url="mail.example:25"))


def test_lease_must_outlast_the_timeout(tmp_path: Path) -> None:
    config = SendersConfig(smtp=parse_smtp_url("smtp://relay.example?timeout=30"))
    with pytest.raises(ValueError, match="must outlast the senders' timeout"):
        Dispatcher(Outbox(tmp_path / "n.db"), config, lease_ms=30_000)


# --------------------------------------------------------------------------- kill -9

DISPATCHER_SCRIPT = """\
import sys, threading
from pathlib import Path
from connectors.notify.dispatcher import Dispatcher, senders_config
from connectors.notify.outbox import Outbox
from connectors.notify.senders import SendersConfig, parse_smtp_url

box = Outbox(Path(sys.argv[1]))
config = SendersConfig(smtp=parse_smtp_url(sys.argv[2]), smtp_from="bessmon@fleet.example",
                       http_timeout_s=1)
# One worker: the server holds the third message, so which one that is must be known.
Dispatcher(box, config, lease_ms=int(sys.argv[3]), poll_s=0.05, workers=1).run(
    threading.Event())
"""


def test_dispatcher_killed_mid_send_loses_nothing(
        tmp_path: Path, smtp_server: Callable[..., tuple[Recorder, int]]) -> None:
    rec, port = smtp_server()
    rec.hold_nth = 3  # the server takes two messages, then never answers the third DATA
    db = tmp_path / "notify.db"
    box = Outbox(db)
    ids = [f"alarm-{i}" for i in range(5)]
    for i, id in enumerate(ids):
        box.enqueue(id, channel="ops-mail", channel_type="email",
                    address="oncall@example.com", subject=id, body="x", now_ms=1_000 + i)
    url = f"smtp://127.0.0.1:{port}?timeout=2"
    lease_ms = 2_500
    script = tmp_path / "dispatch.py"
    script.write_text(DISPATCHER_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(db), url, str(lease_ms)],
                            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        wait_for(lambda: rec.holding.is_set() or proc.poll() is not None, 20,
                 "the dispatcher to be mid-send")
        assert proc.poll() is None, "the dispatcher process ended by itself"
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rec.ids() == ids[:2]
    held = box.get(ids[2])
    assert held is not None and held.state == "pending" and held.attempts == 1
    assert held.claimed_until_ms > 0  # still leased by the dead dispatcher

    stop = threading.Event()
    second = Dispatcher(box, SendersConfig(smtp=parse_smtp_url(url), smtp_from=FROM,
                                           http_timeout_s=1), lease_ms=lease_ms, poll_s=0.05)
    thread = threading.Thread(target=second.run, args=(stop,))
    thread.start()
    try:
        wait_for(lambda: box.counts()["sent"] == 5, 20, "every message to be sent")
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()  # run(stop) returns once stop is set
    assert sorted(rec.ids()) == ids  # every id received, none lost (and here none twice)
    again = box.get(ids[2])
    assert again is not None and again.attempts == 2 and again.state == "sent"
    assert box.counts() == {"pending": 0, "sent": 5, "failed": 0}


# --------------------------------------------------------------------------- webhooks

@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """A webhook receiver that checks signatures like an integrator would: 401 when
    X-Bessmon-Signature is not the HMAC of the raw body under the shared secret."""

    def __init__(self) -> None:
        self.hits: list[Hit] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver.hits.append(Hit(self.path, headers, body))
                status, extra = 200, {}
                if self.path == "/signed":
                    expected = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
                    given = headers.get("x-bessmon-signature", "")
                    status = 200 if hmac.compare_digest(expected, given) else 401
                elif self.path.startswith("/status/"):
                    status = int(self.path.split("/")[2])
                    if status == 429:
                        extra["Retry-After"] = "30"
                    if status == 302:
                        extra["Location"] = "https://elsewhere.example/hook"
                elif self.path == "/slow":
                    time.sleep(1.0)
                reply = b'{"ok": true}' if status < 300 else b'{"error": "nope"}'
                self.send_response(status)
                for k, v in extra.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client() as c:
        yield c


def test_webhook_is_signed_and_carries_the_idempotency_key(
        receiver: Receiver, client: httpx.Client) -> None:
    payload = {"event_id": "ev-1", "asset": "nordvik-u01", "text": "SOC ≤ 5 %"}
    detail = send_webhook(client, f"{receiver.url}/signed", "ev-1", payload, secret=SECRET)
    assert "→ 200" in detail
    send_webhook(client, f"{receiver.url}/signed", "ev-1", payload, secret=SECRET)  # repeat
    first, second = receiver.hits
    assert json.loads(first.body) == payload
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"] == "ev-1"
    assert first.headers["x-bessmon-event-id"] == "ev-1"
    assert first.headers["content-type"] == "application/json"
    # A wrong secret is refused by the receiver: a 4xx, hence permanent.
    with pytest.raises(PermanentError, match="→ 401"):
        send_webhook(client, f"{receiver.url}/signed", "ev-2", payload, secret=b"wrong")


@pytest.mark.parametrize(("status", "error", "message"), [
    (410, PermanentError, "→ 410"),
    (400, PermanentError, "→ 400"),
    (302, PermanentError, "redirects are not followed"),
    (408, TemporaryError, "→ 408"),
    (429, TemporaryError, r"Retry-After: 30"),
    (500, TemporaryError, "→ 500"),
    (503, TemporaryError, "→ 503"),
])
def test_webhook_answers_are_classified(receiver: Receiver, client: httpx.Client, status: int,
                                        error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        send_webhook(client, f"{receiver.url}/status/{status}", "ev", {"a": 1})


def test_webhook_transport_failures_are_temporary(receiver: Receiver,
                                                  client: httpx.Client) -> None:
    with pytest.raises(TemporaryError, match=r"timed out after 0\.3 s"):
        send_webhook(client, f"{receiver.url}/slow", "ev", {}, timeout_s=0.3)
    with pytest.raises(TemporaryError, match="ConnectError"):
        send_webhook(client, f"http://127.0.0.1:{free_port()}/hook", "ev", {})
    with pytest.raises(PermanentError, match="not an http"):
        send_webhook(client, "ftp://example.com/hook", "ev", {})


def test_dispatcher_drives_webhook_slack_and_teams(
        tmp_path: Path, receiver: Receiver, client: httpx.Client,
        caplog: pytest.LogCaptureFixture) -> None:
    box = Outbox(tmp_path / "notify.db")
    common = {"subject": "ALARM nordvik-u01", "body": "SOC <5 % & falling", "now_ms": 1_000}
    # attachments are for e-mail: other channels carry the text alone, and send it
    files = [AttachmentRef("R/2026-10/v1/report.pdf", "R-2026-10-v1.pdf", "application/pdf",
                           "00" * 32, 1)]
    box.enqueue("w1", channel="scada-hook", channel_type="webhook",
                address=f"{receiver.url}/signed", recipient="scada", attachments=files,
                **common)  # type: ignore[arg-type]
    box.enqueue("s1", channel="ops-slack", channel_type="slack",
                address=f"{receiver.url}/slack", attachments=files,
                **common)  # type: ignore[arg-type]
    box.enqueue("t1", channel="ops-teams", channel_type="teams",
                address=f"{receiver.url}/teams", **common)  # type: ignore[arg-type]
    secret_path = "/status/503/T024BE7LD/B08Q4RD9Z6Y/sQ1v2ZbN7kPq0wXyZ3aB4cD5"
    box.enqueue("b1", channel="broken-slack", channel_type="slack",
                address=f"{receiver.url}{secret_path}", **common)  # type: ignore[arg-type]
    config = SendersConfig(webhook_secrets={"scada-hook": SECRET}, http_timeout_s=5)
    with caplog.at_level(logging.WARNING, logger="connectors.notify.dispatcher"):
        report = Dispatcher(box, config, lease_ms=10_000, http=client).dispatch_once(
            now_ms=1_000)
    assert (report.sent, report.retried, report.failed) == (3, 1, 0)
    [line] = [r.getMessage() for r in caplog.records]
    assert "b1" in line and "503" in line and "will retry" in line
    assert "sQ1v2ZbN7kPq0wXyZ3aB4cD5" not in line  # a chat webhook's URL is its secret
    hits = {h.path: h for h in receiver.hits}
    hook = hits["/signed"]
    assert json.loads(hook.body) == {"event_id": "w1", "channel": "scada-hook",
                                     "recipient": "scada", "title": "ALARM nordvik-u01",
                                     "text": "SOC <5 % & falling", "created_ms": 1_000}
    assert hook.headers["idempotency-key"] == "w1"
    slack = hits["/slack"]
    assert "x-bessmon-signature" not in slack.headers
    assert json.loads(slack.body) == slack_payload("ALARM nordvik-u01", "SOC <5 % & falling")
    assert json.loads(hits["/teams"].body) == teams_payload("ALARM nordvik-u01",
                                                           "SOC <5 % & falling")
    broken = box.get("b1")
    assert broken is not None and broken.state == "pending"
    assert broken.last_error is not None and "→ 503" in broken.last_error
    assert "sQ1v2ZbN7kPq0wXyZ3aB4cD5" not in broken.last_error


def test_slack_payload_shape() -> None:
    p = slack_payload("ALARM nordvik-u01 " + "x" * 200, "SOC <5 % & falling",
                      "https://bessmon.example/alarms/42")
    assert p["text"].startswith("ALARM nordvik-u01 ")
    header, section, actions = p["blocks"]
    assert header["type"] == "header" and header["text"]["type"] == "plain_text"
    assert len(header["text"]["text"]) == 150 and header["text"]["text"].endswith("…")
    assert section == {"type": "section",
                       "text": {"type": "mrkdwn", "text": "SOC &lt;5 % &amp; falling"}}
    assert actions["type"] == "actions"
    [button] = actions["elements"]
    assert button["type"] == "button" and button["url"] == "https://bessmon.example/alarms/42"
    assert len(slack_payload("t", "b")["blocks"]) == 2  # no link, no button


def test_teams_payload_shape() -> None:
    p = teams_payload("ALARM nordvik-u01", "SOC <5 %", "https://bessmon.example/alarms/42")
    assert p["type"] == "message"
    [attachment] = p["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    assert [b["text"] for b in card["body"]] == ["ALARM nordvik-u01", "SOC <5 %"]
    assert all(b["type"] == "TextBlock" and b["wrap"] for b in card["body"])
    assert card["actions"] == [{"type": "Action.OpenUrl", "title": "Open in bessmon",
                                "url": "https://bessmon.example/alarms/42"}]
    assert "actions" not in teams_payload("t", "b")["attachments"][0]["content"]


def test_any_text_arrives_as_written(smtp_server: Callable[..., tuple[Recorder, int]]) -> None:
    """The message is written by hand (the `email` package's objects were most of a busy
    notifier's time): non-ASCII subjects and bodies, a line starting with a dot, an '='
    in a URL, a long line and a bare CR all arrive as written; a non-ASCII recipient goes
    the `email` package's way (SMTPUTF8)."""
    rec, port = smtp_server()
    config = parse_smtp_url(f"smtp://127.0.0.1:{port}?starttls=0&timeout=5")
    body = ("Temperatur 58 °C in Växjö\n.a line with a leading dot\n"
            "Acknowledge: http://h/api/v1/alarms/ack?token=a.b=c\r\n" + "x" * 1200 + "\rend")
    send_email(config, FROM, Email(id="i:raised", to="oncall@example.com",
                                   subject="ALARM Växjö-u01:\n\tüber 55 °C", body=body))
    [got] = rec.received
    assert got.message["Subject"] == "ALARM Växjö-u01: über 55 °C"  # one line, decoded
    content = got.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert content.replace("\r\n", "\n") == body.replace("\r\n", "\n").replace("\r", "\n") \
        + "\n"
    assert got.message["Message-ID"] == message_id("i:raised")
    send_email(config, FROM, Email(id="j", to="bö@example.com", subject="s", body="b"))
    assert rec.received[-1].rcpt == ["bö@example.com"]  # aiosmtpd offers SMTPUTF8
