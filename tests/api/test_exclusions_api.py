"""Exclusion windows through the API on the real parts (docs/exclusions.md): the API's SQLite
store and audit log, evidence files on disk, the history store the compliance reads, the
example fleet and its LTSA-NORDVIK contract. Four eyes per role, evidence by hash, every step
audited, the caller's scope, precise 4xx; an approval's revision of a closed period equals
`bessmon contracts evaluate` with that window (run as a command); tickets propose windows.

LTSA-NORDVIK starts 2025-10-01 (Europe/Stockholm): contract year 2 runs from 2026-10-01, its
guarantee is 98.0 %, LD 20,000 EUR per %, bonus 5,000 EUR per % over 99 %. The history below
has every unit available from the contract's start to 2026-12-01 but for nordvik-u01 and
nordvik-u02, unavailable 2026-10-10 00:00 to 2026-10-15 00:00 local (120 h each) — a grid
outage the status did not know."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.context import ApiContext
from api.main import create_app
from api.routes.exclusions import propose_from_ticket
from connectors.api_store import ExclusionStore, approved_windows
from connectors.audit import AuditLog, verify
from connectors.evidence import MAX_EVIDENCE_BYTES
from connectors.history import StatusIntervalRow
from connectors.settings import EXAMPLE_CONTRACTS, EXAMPLE_FLEET, Settings
from connectors.ticketing.config import TicketingConfig, TicketingSettings
from connectors.ticketing.mapping import TicketMapping
from contracts.events import TicketEvent
from contracts.intervals import ExclusionWindow
from tests.api.accounts import auth

TZ = ZoneInfo("Europe/Stockholm")
BASE = "/api/v1/contracts/LTSA-NORDVIK/exclusions"
REPO = Path(__file__).resolve().parents[2]


def ms(text: str) -> int:
    """`2026-10-10 00:00` in Nordvik's time → epoch ms."""
    return int(datetime.fromisoformat(text).replace(tzinfo=TZ).timestamp() * 1000)


OUTAGE = (ms("2026-10-10 00:00"), ms("2026-10-15 00:00"))
WINDOW = {"scope_id": "nordvik", "start_ms": OUTAGE[0], "end_ms": OUTAGE[1],
          "category": "grid_outage", "reason": "Svenska kraftnät 130 kV line trip"}


@pytest.fixture
def client(api_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(api_settings)) as c:
        yield c


def ctx_of(client: TestClient) -> ApiContext:
    ctx: ApiContext = client.app.state.ctx  # type: ignore[attr-defined]
    return ctx


@pytest.fixture
def keys(client: TestClient) -> dict[str, dict[str, str]]:
    """Bearer headers of API keys: a second contract manager (`bob`), and one of the
    Elbe customer only (no sight of Nordvik)."""
    ctx = ctx_of(client)
    now = int(time.time() * 1000)
    out = {}
    for name, role, customers in (("bob", "contract_manager", ["*"]),
                                  ("elbe-cm", "contract_manager", ["Elbe Netz GmbH"])):
        _, text = ctx.auth.api_keys.create(name, role, customers, ["*"],  # type: ignore[arg-type]
                                           created_by="setup", now_ms=now)
        out[name] = {"Authorization": f"Bearer {text}"}
    return out


def audit_of(client: TestClient, action_prefix: str = "exclusion.") -> list[Any]:
    return [e for e in AuditLog(ctx_of(client).store).entries(limit=10_000)
            if e.action.startswith(action_prefix)]


def state_of(client: TestClient, n: int) -> str:
    record = ExclusionStore(ctx_of(client).store).get("LTSA-NORDVIK", n)
    assert record is not None
    return record.exclusion.state


def propose(client: TestClient, headers: dict[str, str], **changes: Any) -> Any:
    answer = client.post(BASE, json={**WINDOW, **changes}, headers=headers)
    assert answer.status_code == 201, answer.text
    return answer.json()


# -- the workflow and four eyes ----------------------------------------------------------------

