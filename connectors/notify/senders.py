"""The senders: e-mail over SMTP, signed JSON webhooks, and Slack / Microsoft Teams
incoming webhooks. Each takes one message and either returns (delivered: a short detail of
what the receiver answered) or raises a `DeliveryError` that says whether trying again can
help — the dispatcher retries `TemporaryError` with backoff and gives up on
`PermanentError` at once.

Why the classification matters: a refused recipient (SMTP 550) or a deleted endpoint (HTTP
404/410) will never succeed and must show up in the delivery log as failed now, not after
an hour of retries; a relay that is restarting (connection refused, 4xx, a timeout, HTTP
5xx/408/429) usually comes back.

Every message carries its outbox id as a stable identity — `Message-ID: <id@bessmon>` for
e-mail, `Idempotency-Key` / `X-Bessmon-Event-Id` for webhooks — because delivery is
at-least-once: a dispatcher that dies after the receiver accepted but before the outbox
recorded it sends again, and the receiver drops the repeat by that id.

The functions are blocking (smtplib, an httpx.Client): the dispatcher runs them in its own
threads or process, never on an event loop. E-mail goes over kept-open connections
(`SmtpConnection`, one per dispatcher worker: a connection per message cost more than the
message); `send_email` is the one-shot form, a connection of its own."""

from __future__ import annotations

import base64
import email.header
import email.utils
import json
import quopri
import re
import select
import smtplib
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

import httpx

from connectors.ticketing.signing import hmac_sha256

StartTls = Literal["never", "always", "auto"]
SIGNATURE_HEADER = "X-Bessmon-Signature"
EVENT_ID_HEADER = "X-Bessmon-Event-Id"
IDEMPOTENCY_HEADER = "Idempotency-Key"
USER_AGENT = "bessmon-notify/1"
SLACK_HEADER_MAX = 150  # Slack: a header block's plain_text is at most 150 characters
SLACK_SECTION_MAX = 3000  # … and a section's text at most 3000


class DeliveryError(Exception):
    """The message was not delivered; `permanent` says whether retrying can help."""

    permanent: bool = False


class TemporaryError(DeliveryError):
    """Worth retrying later (unreachable, busy, timed out, 4xx SMTP, 5xx/408/429 HTTP)."""

    permanent = False


class PermanentError(DeliveryError):
    """Never worth retrying as it stands (refused recipient, 5xx SMTP, 4xx HTTP, bad
    address or configuration)."""

    permanent = True


# --------------------------------------------------------------------------- e-mail

@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    implicit_tls: bool = False  # smtps://: TLS from the first byte
    starttls: StartTls = "auto"
    username: str | None = None
    password: str | None = None
    timeout_s: float = 30.0
    verify: bool = True  # check the server's certificate (host name and chain)
    cafile: str | None = None  # trust this CA bundle instead of the system's

    def __repr__(self) -> str:  # never print the password
        return (f"SmtpConfig(host={self.host!r}, port={self.port}, "
                f"implicit_tls={self.implicit_tls}, starttls={self.starttls!r}, "
                f"username={self.username!r}, password={'***' if self.password else None}, "
                f"timeout_s={self.timeout_s}, verify={self.verify}, cafile={self.cafile!r})")


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_SMTP_PARAMS = {"starttls", "timeout", "verify", "cafile"}


