"""The notification outbox on a real SQLite file: enqueueing the same transition twice sends
once; a claim is a lease no second dispatcher can take until it runs out; temporary
failures back off 1 s, 2 s, 4 s … up to 5 min and give up after `max_attempts`; the
delivery log and the counts say what became of every message."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from connectors.notify.outbox import (
    BACKOFF_MAX_MS,
    AttachmentRef,
    Delivered,
    NewMessage,
    Outbox,
    backoff_ms,
)
from connectors.settings import Settings

T0 = 1_780_000_000_000  # an arbitrary epoch ms


def add(box: Outbox, id: str, *, now_ms: int = T0, channel_type: str = "email",
        address: str = "oncall@example.com") -> bool:
    return box.enqueue(id, channel="ops-mail", channel_type=channel_type, address=address,
                       recipient="oncall", subject=f"alarm {id}", body="SOC below limit",
                       now_ms=now_ms)


@pytest.fixture
def box(tmp_path: Path) -> Outbox:
    return Outbox(tmp_path / "notify.db")


def test_enqueue_is_idempotent_and_survives_reopening(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "notify.db")
    assert add(box, "nordvik-u01:soc_low:raised:1780000000000") is True
    assert add(box, "nordvik-u01:soc_low:raised:1780000000000", now_ms=T0 + 5) is False
    assert box.counts() == {"pending": 1, "sent": 0, "failed": 0}
    [msg] = box.claim(T0, 10, 60_000)
    box.sent(msg.id, T0 + 10, "250 ok")
    # Once sent, the same transition enqueued again (a replay after restart) stays sent.
    reopened = Outbox(tmp_path / "notify.db")
    assert add(reopened, msg.id, now_ms=T0 + 99_000) is False
    assert reopened.claim(T0 + 100_000, 10, 60_000) == []
    got = reopened.get(msg.id)
    assert got is not None and got.state == "sent" and got.sent_ms == T0 + 10
    assert got.detail == "250 ok" and got.attempts == 1
    assert reopened.connect().execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_enqueue_refuses_what_cannot_be_sent(box: Outbox) -> None:
    with pytest.raises(ValueError, match="unknown channel type 'pager'"):
        add(box, "a", channel_type="pager")
    with pytest.raises(ValueError, match="non-empty id"):
        add(box, "")
    with pytest.raises(ValueError, match="no address"):
        add(box, "b", address="")
    payload = {"blocks": [{"type": "header"}], "text": "ü"}
    assert box.enqueue("c", channel="chat", channel_type="slack",
                       address="https://hooks.example/x", subject="s", body="b",
                       payload=payload, now_ms=T0)
    got = box.get("c")
    assert got is not None and got.payload == payload and got.recipient is None


PDF = AttachmentRef("LTSA-NORDVIK/2026-10/v1/report.pdf", "LTSA-NORDVIK-2026-10-v1.pdf",
                    "application/pdf", "ab" * 32, 52_311)
CSV = AttachmentRef("LTSA-NORDVIK/2026-10/v1/report.csv", "LTSA-NORDVIK-2026-10-v1.csv",
                    "text/csv; charset=utf-8", "cd" * 32, 4_410)


def test_attachments_are_kept_as_references_never_bytes(box: Outbox) -> None:
    assert box.enqueue("r1", channel="contract-reports", channel_type="email",
                       address="finance@nordvik.example", subject="s", body="b", now_ms=T0,
                       attachments=[PDF, CSV])
    box.enqueue_many([NewMessage("r2", "contract-reports", "email", "owner@nordvik.example",
                                 "s", "b", attachments=(PDF,))], T0)
    add(box, "plain")
    got = {m.id: m for m in box.claim(T0, 10, 60_000)}
    assert got["r1"].attachments == (PDF, CSV)
    assert got["r2"].attachments == (PDF,)
    assert got["plain"].attachments == ()
    stored = box.connect().execute("SELECT attachments FROM outbox WHERE id = 'r1'").fetchone()
    assert "52311" in stored[0] and len(stored[0]) < 500  # a reference: path, hash, size
    assert box.connect().execute(
        "SELECT attachments FROM outbox WHERE id = 'plain'").fetchone()[0] is None


def test_an_outbox_written_before_attachments_opens_and_keeps_working(tmp_path: Path) -> None:
    """A notify.db of the release before (no `attachments` column): its messages are read
    as they were, new ones may carry attachments."""
    path = tmp_path / "notify.db"
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE outbox (
            id TEXT PRIMARY KEY, channel TEXT NOT NULL, channel_type TEXT NOT NULL,
            address TEXT NOT NULL, recipient TEXT, subject TEXT NOT NULL, body TEXT NOT NULL,
            payload TEXT, created_ms INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_ms INTEGER NOT NULL, claimed_until_ms INTEGER NOT NULL DEFAULT 0,
            state TEXT NOT NULL DEFAULT 'pending', last_error TEXT, sent_ms INTEGER,
            detail TEXT, updated_ms INTEGER NOT NULL, sites TEXT, severity TEXT,
            event_ids TEXT);
        INSERT INTO outbox (id, channel, channel_type, address, subject, body, created_ms,
                            next_attempt_ms, updated_ms, sites)
        VALUES ('before', 'ops-mail', 'email', 'oncall@example.com', 'alarm', 'SOC low',
                1, 1, 1, 'nordvik');
    """)
    old.commit()
    old.close()
    box = Outbox(path)
    assert box.enqueue("after", channel="contract-reports", channel_type="email",
                       address="finance@nordvik.example", subject="s", body="b", now_ms=T0,
                       attachments=[PDF])
    got = {m.id: m for m in box.claim(T0, 10, 60_000)}
    assert got["before"].attachments == () and got["before"].sites == ("nordvik",)
    assert got["before"].body == "SOC low"
    assert got["after"].attachments == (PDF,)