def test_a_service_manager_proposes_and_a_contract_manager_approves(
        client: TestClient, api_settings: Settings) -> None:
    created = propose(client, auth(api_settings, "service_manager"))
    assert (created["state"], created["proposed_by"], created["scope_id"]) == (
        "proposed", "service_manager", "nordvik")
    assert (created["start_ms"], created["end_ms"], created["decided_by"]) == (
        *OUTAGE, None)
    n = created["id"]
    assert approved_windows(ctx_of(client).store, "LTSA-NORDVIK") == []
    # a service manager cannot decide (403 before any lookup, audited as refused)
    refused = client.post(f"{BASE}/{n}/approve", headers=auth(api_settings, "service_manager"))
    assert refused.json() == {"detail": "role service_manager may not exclusions.decide",
                              "status": 403}
    approved = client.post(f"{BASE}/{n}/approve", json={"comment": "grid operator's notice"},
                           headers=auth(api_settings, "contract_manager"))
    assert approved.status_code == 200, approved.text
    body = approved.json()
    assert (body["state"], body["decided_by"], body["decision_comment"]) == (
        "approved", "contract_manager", "grid operator's notice")
    assert approved_windows(ctx_of(client).store, "LTSA-NORDVIK") == [
        ExclusionWindow("nordvik", OUTAGE[0] * 1000, OUTAGE[1] * 1000, "grid_outage")]
    trail = [(e.actor, e.action, e.target, e.outcome) for e in audit_of(client)]
    assert trail == [
        ("service_manager", "exclusion.propose", f"LTSA-NORDVIK#{n}", "ok"),
        ("service_manager", "exclusion.approve", f"LTSA-NORDVIK#{n}", "refused"),
        ("contract_manager", "exclusion.approve", f"LTSA-NORDVIK#{n}", "ok")]
    assert audit_of(client)[1].details == {"why": "role service_manager may not "
                                                  "exclusions.decide"}
    assert verify(ctx_of(client).store).ok
    # decided once: a second decision conflicts
    again = client.post(f"{BASE}/{n}/reject", json={"comment": "no"},
                        headers=auth(api_settings, "admin"))
    assert again.status_code == 409
    assert again.json()["detail"] == (f"exclusion #{n} is approved; only a proposed "
                                      "exclusion can be rejected")


def test_four_eyes_the_proposer_cannot_decide(client: TestClient, api_settings: Settings,
                                              keys: dict[str, dict[str, str]]) -> None:
    cm = auth(api_settings, "contract_manager")
    n = propose(client, cm)["id"]
    for action in ("approve", "reject"):
        own = client.post(f"{BASE}/{n}/{action}", json={"comment": "mine"}, headers=cm)
        assert own.status_code == 403
        assert own.json()["detail"] == (f"the proposer cannot {action} their own exclusion "
                                        "(four eyes: another contract manager decides)")
    refusals = [e for e in audit_of(client) if e.outcome == "refused"]
    assert [(e.actor, e.action) for e in refusals] == [
        ("contract_manager", "exclusion.approve"), ("contract_manager", "exclusion.reject")]
    assert state_of(client, n) == "proposed"
    # another contract manager (an API key) approves
    other = client.post(f"{BASE}/{n}/approve", headers=keys["bob"])
    assert other.status_code == 200, other.text
    assert other.json()["decided_by"] == "bob"


@pytest.mark.parametrize(("role", "propose_status", "decide_status"), [
    ("viewer", 403, 403), ("engineer", 403, 403), ("service_manager", 201, 403),
    ("contract_manager", 201, 200), ("admin", 201, 200)])
def test_each_role(client: TestClient, api_settings: Settings,
                   keys: dict[str, dict[str, str]], role: str, propose_status: int,
                   decide_status: int) -> None:
    headers = auth(api_settings, role)
    answer = client.post(BASE, json=WINDOW, headers=headers)
    assert answer.status_code == propose_status, answer.text
    n = propose(client, keys["bob"])["id"]  # someone else's proposal
    decided = client.post(f"{BASE}/{n}/reject", json={"comment": "evidence is thin"},
                          headers=headers)
    assert decided.status_code == decide_status, decided.text
    if decide_status == 200:
        assert decided.json()["state"] == "rejected"
    # every role that may read contracts sees the list
    listed = client.get(BASE, headers=headers)
    assert listed.status_code == (403 if role in ("viewer", "engineer") else 200)


