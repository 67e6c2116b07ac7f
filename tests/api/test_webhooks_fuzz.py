"""Fuzzing `POST /api/v1/webhooks/{provider}`: thousands of mutated vendor deliveries — the real
payloads of tests/fixtures/ticketing with fields replaced by nulls, wrong types, huge or
impossible numbers, NaN/Infinity literals, control characters, lone surrogates, deep nesting,
impossible times, renamed or missing keys; truncated, doubled, re-encoded or random bodies;
bad, missing or stale signatures; wrong content types and unknown providers — sent to the
real app in-process, with the real Redis and the real broker.

The property: no request makes the app raise or answer 5xx; a refused one gets the 4xx its
first fault calls for (unknown provider 404, too large 413, unproven 401, then 415 / 400 /
422) in the API's error body; whatever is accepted is, on the tickets topic, a valid
`TicketEvent` of an asset of the fleet — one per "published" answer, and nothing else."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import math
import random
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from api.main import create_app
from connectors.kafka import ensure_topics, read_topic
from connectors.settings import Settings
from connectors.ticketing.config import TicketingSettings
from contracts.events import MAX_MS, MIN_DEVICE_MS, TicketEvent
from contracts.fleet import Fleet

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ticketing"
SECRETS = {"jira": "jira-fuzz-secret-0b7e51", "servicenow": "sn-fuzz-secret-4c19aa",
           "zendesk": "zendesk-fuzz-secret-93d2f0"}
MAX_BYTES = 64 * 1024
MAPPING = """\
servicenow:
  asset:
    field: cmdb_ci
    table:
      3f1c2a9e1b7d4c10a3b5e6f7a8b9c0d1: nordvik-u01
      5e7d0c4a2f1b4e3d9c8b7a6f5e4d3c2b: mesa-u02