def parse_smtp_url(url: str) -> SmtpConfig:
    """`smtp://[user[:password]@]host[:port][?starttls=1|0|auto][&timeout=s][&verify=0]
    [&cafile=path]` (port 25; STARTTLS `auto`: used when the server offers it) or
    `smtps://…` (implicit TLS, port 465). User and password are percent-decoded. Raises
    ValueError saying what is wrong, never echoing the password."""
    try:
        parts = urlsplit(url.strip())
    except ValueError as e:
        raise ValueError(f"SMTP URL is not a URL: {e}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("smtp", "smtps"):
        raise ValueError(f"SMTP URL must start with smtp:// or smtps://, not "
                         f"{(scheme + '://') if scheme else 'nothing'}")
    if not parts.hostname:
        raise ValueError("SMTP URL has no host (smtp://host:port)")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("SMTP URL port must be a number from 1 to 65535") from None
    if port == 0:
        raise ValueError("SMTP URL port must be a number from 1 to 65535")
    if parts.path not in ("", "/"):
        raise ValueError(f"SMTP URL takes no path (got {parts.path!r})")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if password is not None and not username:
        raise ValueError("SMTP URL has a password but no user name")
    params: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in _SMTP_PARAMS:
            raise ValueError(f"SMTP URL has unknown parameter {key!r} "
                             f"(known: {', '.join(sorted(_SMTP_PARAMS))})")
        if key in params:
            raise ValueError(f"SMTP URL repeats parameter {key!r}")
        params[key] = value
    implicit = scheme == "smtps"
    starttls: StartTls = "never" if implicit else "auto"
    if "starttls" in params:
        value = params["starttls"].lower()
        if implicit:
            raise ValueError("smtps:// is TLS from the start: drop starttls= "
                             "(or use smtp://…?starttls=1)")
        if value in _TRUE:
            starttls = "always"
        elif value in _FALSE:
            starttls = "never"
        elif value == "auto":
            starttls = "auto"
        else:
            raise ValueError(f"SMTP URL starttls must be 1, 0 or auto, not {value!r}")
    timeout = 30.0
    if "timeout" in params:
        try:
            timeout = float(params["timeout"])
        except ValueError:
            timeout = -1.0
        if not 0 < timeout <= 600:
            raise ValueError("SMTP URL timeout must be seconds, more than 0 and at most 600")
    verify = True
    if "verify" in params:
        value = params["verify"].lower()
        if value not in _TRUE | _FALSE:
            raise ValueError(f"SMTP URL verify must be 1 or 0, not {value!r}")
        verify = value in _TRUE
    return SmtpConfig(host=parts.hostname, port=port or (465 if implicit else 25),
                      implicit_tls=implicit, starttls=starttls, username=username,
                      password=password, timeout_s=timeout, verify=verify,
                      cafile=params.get("cafile") or None)


@dataclass(frozen=True)
class Attachment:
    """A file an e-mail carries, its bytes read (connectors/notify/attachments.py)."""

    name: str  # the file name the recipient sees
    content_type: str  # MIME type, parameters allowed ("text/csv; charset=utf-8")
    data: bytes


@dataclass(frozen=True)
class Email:
    id: str  # the outbox id: becomes the Message-ID
    to: str
    subject: str
    body: str
    attachments: tuple[Attachment, ...] = ()


_ATEXT = re.compile(r"[A-Za-z0-9!#$%&'*+\-/?^_`{|}~.]")
_ADDRESS = re.compile(r"^[^\s@<>()\[\],;:\"\\]+@[^\s@<>()\[\],;:\"\\]+$")


def message_id(id: str) -> str:
    """`<id@bessmon>`, with every character a Message-ID may not hold (and '=') written as
    =XX: the same id always gives the same header, distinct ids distinct headers."""
    out = []
    for i, c in enumerate(id):
        dot_ok = c != "." or (0 < i < len(id) - 1 and id[i - 1] != ".")  # dot-atom rules
        keep = c != "=" and dot_ok and _ATEXT.fullmatch(c) is not None
        out.append(c if keep else "".join(f"={b:02X}" for b in c.encode()))
    return f"<{''.join(out)}@bessmon>"


def email_bytes(msg: Email, sender: str) -> tuple[bytes, str] | None:
    """The message as it goes on the wire (CRLF lines; smtplib dot-stuffs it) and its
    Message-ID, written by hand: the `email` package's objects cost about 1.4 ms a message,
    this a few µs — most of a busy notifier's time went there. None when an address is
    not plain ASCII (`build_email` and SMTPUTF8 handle those) or the message has
    attachments (`build_email` makes the multipart message)."""
    if not _ADDRESS.match(msg.to):
        raise PermanentError(f"not an e-mail address: {msg.to!r}")
    if not (msg.to.isascii() and sender.isascii()) or any(c in sender for c in "\r\n") \
            or msg.attachments:
        return None
    mid = message_id(msg.id)
    subject = " ".join(msg.subject.split())  # no line breaks: no header injection
    if not subject.isascii():
        subject = email.header.Header(subject, "utf-8").encode()
    body = msg.body.replace("\r\n", "\n").replace("\r", "\n")
    if body.isascii() and all(len(line) <= 900 for line in body.split("\n")):
        encoding, text = "7bit", body
    else:
        encoding = "quoted-printable"
        text = quopri.encodestring(body.encode("utf-8")).decode("ascii")
    if not text.endswith("\n"):
        text += "\n"
    head = (f"From: {sender}\nTo: {msg.to}\nSubject: {subject}\n"
            f"Date: {email.utils.formatdate(localtime=False, usegmt=True)}\n"
            f"Message-ID: {mid}\nX-Bessmon-Event-Id: {' '.join(msg.id.split())}\n"
            "Auto-Submitted: auto-generated\nMIME-Version: 1.0\n"
            'Content-Type: text/plain; charset="utf-8"\n'
            f"Content-Transfer-Encoding: {encoding}\n\n")
    return (head + text).replace("\n", "\r\n").encode("ascii"), mid


def build_email(msg: Email, sender: str) -> EmailMessage:
    if not _ADDRESS.match(msg.to):
        raise PermanentError(f"not an e-mail address: {msg.to!r}")
    out = EmailMessage()
    out["From"] = sender
    out["To"] = msg.to
    out["Subject"] = " ".join(msg.subject.split())  # no line breaks: no header injection
    out["Date"] = email.utils.formatdate(localtime=False, usegmt=True)
    out["Message-ID"] = message_id(msg.id)
    out["X-Bessmon-Event-Id"] = " ".join(msg.id.split())
    out["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies, please
    out.set_content(msg.body)
    for attachment in msg.attachments:
        maintype, subtype, params = mime_type(attachment.content_type)
        out.add_attachment(attachment.data, maintype=maintype, subtype=subtype,
                           filename=attachment.name, params=params)
    return out


_TOKEN = re.compile(r"^[A-Za-z0-9!#$&^_.+-]+$")  # RFC 2045 token characters, less some


def mime_type(content_type: str) -> tuple[str, str, dict[str, str]]:
    """`type/subtype; key=value …` as (maintype, subtype, parameters); a value that is
    not one falls back to application/octet-stream (the file still arrives)."""
    kind, *rest = content_type.split(";")
    maintype, _, subtype = kind.strip().lower().partition("/")
    if not (_TOKEN.match(maintype) and _TOKEN.match(subtype)):
        return "application", "octet-stream", {}
    params: dict[str, str] = {}
    for part in rest:
        key, eq, value = part.strip().partition("=")
        if eq and _TOKEN.match(key.strip()) and _TOKEN.match(value.strip().strip('"')):
            params[key.strip().lower()] = value.strip().strip('"')
    return maintype, subtype, params


def _tls_context(config: SmtpConfig) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=config.cafile)
    if not config.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _classify_code(code: int, text: str) -> DeliveryError:
    return PermanentError(text) if code >= 500 else TemporaryError(text)


def _reply(code: int, raw: bytes | str) -> str:
    msg = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
    return f"{code} {' '.join(msg.split())}"


def _login(smtp: smtplib.SMTP, username: str, password: str) -> None:
    """smtplib's login, except that user names and passwords outside ASCII (which smtplib
    cannot encode) go as UTF-8 with AUTH PLAIN or LOGIN (RFC 4616 / common practice)."""
    if (username + password).isascii():
        smtp.login(username, password)
        return
    offered = smtp.esmtp_features.get("auth", "").upper().split()
    user, secret = username.encode(), password.encode()
    if "PLAIN" in offered:
        code, reply = smtp.docmd("AUTH", "PLAIN " + base64.b64encode(
            b"\0" + user + b"\0" + secret).decode())
    elif "LOGIN" in offered:
        code, reply = smtp.docmd("AUTH", "LOGIN " + base64.b64encode(user).decode())
        if code == 334:
            code, reply = smtp.docmd(base64.b64encode(secret).decode())
    else:
        raise PermanentError(f"SMTP server offers neither AUTH PLAIN nor LOGIN ({offered}), "
                             "the only ones that carry a non-ASCII password")
    if code != 235:
        raise smtplib.SMTPAuthenticationError(code, reply)


def _where(config: SmtpConfig) -> str:
    return f"SMTP {config.host}:{config.port}"


def _open(config: SmtpConfig) -> smtplib.SMTP:
    """A connection ready for mail: connected, EHLO, STARTTLS as configured, logged in.
    Raises what smtplib / the socket raise (classified by `_delivery_error`) or
    PermanentError; a half-set-up connection is closed (after a polite QUIT)."""
    where = _where(config)
    if config.implicit_tls:
        smtp: smtplib.SMTP = smtplib.SMTP_SSL(config.host, config.port,
                                              timeout=config.timeout_s,
                                              context=_tls_context(config))
    else:
        smtp = smtplib.SMTP(config.host, config.port, timeout=config.timeout_s)
    try:
        smtp.ehlo()
        if not config.implicit_tls and config.starttls != "never":
            if smtp.has_extn("starttls"):
                smtp.starttls(context=_tls_context(config))
                smtp.ehlo()
            elif config.starttls == "always":
                raise PermanentError(f"{where} does not offer STARTTLS, which the "
                                     "SMTP URL requires (starttls=1)")
        if config.username:
            if not smtp.has_extn("auth"):
                raise PermanentError(f"{where} offers no AUTH (over this connection), "
                                     "but the SMTP URL has a user name")
            _login(smtp, config.username, config.password or "")
    except BaseException:
        _quit(smtp)
        raise
    return smtp


def _quit(smtp: smtplib.SMTP) -> None:
    """QUIT and close, never raising: whatever the server answers, the connection ends."""
    try:
        if smtp.sock is not None:
            smtp.quit()
    except (smtplib.SMTPException, OSError):
        pass
    finally:
        smtp.close()


def _delivery_error(e: Exception, config: SmtpConfig, sender: str,
                    to: str) -> DeliveryError:
    """What an exception of smtplib or the socket means for the message: permanent (5xx
    replies, a configuration the server cannot serve) or temporary (4xx replies, timeouts,
    connection errors)."""
    where = _where(config)
    if isinstance(e, DeliveryError):
        return e
    if isinstance(e, smtplib.SMTPRecipientsRefused):
        code, text = next(iter(e.recipients.values()))
        return _classify_code(code, f"{where} refused recipient {to}: {_reply(code, text)}")
    if isinstance(e, smtplib.SMTPAuthenticationError):
        return _classify_code(e.smtp_code, f"{where} refused the login of "
                                           f"{config.username!r}: "
                                           f"{_reply(e.smtp_code, e.smtp_error)}")
    if isinstance(e, smtplib.SMTPSenderRefused):
        return _classify_code(e.smtp_code, f"{where} refused sender {sender}: "
                                           f"{_reply(e.smtp_code, e.smtp_error)}")
    if isinstance(e, smtplib.SMTPResponseException):
        return _classify_code(e.smtp_code, f"{where} answered "
                                           f"{_reply(e.smtp_code, e.smtp_error)}")
    if isinstance(e, smtplib.SMTPNotSupportedError):
        return PermanentError(f"{where}: {e}")
    if isinstance(e, smtplib.SMTPServerDisconnected):
        if "timed out" in str(e):  # smtplib turns a read timeout into a disconnection
            return TemporaryError(f"{where} timed out after {config.timeout_s:g} s")
        return TemporaryError(f"{where} closed the connection: {e or 'no reason'}")
    if isinstance(e, ssl.SSLCertVerificationError):
        return TemporaryError(f"{where}: TLS certificate not trusted ({e.verify_message})")
    if isinstance(e, TimeoutError):
        return TemporaryError(f"{where} timed out after {config.timeout_s:g} s")
    if isinstance(e, ConnectionRefusedError):
        return TemporaryError(f"{where}: connection refused")
    if isinstance(e, socket.gaierror):
        return TemporaryError(f"{where}: host not found ({e.strerror})")
    return TemporaryError(f"{where}: {type(e).__name__}: {e}")


# A refusal of the message itself leaves the connection usable (smtplib sent RSET after it,
# except after a 421, when it closed the connection); anything else leaves it in an
# unknown state, and it is dropped.
_REFUSALS = (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused, smtplib.SMTPDataError)


class SmtpConnection:
    """A kept-open connection to one SMTP server, for one thread at a time.

    Why: opening a connection (TCP, EHLO, STARTTLS, AUTH) costs several round trips and, with
    TLS, a handshake — more than the message itself; a burst of alarms over one connection
    is several times faster. What keeping it open must not change: each message is still
    its own transaction (MAIL, RCPT, DATA) with the same Message-ID and the same
    classification of failures as `send_email`.

    Before a message goes over a connection used before, it is checked: one the server
    closed or spoke on unasked (a 421 before hanging up) is noticed without a round trip
    (the socket is readable); after a failure, or when it was idle for `probe_after_s`, an
    RSET must be answered 250. A connection that fails the check is replaced — once; a
    failure to connect again is the message's failure. A refused recipient or sender leaves
    the connection usable (RSET, checked before the next message); any other error drops
    it. After `idle_s` without a message it is closed (`close_if_idle`, or at the next
    message), as servers drop idle clients anyway (often after 60 s or less)."""

    def __init__(self, config: SmtpConfig, *, idle_s: float = 30.0,
                 probe_after_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.idle_s = idle_s
        self.probe_after_s = probe_after_s
        self.clock = clock
        self.opened = 0  # connections opened so far (a figure for logs and tests)
        self._smtp: smtplib.SMTP | None = None
        self._used = 0.0  # clock() when the connection last carried a command
        self._suspect = False  # the last message failed on it: check it with RSET

    @property
    def is_open(self) -> bool:
        return self._smtp is not None

    def send(self, sender: str, msg: Email) -> str:
        """Send one e-mail (blocking) over the kept connection, opening it if needed.
        Returns the server's answer; raises TemporaryError or PermanentError."""
        fast = email_bytes(msg, sender)  # a bad address fails before any connection
        message = build_email(msg, sender) if fast is None else None
        mid = fast[1] if fast is not None else str(message["Message-ID"]) if message else ""
        where = _where(self.config)
        envelope_from = email.utils.parseaddr(sender)[1] or sender
        try:
            smtp = self._ready()
        except Exception as e:
            raise _delivery_error(e, self.config, sender, msg.to) from None
        try:
            if fast is not None:
                refused = smtp.sendmail(envelope_from, [msg.to], fast[0])
            else:
                assert message is not None
                refused = smtp.send_message(message, from_addr=envelope_from,
                                            to_addrs=[msg.to])
            if refused:  # one recipient per message: only reached when some were refused
                code, text = next(iter(refused.values()))
                raise _classify_code(code, f"{where} refused {msg.to}: {_reply(code, text)}")
        except Exception as e:
            self._used = self.clock()
            if isinstance(e, (DeliveryError, *_REFUSALS)) and smtp.sock is not None:
                self._suspect = True
            else:
                self._drop(polite=False)
            raise _delivery_error(e, self.config, sender, msg.to) from None
        except BaseException:  # interrupted mid-transaction: the connection is unusable
            self._drop(polite=False)
            raise
        self._used = self.clock()
        return f"{where} accepted {mid} for {msg.to}"

    def close_if_idle(self) -> bool:
        """Close the connection when it carried nothing for `idle_s`; True if it did."""
        if self._smtp is not None and self.clock() - self._used >= self.idle_s:
            self._drop(polite=True)
            return True
        return False

    def close(self) -> None:
        """QUIT and close (nothing to do when not open)."""
        self._drop(polite=True)

    def _drop(self, *, polite: bool) -> None:
        smtp, self._smtp, self._suspect = self._smtp, None, False
        if smtp is None:
            return
        if polite:
            _quit(smtp)
        else:  # the connection's state is unknown: a QUIT could read a stale reply
            smtp.close()

    def _ready(self) -> smtplib.SMTP:
        """The connection to send on: the kept one if it passes the check, else a new one."""
        smtp = self._smtp
        if smtp is not None:
            idle = self.clock() - self._used
            if idle >= self.idle_s:
                self._drop(polite=True)
            elif (self._suspect or idle >= self.probe_after_s or _readable(smtp)) \
                    and not _rset_ok(smtp):
                self._drop(polite=False)
            else:
                self._suspect = False
                return smtp
        self._smtp = _open(self.config)
        self.opened += 1
        self._used = self.clock()
        return self._smtp


def _readable(smtp: smtplib.SMTP) -> bool:
    """Whether the server sent something unasked (a 421 before hanging up, the end of the
    stream, or TLS records): checked without waiting, before reusing a connection."""
    sock = smtp.sock
    if sock is None:
        return True
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):  # closed underneath
        return True
    return bool(readable)


def _rset_ok(smtp: smtplib.SMTP) -> bool:
    """RSET answered 250: the connection works and no transaction is left open on it."""
    try:
        code, _ = smtp.rset()
    except (smtplib.SMTPException, OSError):
        return False
    return code == 250


def send_email(config: SmtpConfig, sender: str, msg: Email) -> str:
    """Send one e-mail over a connection of its own (blocking), closed afterwards. Returns
    the server's answer; raises TemporaryError or PermanentError. The dispatcher keeps
    connections open instead (`SmtpConnection`)."""
    connection = SmtpConnection(config)
    try:
        return connection.send(sender, msg)
    finally:
        connection.close()


# --------------------------------------------------------------------------- webhooks

def sign(secret: bytes, body: bytes) -> str:
    """The `X-Bessmon-Signature` value: `sha256=` and the hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac_sha256(secret, body).hex()


def encode_json(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def send_webhook(client: httpx.Client, url: str, id: str, payload: Any, *,
                 secret: bytes | None = None, timeout_s: float = 10.0) -> str:
    """POST the JSON payload (blocking). 2xx is delivered; 408, 429 and 5xx, timeouts and
    connection errors are temporary; other 4xx, redirects and bad URLs are permanent."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise PermanentError(f"not an http(s) URL: {redact_url(url)}")
    body = encode_json(payload)
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
               IDEMPOTENCY_HEADER: id, EVENT_ID_HEADER: id}
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret, body)
    where = redact_url(url)
    try:
        resp = client.post(url, content=body, headers=headers, timeout=timeout_s,
                           follow_redirects=False)
    except httpx.TimeoutException:
        raise TemporaryError(f"POST {where} timed out after {timeout_s:g} s") from None
    except httpx.HTTPError as e:
        raise TemporaryError(f"POST {where}: {type(e).__name__}: {e}") from None
    status = resp.status_code
    answer = f"POST {where} → {status} {_snippet(resp.text)}".rstrip()
    if 200 <= status < 300:
        return answer
    if status in (408, 429) or status >= 500:
        retry_after = resp.headers.get("retry-after")
        raise TemporaryError(answer + (f" (Retry-After: {retry_after})" if retry_after
                                       else ""))
    if 300 <= status < 400:
        raise PermanentError(f"{answer}: redirects are not followed, configure the final "
                             f"URL ({resp.headers.get('location', '?')})")
    raise PermanentError(answer)