def test_withdraw_is_the_proposers(client: TestClient, api_settings: Settings,
                                   keys: dict[str, dict[str, str]]) -> None:
    sm = auth(api_settings, "service_manager")
    n = propose(client, sm)["id"]
    by_other = client.post(f"{BASE}/{n}/withdraw", headers=keys["bob"])
    assert (by_other.status_code, by_other.json()["detail"]) == (
        403, f"only the proposer (service_manager) can withdraw exclusion #{n}")
    withdrawn = client.post(f"{BASE}/{n}/withdraw", headers=sm)
    assert withdrawn.status_code == 200 and withdrawn.json()["state"] == "withdrawn"
    late = client.post(f"{BASE}/{n}/approve", headers=keys["bob"])
    assert late.status_code == 409
    assert [e.action for e in audit_of(client) if e.outcome == "ok"] == [
        "exclusion.propose", "exclusion.withdraw"]


def test_revoke_takes_an_approved_window_out(client: TestClient, api_settings: Settings,
                                             keys: dict[str, dict[str, str]]) -> None:
    n = propose(client, auth(api_settings, "service_manager"))["id"]
    assert client.post(f"{BASE}/{n}/approve", headers=keys["bob"]).status_code == 200
    no_reason = client.post(f"{BASE}/{n}/revoke", json={}, headers=keys["bob"])
    assert no_reason.status_code == 422  # a revocation says why
    revoked = client.post(f"{BASE}/{n}/revoke", json={"comment": "duplicate of #1"},
                          headers=auth(api_settings, "contract_manager"))
    assert revoked.status_code == 200, revoked.text
    assert (revoked.json()["state"], revoked.json()["revoked_by"]) == (
        "revoked", "contract_manager")
    assert approved_windows(ctx_of(client).store, "LTSA-NORDVIK") == []
    listed = client.get(f"{BASE}?state=revoked", headers=keys["bob"]).json()
    assert [e["id"] for e in listed] == [n]
    assert client.get(f"{BASE}?state=approved", headers=keys["bob"]).json() == []


# -- bad input and scope ----------------------------------------------------------------------

@pytest.mark.parametrize(("changes", "loc", "words"), [
    ({"scope_id": "elbe-u01"}, "body.scope_id", "'elbe-u01' is neither site 'nordvik'"),
    ({"scope_id": "nordvik-u01-i1"}, "body.scope_id", "neither site"),
    ({"end_ms": OUTAGE[0]}, "body.end_ms", "must be after start"),
    ({"start_ms": ms("2025-09-30 23:00")}, "body.start_ms", "outside the contract term"),
    ({"end_ms": ms("2045-10-02 00:00")}, "body.end_ms", "outside the contract term"),
    ({"category": "fault"}, "body.category", "'fault' is not a category of LTSA-NORDVIK; "
     "one of grid_outage, force_majeure, customer_request, scheduled_maintenance"),
    ({"reason": ""}, "body.reason", ""),
    ({"reason": "a\x00b"}, "body.reason", ""),
    ({"start_ms": -1}, "body.start_ms", ""),
    ({"extra": 1}, "body.extra", ""),
])
def test_bad_proposals_name_the_field(client: TestClient, api_settings: Settings,
                                      changes: dict[str, Any], loc: str, words: str) -> None:
    answer = client.post(BASE, json={**WINDOW, **changes},
                         headers=auth(api_settings, "contract_manager"))
    assert answer.status_code == 422, answer.text
    errors = answer.json()["errors"]
    assert errors[0]["loc"] == loc
    assert words in errors[0]["msg"]
    assert ExclusionStore(ctx_of(client).store).of_contract("LTSA-NORDVIK") == []
    assert audit_of(client) == []


