"""The dashboard's generated types (web/src/generated/, infra/gen_types.py) match the server's
models: a model changed without `python -m infra.gen_types` fails here."""

from __future__ import annotations

import json

import pytest

from infra import gen_types


def test_the_committed_schema_is_the_models_schema() -> None:
    committed = json.loads(gen_types.SCHEMA.read_text(encoding="utf-8"))
    assert committed == gen_types.schema(), (
        f"{gen_types.SCHEMA} is stale: run `python -m infra.gen_types`")


@pytest.mark.skipif(not gen_types.JSON2TS.exists(),
                    reason="web/node_modules is not installed (`npm ci` in web/)")
def test_the_committed_typescript_is_generated_from_it() -> None:
    assert gen_types.main(["--check"]) == 0, "run `python -m infra.gen_types`"


def test_every_live_payload_has_a_generated_type() -> None:
    text = gen_types.TYPES.read_text(encoding="utf-8")
    for name in ("UnitLatest", "AssetLive", "AlarmMessage", "BreachMessage",
                 "HandlingMessage", "ServerFrame", "SiteAvailability", "Alert"):
        assert f"export type {name} " in text or f"export interface {name} " in text, name