"""
EXAMPLES = 100
REQUESTS_PER_EXAMPLE = 30  # EXAMPLES × REQUESTS_PER_EXAMPLE requests per run
JSON_TYPES = ("application/json", "application/json; charset=utf-8", "APPLICATION/JSON",
              "application/vnd.api+json")
OTHER_TYPES = ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; b=x",
               "application/xml", "text/json", "jsonp", "application/json²")
REFUSALS = {400, 401, 404, 413, 415, 422}

BASES: list[tuple[str, str]] = sorted(
    (path.name.split("_", 1)[0], path.read_text()) for path in FIXTURES.glob("*.json"))
NOW = datetime.now(UTC)


def _iso(moment: datetime, offset_h: int = 0) -> str:
    return moment.astimezone(timezone(timedelta(hours=offset_h))).isoformat(
        timespec="milliseconds")


# Times: valid ones (Jira/Zendesk ISO with an offset, ServiceNow UTC text) and impossible,
# out-of-range, offset-less, future and malformed ones.
TIMES: tuple[str, ...] = (
    _iso(NOW - timedelta(days=3), 1), _iso(NOW - timedelta(hours=5), -7),
    (NOW - timedelta(days=40)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    (NOW - timedelta(days=2)).strftime("%Y-%m-%d %H:%M:%S"),
    (NOW - timedelta(minutes=1)).strftime("%Y-%m-%d %H:%M:%S"),
    "1999-12-31T23:59:59Z", "1969-12-31T23:59:59.999Z", "1970-01-01T00:00:00Z",
    "2100-01-01T00:00:00.001Z", "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59",
    "2026-03-14T09:12:33", "2026-02-30T00:00:00Z", "2026-03-14T25:00:00Z",
    _iso(NOW + timedelta(days=400)), (NOW + timedelta(days=30)).strftime("%Y-%m-%d %H:%M:%S"),
    "1999-01-01 00:00:00", "2150-06-01 00:00:00", "2026-13-01 00:00:00",
    "2026-03-14 06:55:12\x00", "2026-03-14T09:12:33.123+0100\x00", "２０２６-03-14 06:55:12",
    "2026-03-14T09:12:33.123456789+01:00", "20260314T091233Z", "now", "0", "1773475953456")
STATUSES: tuple[Any, ...] = ("1", "2", "3", "6", "7", "8", "42", "new", "open", "pending",
                             "hold", "solved", "closed", "deleted", "Done", "To Do", "done",
                             "indeterminate", " NEW ", 1, 6, "\x00", "ＮＥＷ")
HOSTILE: tuple[Any, ...] = (
    None, "", " ", "x", "12", 0, -1, 1.5, 35436.0, 10**30, -(10**30), 2**63, 2**64, 10**300,
    -1e308, 1e308, 5e-324, True, False, [], {}, [1, "a"], [None], {"value": None},
    {"display_value": 5, "value": [1]}, {"value": {"value": "x"}}, "\x00", "a\x00b", "\x1b[31m",
    "line\nbreak", "\udc80", "tab\there", "é" * 300, "A" * 5000, "javascript:alert(1)",
    "https://[::1", "https://\x00/x", "http://" + "h" * 300 + "/rest/x", "ftp://x/rest/api/2",
    "//evil.example/rest/api/2/issue/1", "https://acme.example/rest/api/2/issue/1",
    "acme.zendesk.com/agent/tickets/35436", "https://acme.zendesk.com/api/v2/tickets/35436.json",
    "asset:nordvik-u01", "asset_mesa-u04", ["asset:elbe-u04", "asset:elbe-u04"],
    "asset:" + "u" * 300, "asset:\x01x", "asset:ghost", "asset_nordvik-u02 asset_ghost",
    "zen:event-type:ticket.created", "jira:issue_created", "jira:issue_updated", "incident",
    "problem")
# Written into the JSON text as they stand: values no encoder writes.
LITERALS: tuple[str, ...] = (
    "NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1" * 4400, "-0", '"\\ud800"',
    '"\\udfff\\ud800"', '"\\u0000"', "[" * 900 + "]" * 900, "[" * 3000 + "]" * 3000,
    '{"a":' * 600 + "1" + "}" * 600, "1.0e+400", "123456789012345678901234567890.5")


@dataclass(frozen=True)
class Delivery:
    provider: str  # the path's
    body: bytes
    headers: dict[str, str]
    proven: bool  # the signature (or token) proves this body for this provider
    json_type: bool  # no Content-Type, or a JSON one

    def describe(self) -> str:
        return (f"POST /webhooks/{self.provider} headers={self.headers} "
                f"body={self.body[:600]!r}{'…' if len(self.body) > 600 else ''}")


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path] if path else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, (*path, i))
    return out


def _parent(doc: Any, path: tuple[Any, ...]) -> Any:
    for step in path[:-1]:
        doc = doc[step]
    return doc


def _text(rng: random.Random) -> str:
    """Random text over every plane, lone surrogates and control characters included."""
    def char() -> str:
        low, high = rng.choice([(0, 0x20), (0x20, 0x7f), (0x80, 0x800), (0xd800, 0xe000),
                                (0xe000, 0x10000), (0x10000, 0x110000)])
        return chr(rng.randrange(low, high))
    return "".join(char() for _ in range(rng.choice([0, 1, 3, 10, 80, 400])))


def _valid_edit(rng: random.Random, provider: str, assets: list[str]) -> dict[tuple[str, ...],
                                                                              Any]:
    """Plausible values for the fields each vendor reads, so that many mutants are accepted
    and the accepting path is fuzzed too."""
    asset = rng.choice(assets)
    time_ = rng.choice(TIMES[:5])
    if provider == "jira":
        return {("issue", "fields", "labels"): [f"asset:{asset}", rng.choice(["pcs", "x"])],
                ("issue", "fields", "created"): time_,
                ("issue", "fields", "updated"): rng.choice(TIMES[:5]),
                ("issue", "fields", "resolutiondate"): rng.choice([None, *TIMES[:5]]),
                ("issue", "fields", "status", "statusCategory", "key"):
                    rng.choice(["new", "indeterminate", "done"]),
                ("issue", "key"): rng.choice(["BESS-1", f"BESS-{rng.randrange(10**6)}"]),
                ("webhookEvent",): rng.choice(["jira:issue_created", "jira:issue_updated"])}
    if provider == "servicenow":
        return {("cmdb_ci",): rng.choice([asset, {"value": "x", "display_value": asset}]),
                ("opened_at",): rng.choice(TIMES[3:5]),
                ("sys_updated_on",): rng.choice(TIMES[3:5]),
                ("resolved_at",): rng.choice(["", *TIMES[3:5]]),
                ("state",): rng.choice(["1", "2", "3", "6", "7", "8"]),
                ("number",): f"INC{rng.randrange(10**7):07d}"}
    return {("ticket", "tags"): rng.choice([[f"asset_{asset}"], f"asset_{asset} vip"]),
            ("ticket", "created_at"): time_,
            ("ticket", "updated_at"): rng.choice(TIMES[:3]),
            ("ticket", "status"): rng.choice(["new", "open", "pending", "hold", "solved"]),
            ("ticket", "id"): rng.choice([rng.randrange(1, 10**9), str(rng.randrange(10**9))])}


def _hostile(rng: random.Random) -> Any:
    """A hostile value, a copy of its own (a list or dict shared between documents would let
    later mutations make a document contain itself)."""
    return copy.deepcopy(rng.choice(HOSTILE))


def mutate_doc(rng: random.Random, provider: str, doc: Any, literals: dict[str, str],
               assets: list[str]) -> Any:
    """One structural mutation of a parsed payload (returns the new document)."""
    paths = _paths(doc)
    operation = rng.choice(["set", "set", "set", "text", "time", "status", "valid", "valid",
                            "valid", "delete", "rename", "add", "literal", "literal", "wrap"])
    if operation == "wrap" or not paths:
        return rng.choice([[doc], [], "text", 42, None, True, {"result": [doc]}, {}])
    path = rng.choice(paths)
    parent = _parent(doc, path)
    if operation == "valid":
        for where, value in _valid_edit(rng, provider, assets).items():
            if rng.random() < 0.6:
                try:
                    target = _parent(doc, where)
                except (KeyError, IndexError, TypeError):
                    continue
                if isinstance(target, dict):
                    target[where[-1]] = value
        return doc
    if operation == "delete":
        del parent[path[-1]]
    elif operation == "rename" and isinstance(path[-1], str):
        value = parent.pop(path[-1])
        parent[rng.choice(["", " ", path[-1].upper(), path[-1] + "_", "\x00", "id", "key",
                           "k" * 300, _text(rng)])] = value
    elif operation == "add":
        holder = parent if isinstance(parent, dict) else doc
        if isinstance(holder, dict):
            holder[rng.choice(["result", "ticket", "issue", "fields", _text(rng)])] = \
                _hostile(rng)
    elif operation == "literal":
        marker = f"\u2603{len(literals)}\u2603"
        literals[marker] = rng.choice(LITERALS)
        parent[path[-1]] = marker
    elif operation == "text":
        parent[path[-1]] = _text(rng)
    elif operation == "time":
        parent[path[-1]] = rng.choice(TIMES)
    elif operation == "status":
        parent[path[-1]] = rng.choice(STATUSES)
    else:
        parent[path[-1]] = _hostile(rng)
    return doc


def mutate_bytes(rng: random.Random, body: bytes) -> bytes:
    choice = rng.randrange(11)
    if choice == 0:
        return body[: rng.randrange(0, max(1, len(body)))]
    if choice == 1:
        return rng.randbytes(rng.randrange(0, 300))
    if choice == 2:
        return body + rng.choice([b"\x00", b"\n{}", b",", b"}", b"\xff\xfe", b" x", b"\n"])
    if choice == 3:
        raw = bytearray(body)
        for _ in range(rng.randrange(1, 4)):
            if raw:
                raw[rng.randrange(len(raw))] = rng.randrange(256)
        return bytes(raw)
    if choice == 4:
        return body + rng.choice([b"", b"\n", b","]) + body
    if choice == 5:
        return body.decode("utf-8", "surrogatepass").encode(
            rng.choice(["utf-16", "utf-32", "utf-16-le"]), "surrogatepass")
    if choice == 6:
        return b"\xef\xbb\xbf" + body
    if choice == 7:
        return rng.choice([b"", b" ", b"null", b"[]", b"{}", b'""', b"0", b"\x00" * 8])
    if choice == 8:
        return body.replace(b'"', b"\xe9", 1)
    if choice == 9:
        return b'{"pad": "' + b"p" * MAX_BYTES + b'"}'
    return b" " * rng.randrange(1, 4000) + body


def _signature(provider: str, secret: bytes, body: bytes, timestamp: str) -> dict[str, str]:
    if provider == "jira":
        return {"X-Hub-Signature": "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()}
    if provider == "servicenow":
        digest = hmac.new(secret, body, hashlib.sha256).digest()
        return {"X-Bessmon-Signature": "sha256=" + base64.b64encode(digest).decode()}
    digest = hmac.new(secret, timestamp.encode() + body, hashlib.sha256).digest()
    return {"X-Zendesk-Webhook-Signature": base64.b64encode(digest).decode(),
            "X-Zendesk-Webhook-Signature-Timestamp": timestamp}


def headers_for(rng: random.Random, provider: str, body: bytes,
                deliveries: list[str]) -> tuple[dict[str, str], bool, bool]:
    """(headers, proven, JSON content type) for a delivery of `body` to `provider`."""
    headers: dict[str, str] = {}
    roll = rng.random()
    json_type = True
    if roll < 0.8:
        headers["Content-Type"] = rng.choice(JSON_TYPES)
    elif roll < 0.9:
        headers["Content-Type"] = rng.choice(OTHER_TYPES)
        json_type = False
    if rng.random() < 0.3:
        headers[{"jira": "X-Atlassian-Webhook-Identifier",
                 "zendesk": "X-Zendesk-Webhook-Invocation-Id"}.get(
                     provider, "X-Bessmon-Delivery")] = rng.choice(
            [*deliveries, str(uuid.uuid4()), "ä" * 3, " "])
    if rng.random() < 0.02:  # the declared length: wrong, not a number, absurd
        headers["Content-Length"] = rng.choice(
            ["9" * 30, "9" * 5000, "²", "-1", " 12", "1e3", "0x10", str(len(body) + 7), "0",
             str(MAX_BYTES + 1)])
    if provider not in SECRETS:
        headers.update(_signature("jira", b"x", body, ""))
        return headers, False, json_type
    secret = SECRETS[provider].encode()
    now = datetime.now(UTC)
    timestamp = rng.choice([f"{now:%Y-%m-%dT%H:%M:%SZ}", str(int(now.timestamp())),
                            now.isoformat()])
    mode = rng.choices(["good", "token", "missing", "wrong", "garbage", "other_body", "stale",
                        "scheme", "empty"], weights=[70, 5, 5, 4, 4, 3, 3, 3, 3])[0]
    proven = mode == "good"
    if mode == "good":
        headers.update(_signature(provider, secret, body, timestamp))
    elif mode == "token":
        if provider == "servicenow":
            right = rng.random() < 0.7
            headers["X-Bessmon-Token"] = SECRETS[provider] if right else "guess" + _text(rng)[:0]
            proven = right
        else:  # Zendesk and Jira have no token: a signature header is what counts
            headers["X-Bessmon-Token"] = SECRETS[provider]
    elif mode == "wrong":
        headers.update(_signature(provider, b"not-the-secret", body, timestamp))
    elif mode == "other_body":
        headers.update(_signature(provider, secret, body + b" ", timestamp))
    elif mode == "stale":
        sent = now + rng.choice([timedelta(minutes=-10), timedelta(minutes=7),
                                 timedelta(days=-400)])
        stamp = rng.choice([f"{sent:%Y-%m-%dT%H:%M:%SZ}", "²³", "2026-13-01T00:00:00Z",
                            "9" * 400, "nan", f"{now:%Y-%m-%dT%H:%M:%S}", "-5", "0"])
        headers.update(_signature(provider, secret, body, stamp))
        proven = provider != "zendesk"
    elif mode in ("garbage", "scheme", "empty"):
        good = _signature(provider, secret, body, timestamp)
        name = next(iter(good))
        if mode == "garbage":
            value = rng.choice(["sha256=zz", "sha256=²", "sha256=" + "a" * 5000, "=",
                                "sha256=", "sha256=ä", good[name][:-4], "!!!"])
        elif mode == "scheme":
            value = "sha1=" + good[name].partition("=")[2] if "=" in good[name] else "x=y"
        else:
            value = ""
        good[name] = value
        headers.update(good)
    return headers, proven, json_type


def delivery(rng: random.Random, assets: list[str], deliveries: list[str]) -> Delivery:
    provider, base = rng.choice(BASES)
    literals: dict[str, str] = {}
    doc: Any = json.loads(base)
    for _ in range(rng.choice([0, 1, 1, 1, 2, 2, 3, 5])):
        doc = mutate_doc(rng, provider, doc, literals, assets)
    text = json.dumps(doc, allow_nan=True, ensure_ascii=rng.random() < 0.5)
    for marker, literal in literals.items():
        text = text.replace(json.dumps(marker, ensure_ascii=False), literal).replace(
            json.dumps(marker), literal)
    body = text.encode("utf-8", "surrogatepass")
    if rng.random() < 0.2:
        body = mutate_bytes(rng, body)
    roll = rng.random()
    path = provider if roll < 0.9 else rng.choice(
        [*SECRETS, "freshdesk", "JIRA", "jira ", "zendesk%00", "a" * 300, "%C3%A9", "..%2F"])
    headers, proven, json_type = headers_for(rng, path, body, deliveries)
    return Delivery(path, body, headers, proven, json_type)


@pytest.fixture
def fuzzed(redis_url: str, redis_client: redis.Redis, kafka_bootstrap: str,
           accounts: tuple[Path, Path], tmp_path: Path) -> Iterator[tuple[TestClient, str]]:
    """The app with every provider's secret and the test mapping, publishing to a topic of
    its own; rate limits out of the way (the routes judge, not the limiter)."""
    for key in redis_client.scan_iter("bessmon:*"):
        redis_client.delete(key)
    topic = f"t-{uuid.uuid4().hex[:8]}.tickets.raw"
    ensure_topics(kafka_bootstrap, [topic], partitions=2)
    mapping = tmp_path / "ticketing.yaml"
    mapping.write_text(MAPPING)
    users, key = accounts
    app = create_app(Settings(REDIS_URL=redis_url, KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
                              topic_tickets=topic, run_dir=tmp_path / "run", users_file=users,
                              jwt_key_file=key, rate_limit_per_minute=1_000_000))
    app.state.ticketing = TicketingSettings(
        webhook_secret_jira=SecretStr(SECRETS["jira"]),
        webhook_secret_servicenow=SecretStr(SECRETS["servicenow"]),
        webhook_secret_zendesk=SecretStr(SECRETS["zendesk"]),
        ticketing_file=mapping, webhook_max_bytes=MAX_BYTES)
    with TestClient(app) as client:
        yield client, topic


def check(sent: Delivery, status: int, answer: Any, fleet: Fleet) -> str | None:
    """The answer is the one the delivery's first fault calls for; the key of a published
    ticket (None otherwise)."""
    where = sent.describe()
    assert status < 500, f"{status} {answer} for {where}"
    declared = sent.headers.get("Content-Length")
    if status >= 400:
        assert isinstance(answer, dict) and set(answer) <= {"detail", "status", "errors"}, \
            f"{status}: not the API's error body: {answer} for {where}"
        assert answer["status"] == status and isinstance(answer["detail"], str) and \
            answer["detail"].strip(), f"{answer} for {where}"
        assert status in REFUSALS, f"{status} {answer} for {where}"
    if declared is not None and not (declared.isascii() and declared.isdigit()):
        assert status == 400 and "Content-Length" in answer["detail"], \
            f"{status} {answer} for {where}"
        return None
    if declared is not None and (len(declared) > 18
                                 or int(declared) > Settings().max_request_bytes):
        assert status == 413, f"{status} {answer} for {where}"
        return None
    if sent.provider not in SECRETS:
        assert status == 404, f"{status} {answer} for {where}"
        return None
    if len(sent.body) > MAX_BYTES or int(declared or 0) > MAX_BYTES:
        assert status == 413, f"{status} {answer} for {where}"
        return None
    if not sent.proven:
        assert status == 401, f"{status} {answer} for {where}"
        return None
    if not sent.json_type:
        assert status == 415, f"{status} {answer} for {where}"
        return None
    try:
        json.loads(sent.body)
    except (ValueError, RecursionError):
        assert status == 400 and answer["detail"] == "the body is not JSON", \
            f"{status} {answer} for {where}"
        return None
    assert status in (202, 400, 422), f"{status} {answer} for {where}"
    if status != 202:
        return None
    assert set(answer) == {"status", "key", "asset_id", "reason"}, f"{answer} for {where}"
    assert answer["status"] in ("published", "duplicate", "ignored"), f"{answer} for {where}"
    if answer["status"] == "ignored":
        return None
    assert answer["key"].startswith(f"{sent.provider}:"), f"{answer} for {where}"
    assert answer["asset_id"] in fleet.assets, f"{answer} for {where}"
    return str(answer["key"]) if answer["status"] == "published" else None


def test_mutated_deliveries_never_break_the_webhooks(
        fuzzed: tuple[TestClient, str], kafka_bootstrap: str, example_fleet: Fleet) -> None:
    client, topic = fuzzed
    units = sorted(a for a, asset in example_fleet.assets.items() if asset.unit_id is not None)
    assets = [*units[:40], "ghost", "nordvik", "NORDVIK-U01"]
    deliveries = [str(uuid.uuid4()) for _ in range(5)]
    published: Counter[str] = Counter()
    answers: Counter[int] = Counter()
    started = time.monotonic()

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.integers(0, 2**64))
    def run(seed: int) -> None:
        rng = random.Random(seed)  # a seed, not Hypothesis' own random: its draws favour
        # the first of every choice, and a fuzzer wants the weights as written
        for _ in range(REQUESTS_PER_EXAMPLE):
            sent = delivery(rng, assets, deliveries)
            response = client.post(f"/api/v1/webhooks/{sent.provider}", content=sent.body,
                                   headers={k: v.encode("latin-1")
                                            for k, v in sent.headers.items()})
            answers[response.status_code] += 1
            key = check(sent, response.status_code, response.json(), example_fleet)
            if key is not None:
                published[key] += 1

    run()
    sent_count = sum(answers.values())
    assert sent_count >= 3000
    messages = read_topic(kafka_bootstrap, topic, timeout_s=30, to_end=True)
    on_topic: Counter[str] = Counter()
    for message in messages:
        event = TicketEvent.model_validate_json(message.value() or b"")
        key = (message.key() or b"").decode()
        assert key == f"{event.provider}:{event.ticket_id}"
        assert event.asset_id in example_fleet.assets
        times = [event.opened_ms, event.updated_ms, event.resolved_ms or event.opened_ms]
        assert all(MIN_DEVICE_MS <= t <= MAX_MS and not math.isnan(t) for t in times)
        assert event.resolved_ms is None or event.resolved_ms >= event.opened_ms
        on_topic[key] += 1
    assert on_topic == published
    print(f"\n{sent_count} mutated deliveries in {time.monotonic() - started:.1f} s: "
          f"{dict(sorted(answers.items()))}, {sum(published.values())} published")


def _edited(name: str, path: tuple[str, ...], value: Any) -> bytes:
    doc = json.loads((FIXTURES / name).read_text())
    _parent(doc, path)[path[-1]] = value
    return json.dumps(doc).encode()


def _with_literal(name: str, path: tuple[str, ...], literal: str) -> bytes:
    return _edited(name, path, "\u2603").replace(b'"\\u2603"', literal.encode())


SOON = NOW + timedelta(days=1)
# What the fuzzing found, each answered precisely now (it was a 500, or accepted).
FOUND: list[tuple[str, bytes, dict[str, str], int, str]] = [
    ("zendesk", _edited("zendesk_ticket_created.json", ("ticket", "url"), "https://[::1"), {},
     400, "ticket.url is not a URL: 'https://[::1'"),
    ("zendesk", _edited("zendesk_ticket_created.json", ("ticket", "url"), "a\tb"), {},
     400, "ticket.url contains a control character ('\\t' at 1)"),
    ("jira", _edited("jira_issue_created.json", ("issue", "self"),
                     "javascript:alert(1)//rest/api/2/issue/1"), {},
     400, "issue.self is not an absolute http(s) URL: 'javascript:alert(1)//browse/BESS-17'"),
    ("servicenow", _with_literal("servicenow_incident_new.json", ("cmdb_ci",),
                                 "[" * 900 + "]" * 900), {},
     422, "ticket servicenow:INC0010023 names no asset"),
    ("zendesk", _with_literal("zendesk_ticket_created.json", ("ticket", "id"), "NaN"), {},
     400, "ticket.id must be a finite number, not nan"),
    ("zendesk", _edited("zendesk_ticket_created.json", ("ticket", "id"), 10**30), {},
     400, "ticket.id 1000000000000000000000000000000 is out of range (more than 64 bits)"),
    ("jira", _edited("jira_issue_created.json", ("issue", "fields", "created"),
                     f"{SOON:%Y-%m-%dT%H:%M:%S}+00:00"), {},
     400, f"issue.fields.created {SOON:%Y-%m-%dT%H:%M:%S}Z is in the future"),
    ("jira", _edited("jira_issue_created.json", ("issue", "fields", "created"),
                     "1999-12-31T23:59:59Z"), {},
     400, "issue.fields.created '1999-12-31T23:59:59Z' is outside 2000-01-01..2100-01-01"),
    ("servicenow", _edited("servicenow_incident_new.json", ("sys_updated_on",),
                           "2026-03-14 06:55:11"), {},
     400, "sys_updated_on 2026-03-14T06:55:11Z is before opened_at 2026-03-14T06:55:12Z"),
    ("servicenow", _edited("servicenow_incident_new.json", ("priority",), "\x00"), {},
     400, "priority contains a control character ('\\x00' at 0)"),
    ("zendesk", _with_literal("zendesk_ticket_created.json", ("ticket", "subject"),
                              '"unit \\ud800 down"'), {},
     400, "ticket.subject is not valid Unicode: a lone surrogate ('\\ud800' at 5)"),
    ("jira", _edited("jira_issue_created.json", ("issue", "fields", "labels"),
                     ["asset:" + "u" * 300]), {},
     400, "the asset (labels or asset field) 'uuuu"),
    ("jira", (FIXTURES / "jira_issue_created.json").read_bytes(),
     {"Content-Type": "application/x-www-form-urlencoded"},
     415, "Content-Type 'application/x-www-form-urlencoded' is not JSON"),
    ("jira", (FIXTURES / "jira_issue_created.json").read_bytes(),
     {"Content-Length": "9" * 5000}, 413, "request body over"),
    ("jira", (FIXTURES / "jira_issue_created.json").read_bytes(),
     {"Content-Length": "²"}, 400, "invalid Content-Length header"),
]


def test_what_the_fuzzing_found_is_refused_precisely(fuzzed: tuple[TestClient, str],
                                                     kafka_bootstrap: str) -> None:
    client, topic = fuzzed
    for provider, body, extra, status, detail in FOUND:
        headers = {"Content-Type": "application/json",
                   **_signature(provider, SECRETS[provider].encode(), body,
                                f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}"), **extra}
        response = client.post(f"/api/v1/webhooks/{provider}", content=body,
                               headers={k: v.encode("latin-1") for k, v in headers.items()})
        assert (response.status_code, response.json()["status"]) == (status, status), \
            (provider, extra, response.json())
        assert detail in response.json()["detail"], (provider, extra, response.json())
    assert read_topic(kafka_bootstrap, topic, timeout_s=5, to_end=True) == []