def test_unknown_things_are_404(client: TestClient, api_settings: Settings) -> None:
    cm = auth(api_settings, "contract_manager")
    assert client.post("/api/v1/contracts/NOPE/exclusions", json=WINDOW,
                       headers=cm).status_code == 404
    assert client.post(f"{BASE}/999/approve", headers=cm).json() == {
        "detail": "no exclusion #999 of contract LTSA-NORDVIK", "status": 404}
    assert client.get(f"{BASE}?state=maybe", headers=cm).status_code == 422
    assert client.post(f"{BASE}/0/approve", headers=cm).status_code == 422


def test_scope_another_customers_contract_is_not_there(
        client: TestClient, api_settings: Settings, keys: dict[str, dict[str, str]]) -> None:
    n = propose(client, auth(api_settings, "nordvik-manager"))["id"]
    elbe = keys["elbe-cm"]
    for answer in (client.get(BASE, headers=elbe),
                   client.post(BASE, json=WINDOW, headers=elbe),
                   client.post(f"{BASE}/{n}/approve", headers=elbe),
                   client.post(f"{BASE}/{n}/reject", json={"comment": "x"}, headers=elbe),
                   client.get(f"{BASE}/{n}/evidence/{'0' * 64}", headers=elbe)):
        assert answer.json() == {"detail": "no contract 'LTSA-NORDVIK'", "status": 404}
    # the Elbe contract manager sees their own contract, and none of Nordvik's windows
    assert client.get("/api/v1/contracts/LTSA-ELBE/exclusions", headers=elbe).json() == []
    # and a Nordvik-only manager cannot reach Elbe's
    assert client.post("/api/v1/contracts/LTSA-ELBE/exclusions",
                       json={**WINDOW, "scope_id": "elbe"},
                       headers=auth(api_settings, "nordvik-manager")).status_code == 404
    assert state_of(client, n) == "proposed"


# -- evidence ----------------------------------------------------------------------------------

def upload(client: TestClient, headers: dict[str, str], n: int, name: str, data: bytes,
           content_type: str = "application/pdf") -> Any:
    return client.post(f"{BASE}/{n}/evidence", files={"file": (name, data, content_type)},
                       headers=headers)


def test_evidence_is_stored_by_its_hash_and_served_as_an_attachment(
        client: TestClient, api_settings: Settings, keys: dict[str, dict[str, str]]) -> None:
    sm = auth(api_settings, "service_manager")
    n = propose(client, sm)["id"]
    data = b"%PDF-1.7 grid operator notice " + bytes(range(256)) * 40
    sha = hashlib.sha256(data).hexdigest()
    answer = upload(client, sm, n, "../../etc/notice<b>; Å.pdf", data)
    assert answer.status_code == 201, answer.text
    assert answer.json() | {"uploaded_ms": 0} == {
        "sha256": sha, "name": "notice_b_ A.pdf", "size": len(data),
        "content_type": "application/pdf", "uploaded_by": "service_manager",
        "uploaded_ms": 0}
    stored = api_settings.run_dir / "evidence" / sha
    assert stored.read_bytes() == data
    # the same file again: stored once, attached once
    assert upload(client, keys["bob"], n, "copy.pdf", data).status_code == 201
    listed = client.get(BASE, headers=keys["bob"]).json()[0]["evidence"]
    assert [e["sha256"] for e in listed] == [sha]
    got = client.get(f"{BASE}/{n}/evidence/{sha}", headers=auth(api_settings, "admin"))
    assert got.status_code == 200
    assert got.content == data
    assert got.headers["content-disposition"] == 'attachment; filename="notice_b_ A.pdf"'
    assert "nosniff" in got.headers["x-content-type-options"]
    assert hashlib.sha256(got.content).hexdigest() == sha
    # a hash not attached to this exclusion, or no hash at all
    other = propose(client, sm)["id"]
    assert client.get(f"{BASE}/{other}/evidence/{sha}", headers=sm).status_code == 404
    assert client.get(f"{BASE}/{n}/evidence/..%2F..%2Fapi.db", headers=sm).status_code == 404
    # a viewer may not upload; nobody may once the exclusion is decided
    assert upload(client, auth(api_settings, "viewer"), n, "x.pdf", b"x").status_code == 403
    assert client.post(f"{BASE}/{n}/approve", headers=keys["bob"]).status_code == 200
    late = upload(client, sm, n, "late.pdf", b"later")
    assert (late.status_code, late.json()["detail"]) == (
        409, f"exclusion #{n} is approved: evidence can be added only while it is proposed")
    actions = [(e.action, e.outcome) for e in audit_of(client)]
    assert actions.count(("exclusion.evidence", "ok")) == 2
    assert ("exclusion.evidence_download", "ok") in actions
    refused = [(e.actor, e.details["why"]) for e in audit_of(client)
               if (e.action, e.outcome) == ("exclusion.evidence", "refused")]
    assert refused == [("viewer", "role viewer may not exclusions.propose"),
                       ("service_manager", f"exclusion #{n} is approved: evidence can be "
                        "added only while it is proposed")]
    assert verify(ctx_of(client).store).ok


