"""The e-mails' acknowledge links (contracts/ack_links.py): a token round-trips its claim,
is refused once expired (at its expiry exactly), and any change to it — any character of
it replaced, dropped or added, another key, a re-signed payload with a short signature —
is refused with its reason; the secret helper (connectors/ack_secret.py) makes one key file,
owner-only, and every process reads the same."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import stat
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.ack_secret import KEY_BYTES, ack_key_path, ack_secret, load_or_create_key
from connectors.settings import Settings
from contracts.ack_links import (
    DEFAULT_TTL_MS,
    MAX_FIELD_CHARS,
    AckClaim,
    AckLinkInvalid,
    ack_url,
    make_token,
    verify_token,
)

SECRET = b"k" * 32
NOW = 1_800_000_000_000
ALARM = "cell-temp-high:critical:nordvik-u01:1799999000000"

texts = st.text(min_size=1, max_size=60)
secrets_ = st.binary(min_size=16, max_size=64)


def token(**changes: object) -> str:
    fields: dict[str, object] = {"site_id": "nordvik", "alarm_id": ALARM,
                                 "recipient": "user:ana", "expires_ms": NOW + 60_000,
                                 "nonce": "n-1"}
    fields.update(changes)
    return make_token(SECRET, **fields)  # type: ignore[arg-type]


def reason(secret: bytes, text: str, now_ms: int = NOW) -> str:
    with pytest.raises(AckLinkInvalid) as refused:
        verify_token(secret, text, now_ms)
    if len(text) > 8:
        assert text not in str(refused.value)  # the message never echoes the token
    return refused.value.reason


@settings(max_examples=200)
@given(secret=secrets_, site=texts, alarm=texts, recipient=texts,
       expires=st.integers(1, 2**53), nonce=texts)
def test_a_token_round_trips_its_claim(secret: bytes, site: str, alarm: str, recipient: str,
                                       expires: int, nonce: str) -> None:
    made = make_token(secret, site_id=site, alarm_id=alarm, recipient=recipient,
                      expires_ms=expires, nonce=nonce)
    assert all((c.isalnum() and c.isascii()) or c in "-_." for c in made)  # URL-safe as is
    assert verify_token(secret, made, expires - 1) == AckClaim(site, alarm, recipient,
                                                               expires, nonce)


@settings(max_examples=300)
@given(data=st.data(), secret=secrets_)
def test_any_replaced_character_is_refused(data: st.DataObject, secret: bytes) -> None:
    made = make_token(secret, site_id="nordvik", alarm_id=ALARM, recipient="channel:ops-mail",
                      expires_ms=NOW + 1, nonce="abc")
    i = data.draw(st.integers(0, len(made) - 1), label="position")
    other = data.draw(st.characters(codec="utf-8").filter(lambda c: c != made[i]),
                      label="replacement")
    tampered = made[:i] + other + made[i + 1:]
    assert reason(secret, tampered) in ("malformed", "bad signature")


@settings(max_examples=200)
@given(data=st.data())
def test_any_dropped_or_added_character_is_refused(data: st.DataObject) -> None:
    made = token()
    i = data.draw(st.integers(0, len(made)), label="position")
    if data.draw(st.booleans(), label="drop"):
        changed = made[:i] + made[i + 1:] if i < len(made) else made[:-1]
    else:
        changed = made[:i] + data.draw(st.characters(codec="utf-8")) + made[i:]
    assert reason(SECRET, changed) in ("malformed", "bad signature")


def test_every_character_of_the_signature_counts() -> None:
    """Base64 leaves spare bits in the last character: a spelling with other spare bits
    decodes to the same bytes, and must be refused all the same."""
    made = token()
    payload, signature = made.split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for i in range(len(signature)):
        for c in alphabet.replace(signature[i], ""):
            forged = f"{payload}.{signature[:i]}{c}{signature[i + 1:]}"
            assert reason(SECRET, forged) == "bad signature", (i, c)


def test_another_key_and_other_payloads_are_refused() -> None:
    made = token()
    assert reason(b"x" * 32, made) == "bad signature"
    payload, signature = made.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    for key, value in (("r", "user:admin"), ("a", "other:critical:x:1"), ("e", NOW * 2),
                       ("s", "elbe"), ("n", "n-2")):
        changed = base64.urlsafe_b64encode(json.dumps({**claims, key: value}).encode()
                                           ).rstrip(b"=").decode()
        assert reason(SECRET, f"{changed}.{signature}") == "bad signature", key
    # The full 256-bit MAC, or a MAC without the domain tag, is not the signature either.
    for mac in (hmac.new(SECRET, b"bessmon/ack-link/v1\x00" + payload.encode(),
                         hashlib.sha256).digest(),
                hmac.new(SECRET, payload.encode(), hashlib.sha256).digest()[:16]):
        sig = base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
        assert reason(SECRET, f"{payload}.{sig}") in ("malformed", "bad signature")


def test_a_well_signed_payload_that_is_no_claim_is_malformed() -> None:
    """Only this service signs, but its reader still refuses what it did not write."""
    from contracts.ack_links import _b64, _sign

    for body in (b"not json", b"[]", b'{"s":"a"}', b'{"s":1,"a":"a","r":"r","e":5,"n":"n"}',
                 b'{"s":"a","a":"a","r":"r","e":"5","n":"n"}',
                 b'{"s":"a","a":"a","r":"r","e":true,"n":"n"}', b"\xff\xfe"):
        payload = _b64(body)
        assert reason(SECRET, f"{payload}.{_sign(SECRET, payload)}") == "malformed", body


@pytest.mark.parametrize("text", [
    "", ".", "abc", "abc.", ".abcdefghijklmnopqrstuv", "a.b.c", "a b.cdefghijklmnopqrstuvw",
    "eyJ.abcdefghijklmnopqrstu",  # a signature one character short
    "eyJ.abcdefghijklmnopqrstuvw",  # one too long
    "eyJ.abcdefghijklmnopqrstuv\n", "x" * 5000 + ".abcdefghijklmnopqrstuv",
])
def test_malformed_tokens(text: str) -> None:
    assert reason(SECRET, text) == "malformed"


@given(expires=st.integers(1, 2**53), before=st.integers(1, 10**9), after=st.integers(0, 10**9))
def test_expiry_boundary(expires: int, before: int, after: int) -> None:
    made = token(expires_ms=expires)
    assert verify_token(SECRET, made, expires - before).expires_ms == expires
    assert reason(SECRET, made, expires + after) == "expired"  # at its expiry: expired


def test_expiry_exactly() -> None:
    made = token(expires_ms=NOW)
    assert verify_token(SECRET, made, NOW - 1).nonce == "n-1"
    assert reason(SECRET, made, NOW) == "expired"


def test_a_tampered_expired_token_says_bad_signature_not_expired() -> None:
    """The signature is checked first: nothing of an unsigned payload is believed."""
    made = token(expires_ms=NOW - 1)
    assert reason(SECRET, made) == "expired"
    assert reason(SECRET, made[:-1] + ("A" if made[-1] != "A" else "B")) == "bad signature"


@pytest.mark.parametrize("changes", [
    {"site_id": ""}, {"alarm_id": ""}, {"recipient": ""}, {"nonce": ""},
    {"recipient": "r" * (MAX_FIELD_CHARS + 1)}, {"expires_ms": -1}, {"expires_ms": True},
    {"expires_ms": 1.5},
])
def test_make_token_refuses_bad_fields(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        token(**changes)


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        make_token(b"short", site_id="s", alarm_id="a", recipient="r", expires_ms=1, nonce="n")
    with pytest.raises(ValueError, match="16 bytes"):
        verify_token(b"", token(), NOW)


def test_ack_url() -> None:
    url = ack_url("https://bess.example.test/", SECRET, site_id="nordvik", alarm_id=ALARM,
                  recipient="user:ana", now_ms=NOW, nonce="fixed")
    prefix = "https://bess.example.test/api/v1/alarms/ack?token="
    assert url.startswith(prefix)
    claim = verify_token(SECRET, url.removeprefix(prefix), NOW)
    assert claim == AckClaim("nordvik", ALARM, "user:ana", NOW + DEFAULT_TTL_MS, "fixed")
    assert url == ack_url("https://bess.example.test/", SECRET, site_id="nordvik",
                          alarm_id=ALARM, recipient="user:ana", now_ms=NOW, nonce="fixed")
    # Without a nonce, each link gets its own (each is one-time on its own).
    drawn = {verify_token(SECRET, ack_url("http://h/", SECRET, site_id="s", alarm_id="a",
                                          recipient="r", now_ms=NOW, ttl_ms=5
                                          ).split("token=")[1], NOW).nonce for _ in range(20)}
    assert len(drawn) == 20 and all(len(n) >= 22 for n in drawn)
    with pytest.raises(ValueError, match="end with '/'"):
        ack_url("https://bess.example.test", SECRET, site_id="s", alarm_id="a",
                recipient="r", now_ms=NOW)
    with pytest.raises(ValueError, match="ttl_ms"):
        ack_url("http://h/", SECRET, site_id="s", alarm_id="a", recipient="r", now_ms=NOW,
                ttl_ms=0)


# -- the secret ----------------------------------------------------------------------------


def test_the_key_file_is_made_once_owner_only_and_reused(tmp_path: Path) -> None:
    settings_ = Settings(run_dir=tmp_path / "run")
    first = ack_secret(settings_)
    path = ack_key_path(settings_)
    assert path == tmp_path / "run" / "auth" / "ack-link.key"
    assert len(first) == KEY_BYTES and path.read_bytes() == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ack_secret(Settings(run_dir=tmp_path / "run")) == first  # another process: same
    assert [p.name for p in path.parent.iterdir()] == ["ack-link.key"]  # no temporary left
    assert ack_secret(Settings(run_dir=tmp_path / "other")) != first


def test_processes_racing_to_make_the_key_agree(tmp_path: Path) -> None:
    path = tmp_path / "auth" / "ack-link.key"
    got: list[bytes] = []
    barrier = threading.Barrier(8)

    def make() -> None:
        barrier.wait()
        got.append(load_or_create_key(path))

    threads = [threading.Thread(target=make) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 8 and len(set(got)) == 1 and got[0] == path.read_bytes()
    assert os.listdir(path.parent) == ["ack-link.key"]


def test_a_damaged_key_file_is_refused_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "auth" / "ack-link.key"
    path.parent.mkdir()
    path.write_bytes(b"short")
    with pytest.raises(ValueError, match="not an ack-link key"):
        load_or_create_key(path)
    assert path.read_bytes() == b"short"


def test_the_environment_secret_wins_and_is_checked(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BESSMON_ACK_SECRET", "s3cr3t-" + "x" * 30)
    settings_ = Settings(run_dir=tmp_path)
    assert ack_secret(settings_) == ("s3cr3t-" + "x" * 30).encode()
    assert not ack_key_path(settings_).exists()  # no key file made beside it
    for weak in ("changeme", "x" * 31):
        with pytest.raises(ValueError, match="BESSMON_ACK_SECRET") as refused:
            ack_secret(Settings(run_dir=tmp_path, ack_secret=weak))
        assert weak not in str(refused.value)