def redact_url(url: str) -> str:
    """Scheme, host and path only: Slack / Teams webhook URLs carry their secret in the
    path, so only its start is shown."""
    parts = urlsplit(url)
    path = parts.path
    if len(path) > 24:
        path = path[:20] + "…"
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}" \
           f"{path}"


def _snippet(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


# --------------------------------------------------------------------------- chat

def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def slack_payload(title: str, text: str, link: str | None = None) -> dict[str, Any]:
    """A Slack incoming-webhook message: `text` is the notification / fallback line,
    `blocks` a header, the text, and a button to the link."""
    blocks: list[dict[str, Any]] = [
        {"type": "header",
         "text": {"type": "plain_text", "text": _clip(" ".join(title.split()) or "bessmon",
                                                      SLACK_HEADER_MAX), "emoji": False}},
        {"type": "section",
         "text": {"type": "mrkdwn", "text": _clip(_slack_escape(text) or " ",
                                                  SLACK_SECTION_MAX)}},
    ]
    if link:
        blocks.append({"type": "actions", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": "Open in bessmon"},
             "url": link}]})
    return {"text": _clip(_slack_escape(f"{title}: {text}" if text else title), 3000),
            "blocks": blocks}


def teams_payload(title: str, text: str, link: str | None = None) -> dict[str, Any]:
    """A Microsoft Teams message for a Workflows ("When a Teams webhook request is
    received") or incoming-webhook URL: one Adaptive Card (1.4) with the title, the text
    and a button to the link."""
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {"type": "TextBlock", "text": title, "weight": "Bolder", "size": "Medium",
             "wrap": True},
            {"type": "TextBlock", "text": text, "wrap": True},
        ],
    }
    if link:
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Open in bessmon",
                            "url": link}]
    return {"type": "message", "attachments": [
        {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None,
         "content": card}]}