def test_evidence_over_the_limit_is_refused(client: TestClient, api_settings: Settings,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    sm = auth(api_settings, "service_manager")
    n = propose(client, sm)["id"]
    # the real limit, refused by the declared length before the body is read
    huge = upload(client, sm, n, "big.bin", b"\0" * (MAX_EVIDENCE_BYTES + 70_000))
    assert huge.status_code == 413
    # a file over the limit within the multipart allowance: refused while it streams in
    monkeypatch.setattr("api.routes.exclusions.MAX_EVIDENCE_BYTES", 1000)
    over = upload(client, sm, n, "over.bin", b"x" * 1001)
    assert over.status_code == 413
    assert upload(client, sm, n, "fits.bin", b"x" * 1000).status_code == 201
    kept = [p.name for p in (api_settings.run_dir / "evidence").iterdir()]
    assert kept == [hashlib.sha256(b"x" * 1000).hexdigest()]  # no partial copies left
    no_file = client.post(f"{BASE}/{n}/evidence", data={"other": "x"}, headers=sm,
                          files={"note": ("a.txt", b"a", "text/plain")})
    assert no_file.status_code == 422
    not_multipart = client.post(f"{BASE}/{n}/evidence", content=b"raw",
                                headers={**sm, "Content-Type": "application/pdf"})
    assert not_multipart.status_code == 415


# -- approved windows in the compliance, and the revision of a closed period ----------------

def write_history(ctx: ApiContext) -> list[tuple[str, int, int, str]]:
    """Every Nordvik unit available from the contract's start to 2026-12-01, but u01 and u02
    down 120 h in October 2026; the rows as (asset, start ms, end ms, state)."""
    start, end = ms("2025-10-01 00:00"), ms("2026-12-01 00:00")
    rows: list[tuple[str, int, int, str]] = []
    for unit in ctx.fleet.site("nordvik").units:
        if unit.id in ("nordvik-u01", "nordvik-u02"):
            rows += [(unit.id, start, OUTAGE[0], "available"),
                     (unit.id, OUTAGE[0], OUTAGE[1], "unavailable"),
                     (unit.id, OUTAGE[1], end, "available")]
        else:
            rows.append((unit.id, start, end, "available"))
    ctx.history.write_status([StatusIntervalRow(a, "nordvik", s, e, st)  # type: ignore[arg-type]
                              for a, s, e, st in rows])
    return rows


def cli_evaluate(tmp_path: Path, rows: list[tuple[str, int, int, str]],
                 windows: list[dict[str, Any]], period: str) -> Any:
    """`bessmon contracts evaluate` on the same status and windows, as a command."""
    def iso(value_ms: int) -> str:
        return datetime.fromtimestamp(value_ms / 1000, UTC).isoformat()

    status = io.StringIO()
    writer = csv.writer(status)
    writer.writerow(["asset_id", "start", "end", "state", "derate_fraction", "cause"])
    writer.writerows([(a, iso(s), iso(e), st, "", "") for a, s, e, st in rows])
    exclusions = io.StringIO()
    writer = csv.writer(exclusions)
    writer.writerow(["scope_id", "start", "end", "reason"])
    writer.writerows([(w["scope_id"], iso(w["start_ms"]), iso(w["end_ms"]), w["category"])
                      for w in windows])
    (tmp_path / "status.csv").write_text(status.getvalue())
    (tmp_path / "exclusions.csv").write_text(exclusions.getvalue())
    done = subprocess.run(
        [sys.executable, "-m", "infra.cli", "contracts", "evaluate", "--fleet",
         str(EXAMPLE_FLEET), "--contract", str(EXAMPLE_CONTRACTS / "nordvik.yaml"),
         "--status", str(tmp_path / "status.csv"),
         "--exclusions", str(tmp_path / "exclusions.csv"), "--period", period],
        capture_output=True, text=True, cwd=REPO, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_retroactive_approval_revises_the_closed_period_as_the_batch_command_does(
        client: TestClient, api_settings: Settings, keys: dict[str, dict[str, str]],
        tmp_path: Path) -> None:
    """October 2026 before: u01 and u02 each lose 120 h of 745, of six units of the same
    energy — A = 1 − 240 / 4470 = 94.631 %, 3.369 % under the 98 % guarantee, floored to
    3.36 %: LD 67,200 EUR. The approved grid outage
    over the site excludes those hours: 100 %, LD 0, bonus 5,000 EUR (1 % over 99 %).
    November is closed too and does not change: it is not listed."""
    rows = write_history(ctx_of(client))
    cm = auth(api_settings, "contract_manager")
    compliance = "/api/v1/contracts/LTSA-NORDVIK/compliance?period=2026-10..2026-11"
    before = client.get(compliance, headers=cm).json()["evaluation"]
    assert before == cli_evaluate(tmp_path, rows, [], "2026-10..2026-11")
    october = before["periods"][0]
    assert (october["availability_pct"], october["ld"], october["bonus"]) == (94.631, 67200.0,
                                                                              0.0)

    created = propose(client, auth(api_settings, "service_manager"), reason="line trip")
    n = created["id"]
    # proposed is not approved: nothing changes yet
    assert client.get(compliance, headers=cm).json()["evaluation"] == before
    approved = client.post(f"{BASE}/{n}/approve", headers=cm)
    assert approved.status_code == 200, approved.text
    after_cli = cli_evaluate(tmp_path, rows, [created], "2026-10..2026-11")
    after_october = after_cli["periods"][0]
    assert approved.json()["revisions"] == [{
        "period": "2026-10", "availability_pct_before": 94.631,
        "availability_pct_after": after_october["availability_pct"],
        "ld_before": 67200.0, "ld_after": after_october["ld"],
        "bonus_before": 0.0, "bonus_after": after_october["bonus"],
        "text": f"2026-10 revised: 94.631 % → 100.000 %, LD €67,200 → €0, bonus €0 → "
                f"€5,000, exclusion #{n}"}]
    assert (after_october["availability_pct"], after_october["ld"],
            after_october["bonus"]) == (100.0, 0.0, 5000.0)
    # the compliance (and so the reports) now evaluate with the approved window, exactly as
    # the batch command does with it
    assert client.get(compliance, headers=cm).json()["evaluation"] == after_cli
    # recorded on the exclusion, and in the audit
    listed = client.get(BASE, headers=cm).json()
    assert listed[0]["revisions"] == approved.json()["revisions"]
    entry = audit_of(client)[-1]
    assert (entry.action, entry.details["revisions"]) == (
        "exclusion.approve", [approved.json()["revisions"][0]["text"]])
    # the report lists the window
    report = client.get("/api/v1/reports/compliance?contract_id=LTSA-NORDVIK&period=2026-10"
                        "&format=csv", headers=cm)
    assert report.status_code == 200 and "grid_outage" in report.text

    # revoked: revised back
    revoked = client.post(f"{BASE}/{n}/revoke", json={"comment": "wrong site"},
                          headers=keys["bob"])
    back = revoked.json()["revisions"][-1]
    assert (back["period"], back["availability_pct_after"], back["ld_after"]) == (
        "2026-10", 94.631, 67200.0)
    assert client.get(compliance, headers=cm).json()["evaluation"] == before


def test_an_approval_of_an_open_period_revises_nothing(client: TestClient,
                                                       api_settings: Settings,
                                                       keys: dict[str, dict[str, str]]
                                                       ) -> None:
    now = int(time.time() * 1000)
    n = propose(client, keys["bob"], start_ms=now - 3_600_000, end_ms=now + 3_600_000)["id"]
    approved = client.post(f"{BASE}/{n}/approve", headers=auth(api_settings,
                                                                "contract_manager"))
    assert approved.status_code == 200 and approved.json()["revisions"] == []


# -- tickets -------------------------------------------------------------------------------------

def ticket(**changes: Any) -> TicketEvent:
    fields: dict[str, Any] = {
        "provider": "jira", "ticket_id": "BESS-90", "asset_id": "nordvik-u03-i1",
        "status": "open", "category": "Grid Outage", "opened_ms": ms("2026-11-03 08:00"),
        "updated_ms": ms("2026-11-03 08:00"), "summary": "130 kV feeder down",
        "url": "https://acme.atlassian.net/browse/BESS-90"}
    return TicketEvent.model_validate({**fields, **changes})


MAPPING = TicketMapping(exclusions={"grid outage": "grid_outage", "Hardware": "fault"})


def test_a_ticket_proposes_a_window_once(client: TestClient) -> None:
    ctx = ctx_of(client)
    first = propose_from_ticket(ctx, ticket(), MAPPING, now_ms=1)
    assert first is not None
    e = first.exclusion
    assert (e.scope_id, e.start_us, e.end_us, e.category, e.state, e.proposed_by) == (
        "nordvik-u03", ms("2026-11-03 08:00") * 1000, None, "grid_outage", "proposed",
        "ticket:jira:BESS-90")
    assert first.source == "ticket:jira:BESS-90"
    assert e.reason == ("jira ticket BESS-90 (Grid Outage): 130 kV feeder down "
                        "https://acme.atlassian.net/browse/BESS-90")
    # redelivered: the same proposal
    again = propose_from_ticket(ctx, ticket(updated_ms=ms("2026-11-03 09:00")), MAPPING, 2)
    assert again is not None and again.exclusion.id == e.id
    # resolved: the proposal gets its end (once)
    resolved = propose_from_ticket(ctx, ticket(status="resolved",
                                               updated_ms=ms("2026-11-03 20:00"),
                                               resolved_ms=ms("2026-11-03 20:00")),
                                   MAPPING, 3)
    assert resolved is not None and resolved.exclusion.end_us == ms("2026-11-03 20:00") * 1000
    assert len(ExclusionStore(ctx.store).of_contract("LTSA-NORDVIK")) == 1
    assert [(x.actor, x.action, x.outcome) for x in audit_of(client)] == [
        ("ticket:jira:BESS-90", "exclusion.propose", "ok"),
        ("ticket:jira:BESS-90", "exclusion.update", "ok")]
    # a site-level asset's ticket covers the site; an unmapped category proposes nothing
    site_wide = propose_from_ticket(ctx, ticket(ticket_id="BESS-91", asset_id="nordvik"),
                                    MAPPING, 4)
    assert site_wide is not None and site_wide.exclusion.scope_id == "nordvik"
    assert propose_from_ticket(ctx, ticket(ticket_id="BESS-92", category="Incident"),
                               MAPPING, 5) is None
    assert propose_from_ticket(ctx, ticket(ticket_id="BESS-93", category=None), MAPPING,
                               5) is None
    # a category the contract does not exclude: refused, audited
    assert propose_from_ticket(ctx, ticket(ticket_id="BESS-94", category="hardware"),
                               MAPPING, 6) is None
    refused = audit_of(client)[-1]
    assert (refused.actor, refused.outcome) == ("ticket:jira:BESS-94", "refused")
    assert "'fault' is not a category of LTSA-NORDVIK" in refused.details["why"]


def test_a_tickets_open_ended_window_is_approved_only_with_an_end(
        client: TestClient, keys: dict[str, dict[str, str]]) -> None:
    ctx = ctx_of(client)
    record = propose_from_ticket(ctx, ticket(), MAPPING, now_ms=1)
    assert record is not None
    n = record.exclusion.id
    listed = client.get(BASE, headers=keys["bob"]).json()
    assert (listed[0]["end_ms"], listed[0]["proposed_by"]) == (None, "ticket:jira:BESS-90")
    early = client.post(f"{BASE}/{n}/approve", headers=keys["bob"])
    assert early.status_code == 409 and "has no end yet" in early.json()["detail"]
    propose_from_ticket(ctx, ticket(status="resolved", resolved_ms=ms("2026-11-04 08:00"),
                                    updated_ms=ms("2026-11-04 08:00")), MAPPING, 2)
    assert client.post(f"{BASE}/{n}/approve", headers=keys["bob"]).status_code == 200
    assert approved_windows(ctx.store, "LTSA-NORDVIK") == [ExclusionWindow(
        "nordvik-u03", ms("2026-11-03 08:00") * 1000, ms("2026-11-04 08:00") * 1000,
        "grid_outage")]


def test_the_mapping_file_takes_exclusions() -> None:
    config = TicketingConfig.model_validate({"jira": {"exclusions": {"Incident":
                                                                     "force_majeure"}}})
    assert config.provider("jira").exclusions == {"Incident": "force_majeure"}
    with pytest.raises(ValueError, match="exclusions"):
        TicketingConfig.model_validate({"jira": {"exclusions": {"Incident": "storm"}}})


def test_a_webhook_delivery_proposes_a_window(api_settings: Settings, kafka_bootstrap: str,
                                              tmp_path: Path) -> None:
    """Through the Jira webhook: the fixture's ticket (an `Incident` on nordvik-u02, opened
    2026-03-14) with `exclusions: {incident: force_majeure}` in the mapping; a redelivery
    does not propose twice."""
    from connectors.kafka import ensure_topics
    from tests.api.test_webhooks import SECRETS, body_of, post, signed

    topic = f"t-{hashlib.sha256(str(tmp_path).encode()).hexdigest()[:8]}.tickets.raw"
    ensure_topics(kafka_bootstrap, [topic], partitions=1)
    mapping = tmp_path / "ticketing.yaml"
    mapping.write_text("jira:\n  exclusions: {incident: force_majeure}\n")
    settings = api_settings.model_copy(update={"kafka_bootstrap_servers": kafka_bootstrap,
                                               "topic_tickets": topic})
    app = create_app(settings)
    app.state.ticketing = TicketingSettings(
        webhook_secret_jira=SecretStr(SECRETS["jira"]), ticketing_file=mapping)
    with TestClient(app) as c:
        body = body_of("jira_issue_created.json")
        for delivery in ("d-1", "d-2"):
            answer = post(c, "jira", body, {**signed("jira", body),
                                            "X-Atlassian-Webhook-Identifier": delivery})
            assert answer.status_code == 202, answer.text
        [record] = ExclusionStore(ctx_of(c).store).of_contract("LTSA-NORDVIK")
    e = record.exclusion
    assert (e.scope_id, e.category, e.proposed_by, e.state) == (
        "nordvik-u02", "force_majeure", "ticket:jira:BESS-17", "proposed")
    assert e.start_us == int(datetime.fromisoformat("2026-03-14T09:12:33.123+01:00")
                             .timestamp() * 1_000_000)
