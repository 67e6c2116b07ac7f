"""Sending over kept-open SMTP connections and with several workers, against a real SMTP
server (aiosmtpd, in a thread) that counts the connections it is given and closes: one
connection carries many messages; a connection the server dropped, or that fails its RSET
check, is replaced; a refused recipient leaves the connection clean for the next message;
an idle connection is closed; workers sharing an outbox never send a message twice while
leases hold; a claimed message whose lease ran low is given back untried; closing the
dispatcher (or stopping it) closes its connections."""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import Envelope, Session

from connectors.notify.dispatcher import Dispatcher
from connectors.notify.outbox import Outbox
from connectors.notify.senders import (
    Email,
    PermanentError,
    SendersConfig,
    SmtpConnection,
    TemporaryError,
    parse_smtp_url,
)
from infra.ports import free_port
from tests.waiting import wait_for

FROM = "bessmon <bessmon@fleet.example>"




@dataclass
class Server:
    """aiosmtpd handler that records mail, the connections it was given (opened, closed,
    ended with QUIT) and the RSETs; refuses `nobody@` (550) and `busy@` (450) recipients
    and DATA of a message whose subject says `spam` (554); can fail the next RSETs."""

    received: list[tuple[str, list[str], EmailMessage]] = field(default_factory=list)
    opened: int = 0
    closed: int = 0
    quits: int = 0
    rsets: int = 0
    fail_rsets: int = 0
    on_data: Callable[[], None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server: SMTPServer, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if address.startswith("nobody@"):
            return "550 5.1.1 no such user"
        if address.startswith("busy@"):
            return "450 4.2.1 mailbox busy, try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTPServer, session: Session,
                          envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        if "spam" in str(msg["Subject"]):
            return "554 5.7.1 looks like spam"
        with self.lock:
            self.received.append((repr(session.peer), list(envelope.rcpt_tos), msg))
        if self.on_data is not None:
            self.on_data()
        return "250 2.0.0 OK queued"

    async def handle_RSET(self, server: SMTPServer, session: Session,
                          envelope: Envelope) -> str:
        self.rsets += 1
        if self.fail_rsets:
            self.fail_rsets -= 1
            return "421 4.3.2 shutting down"
        return "250 OK"

    async def handle_QUIT(self, server: SMTPServer, session: Session,
                          envelope: Envelope) -> str:
        self.quits += 1
        return "221 Bye"

    def ids(self) -> list[str]:
        with self.lock:
            return [str(m["X-Bessmon-Event-Id"]) for _, _, m in self.received]

    def peers(self) -> set[str]:
        """The connections that carried mail, as the server saw them (client address)."""
        with self.lock:
            return {peer for peer, _, _ in self.received}


class CountingController(Controller):
    """A Controller whose server instances count the connections they were given."""

    def __init__(self, handler: Server, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.server_handler = handler

    def factory(self) -> SMTPServer:
        handler = self.server_handler

        class Counting(SMTPServer):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                handler.opened += 1
                super().connection_made(transport)

            def connection_lost(self, error: Exception | None) -> None:
                handler.closed += 1
                super().connection_lost(error)

        return Counting(self.handler, **self.SMTP_kwargs)


@pytest.fixture
def smtp_server() -> Iterator[Callable[..., tuple[Server, int]]]:
    controllers: list[Controller] = []

    def start(**kwargs: Any) -> tuple[Server, int]:
        server, port = Server(), free_port()
        controller = CountingController(server, hostname="127.0.0.1", port=port, **kwargs)
        controller.start()
        controllers.append(controller)
        # start() connects once to see the server answer: not one of the test's connections.
        wait_for(lambda: server.opened == server.closed, what="the server's own check")
        server.opened = server.closed = 0
        return server, port

    yield start
    for controller in controllers:
        controller.stop()


def mail(id: str, to: str = "oncall@example.com", subject: str = "ALARM nordvik-u01"
         ) -> Email:
    return Email(id, to, subject, "SOC 4.2 % at 12:00:03 UTC.\n")


def enqueue(box: Outbox, ids: list[str], to: str = "oncall@example.com") -> None:
    for i, id in enumerate(ids):
        box.enqueue(id, channel="ops-mail", channel_type="email", address=to,
                    subject=f"ALARM {id}", body="x", now_ms=1_000 + i)


# --------------------------------------------------------------------------- the connection

def test_one_connection_carries_many_messages(
        smtp_server: Callable[..., tuple[Server, int]]) -> None:
    server, port = smtp_server()
    conn = SmtpConnection(parse_smtp_url(f"smtp://127.0.0.1:{port}?timeout=5"))
    try:
        details = [conn.send(FROM, mail(f"m{i}")) for i in range(5)]
    finally:
        conn.close()
    assert all("accepted <m" in d for d in details)
    assert server.ids() == [f"m{i}" for i in range(5)]
    assert [str(m["Message-ID"]) for _, _, m in server.received] == [
        f"<m{i}@bessmon>" for i in range(5)]  # as over a connection of its own
    assert len(server.peers()) == 1 and conn.opened == 1
    wait_for(lambda: server.closed == 1, what="the connection to be closed")
    assert server.opened == 1 and server.quits == 1  # closed politely


def test_a_connection_the_server_dropped_is_replaced(
        smtp_server: Callable[..., tuple[Server, int]]) -> None:
    server, port = smtp_server(timeout=0.3)  # the server drops clients idle for 0.3 s
    conn = SmtpConnection(parse_smtp_url(f"smtp://127.0.0.1:{port}?timeout=5"))
    try:
        conn.send(FROM, mail("before"))
        wait_for(lambda: server.closed == 1, what="the server to drop the idle connection")
        assert conn.is_open  # the client has not noticed yet
        conn.send(FROM, mail("after"))  # noticed before sending: a new connection
    finally:
        conn.close()
    assert server.ids() == ["before", "after"]
    assert server.opened == 2 and conn.opened == 2 and len(server.peers()) == 2


def test_a_connection_failing_its_rset_check_is_replaced(
        smtp_server: Callable[..., tuple[Server, int]]) -> None:
    server, port = smtp_server()
    # probe_after_s=0: every reuse is checked with RSET; the server fails the first one.
    conn = SmtpConnection(parse_smtp_url(f"smtp://127.0.0.1:{port}?timeout=5"),
                          probe_after_s=0)
    try:
        conn.send(FROM, mail("first"))
        server.fail_rsets = 1
        conn.send(FROM, mail("second"))
        conn.send(FROM, mail("third"))
    finally:
        conn.close()
    assert server.ids() == ["first", "second", "third"]
    assert server.rsets == 2  # the failed check, then a good one on the new connection
    assert server.opened == 2 and conn.opened == 2
    peers = [peer for peer, _, _ in server.received]
    assert peers[0] != peers[1] == peers[2]


def test_a_refused_message_leaves_the_connection_clean_for_the_next(
        smtp_server: Callable[..., tuple[Server, int]]) -> None:
    server, port = smtp_server()
    conn = SmtpConnection(parse_smtp_url(f"smtp://127.0.0.1:{port}?timeout=5"))
    try:
        with pytest.raises(PermanentError, match=r"refused recipient nobody@example.com: 550"):
            conn.send(FROM, mail("gone", "nobody@example.com"))
        conn.send(FROM, mail("ok-1", "oncall@example.com"))
        with pytest.raises(TemporaryError, match=r"refused recipient busy@example.com: 450"):
            conn.send(FROM, mail("later", "busy@example.com"))
        with pytest.raises(PermanentError, match=r"answered 554 5\.7\.1 looks like spam"):
            conn.send(FROM, mail("spam", subject="cheap spam"))
        conn.send(FROM, mail("ok-2", "boss@example.com"))
        with pytest.raises(PermanentError, match="not an e-mail address"):
            conn.send(FROM, mail("bad", "oncall@example.com\r\nBcc: all@example.com"))
        conn.send(FROM, mail("ok-3", "ops@example.com"))
    finally:
        conn.close()
    # Each good message went to its own recipient only: nothing of a refused one stuck.
    assert [(m["X-Bessmon-Event-Id"], rcpt) for _, rcpt, m in server.received] == [
        ("ok-1", ["oncall@example.com"]), ("ok-2", ["boss@example.com"]),
        ("ok-3", ["ops@example.com"])]
    assert server.opened == 1 and conn.opened == 1  # all over the one connection
    assert server.rsets >= 3  # after each refusal the transaction was reset


def test_an_idle_connection_is_closed(
        smtp_server: Callable[..., tuple[Server, int]]) -> None:
    server, port = smtp_server()
    now = [100.0]
    conn = SmtpConnection(parse_smtp_url(f"smtp://127.0.0.1:{port}?timeout=5"), idle_s=30,
                          clock=lambda: now[0])
    conn.send(FROM, mail("m1"))
    now[0] += 29
    assert conn.close_if_idle() is False and conn.is_open
    now[0] += 1
    assert conn.close_if_idle() is True and not conn.is_open
    wait_for(lambda: server.closed == 1, what="the idle connection to be closed")
    assert server.quits == 1
    conn.send(FROM, mail("m2"))  # opened again when needed
    now[0] += 31
    conn.send(FROM, mail("m3"))  # idle too long: not reused, a new one
    conn.close()
    assert server.ids() == ["m1", "m2", "m3"] and conn.opened == 3 == server.opened


# --------------------------------------------------------------------------- the dispatcher

def test_the_dispatcher_reuses_its_connection_and_close_closes_it(
        tmp_path: Path, smtp_server: Callable[..., tuple[Server, int]]) -> None:
    server, port = smtp_server()
    box = Outbox(tmp_path / "notify.db")
    ids = [f"alarm-{i}" for i in range(6)]
    enqueue(box, ids)
    config = SendersConfig(smtp=parse_smtp_url(f"smtp://127.0.0.1:{port}?timeout=5"),
                           smtp_from=FROM, http_timeout_s=5)
    dispatcher = Dispatcher(box, config, lease_ms=10_000)
    report = dispatcher.dispatch_once(now_ms=2_000)
    assert (report.sent, report.retried, report.failed) == (6, 0, 0)
    assert server.ids() == ids  # oldest first, one worker: in order
    assert server.opened == 1 and dispatcher.smtp_opened == 1
    assert server.closed == 0  # kept open for the next messages
    dispatcher.close()
    wait_for(lambda: server.closed == 1, what="close() to close the connection")
    assert server.quits == 1
    assert box.counts() == {"pending": 0, "sent": 6, "failed": 0}


def test_workers_never_send_a_message_twice_and_close_their_connections(
        tmp_path: Path, smtp_server: Callable[..., tuple[Server, int]]) -> None:
    server, port = smtp_server()
    path = tmp_path / "notify.db"
    ids = [f"alarm-{i:03d}" for i in range(120)]
    enqueue(Outbox(path), ids)
    config = SendersConfig(smtp=parse_smtp_url(f"smtp://127.0.0.1:{port}?timeout=5"),
                           smtp_from=FROM, http_timeout_s=5)
    # Two dispatchers on one outbox file (as two processes would be), three workers each.
    boxes = [Outbox(path), Outbox(path)]
    dispatchers = [Dispatcher(b, config, lease_ms=60_000, poll_s=0.05, workers=3)
                   for b in boxes]
    stop = threading.Event()
    threads = [threading.Thread(target=d.run, args=(stop,)) for d in dispatchers]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: boxes[0].counts()["sent"] == len(ids), 30, "every message sent")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
    assert not any(t.is_alive() for t in threads)
    assert sorted(server.ids()) == ids  # each exactly once
    assert all(m.attempts == 1 for m in boxes[0].log(limit=1_000))  # one claim each
    assert len(server.peers()) <= 6 < len(ids)  # connections reused, one per worker at most
    # Stopping ended every worker, and each closed its connection.
    wait_for(lambda: server.closed == server.opened, what="every connection closed")
    assert server.quits == server.opened


def test_a_claimed_message_whose_lease_ran_low_is_given_back(
        tmp_path: Path, smtp_server: Callable[..., tuple[Server, int]]) -> None:
    server, port = smtp_server()
    now = [10_000]

    def slow_receiver() -> None:  # each message takes the server 4 s of the clock
        now[0] += 4_000

    server.on_data = slow_receiver
    box = Outbox(tmp_path / "notify.db")
    enqueue(box, ["m0", "m1", "m2"])
    config = SendersConfig(smtp=parse_smtp_url(f"smtp://127.0.0.1:{port}?timeout=2"),
                           smtp_from=FROM, http_timeout_s=2)
    dispatcher = Dispatcher(box, config, lambda: now[0], lease_ms=5_000)
    try:
        # m0 alone (until 15 000) → 14 000; then m1 and m2 together (until 19 000): m1 →
        # 18 000, when m2's lease would not outlast a 2 s send: given back, claimed again.
        report = dispatcher.dispatch_once()
    finally:
        dispatcher.close()
    assert (report.sent, report.released, report.failed, report.retried) == (3, 1, 0, 0)
    assert server.ids() == ["m0", "m1", "m2"]
    m2 = box.get("m2")
    assert m2 is not None and m2.state == "sent"
    assert m2.attempts == 1  # the given-back claim did not count as an attempt


def test_dispatcher_settings_are_checked(tmp_path: Path) -> None:
    config = SendersConfig(smtp=parse_smtp_url("smtp://relay.example?timeout=5"))
    for bad in ({"workers": 0}, {"claim": 0}, {"batch": 0}):
        with pytest.raises(ValueError, match="at least 1"):
            Dispatcher(Outbox(tmp_path / "n.db"), config, **bad)  # type: ignore[arg-type]
