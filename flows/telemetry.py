"""Decoding raw telemetry records: every record becomes a sample or a dead letter."""

from __future__ import annotations

from pydantic import ValidationError

from contracts.events import DeadLetter, TelemetrySample


def as_text(raw: bytes | None) -> str:
    return "" if raw is None else raw.decode("utf-8", errors="backslashreplace")


def decode_sample(
    key: bytes | None,
    value: bytes | None,
    *,
    topic: str | None,
    partition: int | None,
    offset: int | None,
    now_ms: int,
) -> TelemetrySample | DeadLetter:
    """Parse one `bess.telemetry.raw` record; anything that is not a valid sample is kept
    whole in a `DeadLetter` that says why."""

    def reject(reason: str, detail: str) -> DeadLetter:
        return DeadLetter(source="flows.telemetry", reason=reason, detail=detail[:2000],
                          ts_ms=now_ms, key=as_text(key) or None, topic=topic,
                          partition=partition, offset=offset, payload=as_text(value))

    if not value:
        return reject("empty", "record has no value")
    try:
        return TelemetrySample.model_validate_json(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            return reject("malformed_json", first["msg"])
        where = ".".join(str(p) for p in first["loc"])
        return reject("schema", f"{where}: {first['msg']} ({exc.error_count()} problem(s))")
