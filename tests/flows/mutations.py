"""Mutations of a real telemetry record, as a misbehaving device or anyone able to write to
the topic would make them: random bytes, truncated or doubled JSON, wrong shapes, one field
replaced by a value of the wrong type or an impossible one, NaN/Infinity literals, control
characters, renamed keys, huge documents — each deterministic for its random generator."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

# What a field can be replaced by: the wrong type, impossible numbers, edge cases.
ODD_VALUES: tuple[Any, ...] = (
    None, "x", "", "12", -1e308, 1e308, 10**30, -(10**30), 2**63, 2**64, -1, 0, -0.0, True,
    False, [], {}, [1, 2], {"a": 1}, "\x00", "\udc80", "é" * 300, 10**400, 1.5, "NaN",
    "2026-10-12T08:00:00Z", 4_102_444_800_001, 946_684_799_999)
# Literals no JSON encoder writes but a hand-made payload may carry.
ODD_LITERALS = ("NaN", "Infinity", "-Infinity", "1e999", "-1e999", "00", "1.", ".5", "+1",
                "0x10", "null", "true", "[]", "{}", '"\\ud800"', "1" * 400)

Mutation = Callable[[random.Random, str], bytes]


def _leaves(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path] if path else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += _leaves(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _leaves(value, (*path, i))
    return out


def _dump(doc: Any) -> bytes:
    # surrogatepass: a lone surrogate goes out as the bytes a sloppy encoder would write
    return json.dumps(doc, allow_nan=True).encode("utf-8", "surrogatepass")


def _set(rng: random.Random, text: str, value_of: Callable[[random.Random], Any]) -> bytes:
    doc = json.loads(text)
    path = rng.choice(_leaves(doc))
    node = doc
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value_of(rng)
    return _dump(doc)


def replace_field(rng: random.Random, text: str) -> bytes:
    return _set(rng, text, lambda r: r.choice(ODD_VALUES))


def literal_field(rng: random.Random, text: str) -> bytes:
    marker = "\u2603MARK\u2603"
    doc = _set(rng, text, lambda r: marker).decode("utf-8", "surrogatepass")
    return doc.replace(json.dumps(marker), rng.choice(ODD_LITERALS)).encode()


def rename_key(rng: random.Random, text: str) -> bytes:
    doc = json.loads(text)
    paths = [p for p in _leaves(doc) if isinstance(p[-1], str)]
    path = rng.choice(paths)
    node = doc
    for step in path[:-1]:
        node = node[step]
    node[rng.choice(["", " ", path[-1].upper(), path[-1] + "_", "\x00", "ts", "id",
                     "device_id", "k" * 300])] = node.pop(path[-1])
    return _dump(doc)


def drop_key(rng: random.Random, text: str) -> bytes:
    doc = json.loads(text)
    paths = [p for p in _leaves(doc) if isinstance(p[-1], str)]
    path = rng.choice(paths)
    node = doc
    for step in path[:-1]:
        node = node[step]
    del node[path[-1]]
    return _dump(doc)


def random_bytes(rng: random.Random, text: str) -> bytes:
    return rng.randbytes(rng.randrange(0, 200))


def truncated(rng: random.Random, text: str) -> bytes:
    return text.encode()[: rng.randrange(0, len(text))]


def flipped_byte(rng: random.Random, text: str) -> bytes:
    """One byte changed — never a digit into a digit, which makes another valid record (a
    device cannot be told from one reporting other values)."""
    raw = bytearray(text.encode())
    digits = b"0123456789"
    position = rng.choice([i for i, b in enumerate(raw) if b not in digits])
    raw[position] = rng.choice([b for b in range(256) if b not in digits])
    return bytes(raw)


def as_array(rng: random.Random, text: str) -> bytes:
    return rng.choice([b"[" + text.encode() + b"]", b"[]", b"[1,2,3]", b'"text"', b"42",
                       b"null", b"true"])


def trailing(rng: random.Random, text: str) -> bytes:
    return text.encode() + rng.choice([b"\x00", b"\n{}", b",", b"}", b"\xff\xfe", b" x"])


def twice(rng: random.Random, text: str) -> bytes:
    return (text + rng.choice(["", "\n", ","]) + text).encode()


def nested(rng: random.Random, text: str) -> bytes:
    depth = rng.choice([100, 1000, 20_000])
    return ("[" * depth + "]" * depth).encode() if rng.random() < 0.5 else \
        ('{"a":' * depth + "1" + "}" * depth).encode()


def huge(rng: random.Random, text: str) -> bytes:
    doc = json.loads(text)
    choice = rng.randrange(4)
    if choice == 0:
        doc["device_id"] = "d" * rng.choice([201, 5000, 300_000])
    elif choice == 1:
        doc["assets"] = [{"id": doc["assets"][0]["id"], "tags": {}}] * 10_001  # too many
    elif choice == 2:
        doc["assets"][0]["tags"].update({f"t{i}": float(i) for i in range(12_000)})
    else:
        doc["padding"] = "p" * 400_000  # a record the broker still takes
    return _dump(doc)


def encoding(rng: random.Random, text: str) -> bytes:
    return rng.choice([text.encode("utf-16"), text.encode("utf-32"),
                       b"\xef\xbb\xbf" + text.encode(), text.encode("latin-1", "replace")
                       .replace(b'"', b"\xe9", 1)])


def duplicate_key(rng: random.Random, text: str) -> bytes:
    # JSON objects with a key twice: the last one wins in most parsers.
    return text.replace('"ts_ms":', '"ts_ms":"later","ts_ms":', 1).encode() \
        if rng.random() < 0.5 else text.replace('{"id":', '{"id":null,"id":', 1).encode()


MUTATIONS: tuple[Mutation, ...] = (
    replace_field, replace_field, replace_field, literal_field, literal_field, rename_key,
    drop_key, random_bytes, truncated, flipped_byte, as_array, trailing, twice, nested,
    huge, encoding, duplicate_key)


def mutate(rng: random.Random, text: str) -> bytes:
    """One mutation of `text` (a record's JSON), chosen by `rng`."""
    return rng.choice(MUTATIONS)(rng, text)