def default_webhook_payload(id: str, channel: str, recipient: str | None, subject: str,
                            body: str, created_ms: int) -> dict[str, Any]:
    """What a generic webhook receives when the enqueuer gave no payload of its own."""
    return {"event_id": id, "channel": channel, "recipient": recipient, "title": subject,
            "text": body, "created_ms": created_ms}


@dataclass(frozen=True)
class SendersConfig:
    """Everything the senders need besides the message. Webhook signing keys live here, by
    channel name, never in the outbox."""

    smtp: SmtpConfig | None = None
    smtp_from: str = "bessmon@localhost"
    webhook_secrets: Mapping[str, bytes] | None = None  # channel name → HMAC key
    default_webhook_secret: bytes | None = None
    http_timeout_s: float = 10.0
    # Where e-mail attachments' paths lead (the report archive, `<run dir>/reports`); None:
    # no file can be attached, and the e-mail says so.
    attachments_root: Path | None = None

    def secret_for(self, channel: str) -> bytes | None:
        if self.webhook_secrets and channel in self.webhook_secrets:
            return self.webhook_secrets[channel]
        return self.default_webhook_secret

    @property
    def max_timeout_s(self) -> float:
        """The longest a single network wait may take (a lease must outlast it)."""
        return max(self.smtp.timeout_s if self.smtp else 0.0, self.http_timeout_s)