def test_claim_leases_and_an_expired_lease_is_claimable_again(box: Outbox) -> None:
    for i in range(3):
        add(box, f"m{i}", now_ms=T0 + i)
    first = box.claim(T0 + 10, 2, 5_000)
    assert [m.id for m in first] == ["m0", "m1"]  # oldest first
    assert all(m.claimed_until_ms == T0 + 5_010 and m.attempts == 1 for m in first)
    # A second dispatcher meanwhile gets only what is not leased.
    assert [m.id for m in box.claim(T0 + 20, 10, 5_000)] == ["m2"]
    assert box.claim(T0 + 5_009, 10, 5_000) == []
    # m0 was sent; m1's dispatcher died mid-send: its lease runs out and it comes back.
    box.sent("m0", T0 + 100)
    again = box.claim(T0 + 5_010, 10, 5_000)
    assert [m.id for m in again] == ["m1"]
    assert again[0].attempts == 2
    assert box.counts() == {"pending": 2, "sent": 1, "failed": 0}


def test_concurrent_claimers_never_take_the_same_message(tmp_path: Path) -> None:
    path = tmp_path / "notify.db"
    setup = Outbox(path)
    ids = [f"m{i:03d}" for i in range(200)]
    for i in ids:
        add(setup, i)
    taken: list[list[str]] = [[], [], [], []]
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def claimer(k: int) -> None:
        box = Outbox(path)  # its own connection, as another process would have
        try:
            start.wait(timeout=30)
            while batch := box.claim(T0 + 1, 3, 60_000):
                taken[k].extend(m.id for m in batch)
        except BaseException as e:
            errors.append(e)
        finally:
            box.close()

    threads = [threading.Thread(target=claimer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    everything = [i for part in taken for i in part]
    assert sorted(everything) == ids  # each exactly once, whoever got how many


def test_backoff_schedule() -> None:
    assert [backoff_ms(n) for n in range(1, 11)] == [
        1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 128_000, 256_000, 300_000]
    assert backoff_ms(1_000) == BACKOFF_MAX_MS == 300_000


def test_retry_backs_off_then_gives_up(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "notify.db", max_attempts=4)
    add(box, "m")
    now = T0
    waits = []
    for attempt in range(1, 4):
        [msg] = box.claim(now, 10, 30_000)
        assert msg.attempts == attempt
        assert box.retry("m", now + 7, f"421 busy ({attempt})") == "pending"
        got = box.get("m")
        assert got is not None
        waits.append(got.next_attempt_ms - (now + 7))
        assert got.claimed_until_ms == 0 and got.last_error == f"421 busy ({attempt})"
        # Not due before its backoff is over …
        assert box.claim(got.next_attempt_ms - 1, 10, 30_000) == []
        now = got.next_attempt_ms  # … due exactly then.
    assert waits == [1_000, 2_000, 4_000]
    [msg] = box.claim(now, 10, 30_000)
    assert box.retry("m", now + 1, "421 busy (4)") == "failed"
    got = box.get("m")
    assert got is not None and got.state == "failed" and got.attempts == 4
    assert got.last_error == "gave up after 4 attempts: 421 busy (4)"
    assert box.claim(now + 10**9, 10, 30_000) == []
    assert box.counts() == {"pending": 0, "sent": 0, "failed": 1}


def test_a_message_that_keeps_killing_its_dispatcher_is_given_up(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "notify.db", max_attempts=2)
    add(box, "poison")
    assert box.claim(T0, 1, 1_000)  # dispatcher dies: no outcome recorded
    assert box.claim(T0 + 1_000, 1, 1_000)  # lease ran out: attempt 2, dies again
    assert box.claim(T0 + 2_000, 1, 1_000) == []
    got = box.get("poison")
    assert got is not None and got.state == "failed"
    assert got.last_error is not None and "stopped mid-send" in got.last_error


def test_permanent_failure_and_late_success(box: Outbox) -> None:
    add(box, "bad")
    add(box, "slow")
    box.claim(T0, 10, 1_000)
    box.failed("bad", T0 + 5, "550 5.1.1 no such user")
    box.retry("bad", T0 + 6, "too late")  # a stale dispatcher cannot revive it
    got = box.get("bad")
    assert got is not None and got.state == "failed"
    assert got.last_error == "550 5.1.1 no such user"
    # A slow first attempt succeeds after its lease ran out and a retry was scheduled:
    box.retry("slow", T0 + 2_000, "timeout")
    box.sent("slow", T0 + 2_001, "250")
    box.retry("slow", T0 + 2_002, "stale")
    got = box.get("slow")
    assert got is not None and got.state == "sent"
    with pytest.raises(KeyError):
        box.retry("nope", T0, "x")


def test_delivery_log_and_prune(box: Outbox) -> None:
    for i in range(5):
        add(box, f"m{i}", now_ms=T0 + i * 1_000)
    box.claim(T0 + 10_000, 10, 1_000)
    box.sent("m0", T0 + 10_001, "250 queued")
    box.failed("m1", T0 + 10_002, "550 unknown user")
    box.retry("m2", T0 + 10_003, "connection refused")
    log = box.log(since_ms=T0 + 1_000, limit=3)
    assert [m.id for m in log] == ["m4", "m3", "m2"]  # newest first
    assert [m.id for m in box.log(0, 10, state="failed")] == ["m1"]
    entry = box.log(0, 10, state="sent")[0]
    assert (entry.channel, entry.channel_type, entry.address, entry.recipient) == (
        "ops-mail", "email", "oncall@example.com", "oncall")
    # m3 and m4 are still leased until T0 + 11 000; m2 backs off until T0 + 11 003.
    assert box.next_due_ms() == T0 + 11_000
    assert box.prune(before_ms=T0 + 1_500) == 2  # m0 (sent) and m1 (failed)
    assert box.prune(before_ms=T0 + 10**6) == 0  # the rest are pending
    assert box.counts() == {"pending": 3, "sent": 0, "failed": 0}


def test_schema_refuses_bad_states(box: Outbox) -> None:
    add(box, "m")
    with pytest.raises(sqlite3.IntegrityError):
        box.connect().execute("UPDATE outbox SET state = 'lost' WHERE id = 'm'")


def test_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BESSMON_SMTP_URL", "smtp://relay.example:587?starttls=1")
    monkeypatch.setenv("BESSMON_NOTIFY_RULES", str(tmp_path / "rules.yaml"))
    s = Settings(run_dir=tmp_path)
    assert s.smtp_url == "smtp://relay.example:587?starttls=1"
    assert s.smtp_from == "bessmon@localhost"
    assert s.notify_rules == tmp_path / "rules.yaml"
    assert s.notify_db_path == tmp_path / "notify.db"
    monkeypatch.setenv("BESSMON_NOTIFY_DB", str(tmp_path / "x.db"))
    assert Settings(run_dir=tmp_path).notify_db_path == tmp_path / "x.db"
    assert s.notify_workers == 4
    monkeypatch.setenv("BESSMON_NOTIFY_WORKERS", "8")
    assert Settings(run_dir=tmp_path).notify_workers == 8
    monkeypatch.setenv("BESSMON_NOTIFY_WORKERS", "0")
    with pytest.raises(ValueError, match="notify_workers"):
        Settings(run_dir=tmp_path)


def test_enqueue_many_is_one_write_and_idempotent(box: Outbox) -> None:
    add(box, "old")
    messages = [NewMessage(f"m{i}", channel="ops-mail", channel_type="email",
                           address="oncall@example.com", subject=f"alarm {i}", body="x",
                           recipient="oncall", sites=("nordvik",), severity="major",
                           event_ids=(f"ev-{i}",)) for i in range(3)]
    # Already there ("old"), or repeated within the batch ("m1"): not added again.
    again = [*messages, NewMessage("old", channel="c", channel_type="email", address="a@b.c",
                                   subject="s", body="b"), messages[1]]
    assert box.enqueue_many(again, now_ms=T0 + 5) == 3
    assert box.enqueue_many(messages, now_ms=T0 + 6) == 0
    assert box.enqueue_many([], now_ms=T0) == 0
    got = box.get("m2")
    assert got is not None and (got.created_ms, got.next_attempt_ms) == (T0 + 5, T0 + 5)
    assert (got.sites, got.severity, got.event_ids, got.recipient) == (
        ("nordvik",), "major", ("ev-2",), "oncall")
    # One that cannot be sent: none of the batch is added.
    bad = NewMessage("m9", channel="c", channel_type="pager", address="x", subject="s",
                     body="b")
    with pytest.raises(ValueError, match="unknown channel type 'pager'"):
        box.enqueue_many([NewMessage("m8", channel="c", channel_type="email",
                                     address="a@b.c", subject="s", body="b"), bad], T0)
    assert box.get("m8") is None
    # More than one statement's worth: all of them, in one transaction.
    many = [NewMessage(f"n{i:04d}", channel="c", channel_type="webhook",
                       address="https://hooks.example/x", subject="s", body="b",
                       payload={"i": i}) for i in range(1_203)]
    assert box.enqueue_many(many, now_ms=T0) == 1_203
    n = box.get("n1202")
    assert n is not None and n.payload == {"i": 1202}
    assert box.counts()["pending"] == 1 + 3 + 1_203


def test_the_place_in_the_topics_is_committed_with_the_messages(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "notify.db")
    assert box.consumed() == {}
    message = NewMessage("m1", channel="c", channel_type="email", address="a@b.c",
                         subject="s", body="b")
    assert box.enqueue_many([message], T0, {("bess.breaches", 0): 41, ("bess.alerts", 1): 7}) == 1
    assert box.enqueue_many([], T0, {("bess.breaches", 0): 45}) == 0  # a place on its own
    assert box.enqueue_many([], T0, {("bess.breaches", 0): 40}) == 0  # never backwards
    # A batch that cannot be written moves the place neither.
    bad = NewMessage("m2", channel="c", channel_type="pager", address="x", subject="s", body="b")
    with pytest.raises(ValueError):
        box.enqueue_many([bad], T0, {("bess.alerts", 1): 99})
    box.close()
    again = Outbox(tmp_path / "notify.db")  # what a restarted notifier reads
    assert again.consumed() == {("bess.breaches", 0): 45, ("bess.alerts", 1): 7}
    again.forget_consumed()
    assert again.consumed() == {} and again.get("m1") is not None
    again.close()


def test_sent_many_and_release(box: Outbox) -> None:
    for i in range(4):
        add(box, f"m{i}", now_ms=T0 + i)
    claimed = box.claim(T0 + 10, 4, 60_000)
    until = claimed[0].claimed_until_ms
    box.sent_many([Delivered("m0", T0 + 20, "250 queued"), Delivered("m1", T0 + 21)])
    m0, m1 = box.get("m0"), box.get("m1")
    assert m0 is not None and (m0.state, m0.sent_ms, m0.detail) == ("sent", T0 + 20,
                                                                     "250 queued")
    assert m1 is not None and (m1.state, m1.sent_ms, m1.claimed_until_ms) == ("sent",
                                                                             T0 + 21, 0)
    # Given back untried: due at once, the claim not counted; not under another's lease.
    assert box.release(["m2", "m0"], until + 1, T0 + 30) == 0  # not this lease
    assert box.release(["m2", "m0"], until, T0 + 30) == 1  # m0 is sent: left alone
    m2 = box.get("m2")
    assert m2 is not None and (m2.attempts, m2.claimed_until_ms) == (0, 0)
    assert [m.id for m in box.claim(T0 + 40, 10, 60_000)] == ["m2"]  # m3 is still leased
    assert box.counts() == {"pending": 2, "sent": 2, "failed": 0}
