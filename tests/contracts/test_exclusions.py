"""The exclusion workflow's pure rules (contracts/exclusions.py): states and transitions, four
eyes per role, validation of a proposed window against its contract, which closed periods an
approval revises and how the revision reads."""

from __future__ import annotations

import dataclasses
from typing import get_args

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.auth.permissions import ROLE_PERMISSIONS, ROLES, Permission
from contracts.engine import evaluate
from contracts.exclusions import (
    ACTIONS,
    DECIDER_ROLES,
    PROPOSER_ROLES,
    STATES,
    TRANSITIONS,
    Action,
    Exclusion,
    InvalidExclusion,
    Refusal,
    allowed_categories,
    approved_windows,
    check,
    money_text,
    next_state,
    revised_range,
    revisions,
    validate,
)
from contracts.intervals import ExclusionWindow
from contracts.output import evaluation_json
from tests.contracts.builders import FLEET, at, contract, iv

C = contract()  # alpha (u1, u2), from 2024-06-01, months, excludes grid/force/customer


def excl(state: str = "proposed", proposer: str = "alice", end: int | None = 2,
         n: int = 17) -> Exclusion:
    return Exclusion(n, "LTSA-T", "u1", 1, end, "grid_outage", "storm", state,  # type: ignore[arg-type]
                     proposer)


# -- states and the four-eyes rule -----------------------------------------------------------

def test_the_states_and_transitions() -> None:
    assert STATES == ("proposed", "approved", "rejected", "withdrawn", "revoked")
    assert {a: (TRANSITIONS[a][0], next_state(a)) for a in TRANSITIONS} == {
        "approve": ("proposed", "approved"), "reject": ("proposed", "rejected"),
        "withdraw": ("proposed", "withdrawn"), "revoke": ("approved", "revoked")}


def test_the_roles_are_the_permission_tables() -> None:
    """The API grants exclusions.propose / .decide to exactly the roles the rule allows."""
    proposers = {r for r in ROLES if Permission.EXCLUSIONS_PROPOSE in ROLE_PERMISSIONS[r]}
    deciders = {r for r in ROLES if Permission.EXCLUSIONS_DECIDE in ROLE_PERMISSIONS[r]}
    assert proposers == PROPOSER_ROLES
    assert deciders == DECIDER_ROLES
    assert proposers == {"service_manager", "contract_manager", "admin"}
    assert deciders == {"contract_manager", "admin"}


def test_four_eyes_refusals_are_precise() -> None:
    e = excl()
    assert check("approve", "alice", "contract_manager", e) == Refusal(
        "forbidden", "the proposer cannot approve their own exclusion (four eyes: another "
        "contract manager decides)")
    assert check("reject", "alice", "contract_manager", e) == Refusal(
        "forbidden", "the proposer cannot reject their own exclusion (four eyes: another "
        "contract manager decides)")
    assert check("approve", "bob", "contract_manager", e) is None
    assert check("approve", "bob", "service_manager", e) == Refusal(
        "forbidden", "role service_manager may not approve exclusions (a contract manager "
        "decides)")
    assert check("withdraw", "bob", "contract_manager", e) == Refusal(
        "forbidden", "only the proposer (alice) can withdraw exclusion #17")
    assert check("withdraw", "alice", "contract_manager", e) is None
    assert check("propose", "x", "viewer", None) == Refusal(
        "forbidden", "role viewer may not propose exclusions")
    assert check("propose", "x", "engineer", None) is not None
    assert check("propose", "x", "service_manager", None) is None


def test_state_refusals_are_conflicts() -> None:
    assert check("approve", "bob", "contract_manager", excl("approved")) == Refusal(
        "conflict", "exclusion #17 is approved; only a proposed exclusion can be approved")
    assert check("revoke", "bob", "contract_manager", excl("proposed")) == Refusal(
        "conflict", "exclusion #17 is proposed; only an approved exclusion can be revoked")
    assert check("revoke", "alice", "contract_manager", excl("approved")) is None
    assert check("add_evidence", "bob", "service_manager", excl("rejected")) == Refusal(
        "conflict", "exclusion #17 is rejected: evidence can be added only while it is "
        "proposed")
    assert check("add_evidence", "bob", "service_manager", excl()) is None
    # A ticket's open-ended proposal: rejected if need be, approved only once it has an end
    open_ended = excl(proposer="ticket:jira:BESS-1", end=None)
    assert check("approve", "bob", "contract_manager", open_ended) == Refusal(
        "conflict", "exclusion #17 has no end yet (its ticket is not resolved): approve it "
        "once it has one, or reject it")
    assert check("reject", "bob", "contract_manager", open_ended) is None


def _expected(action: Action, actor: str, role: str, e: Exclusion | None) -> str | None:
    """The rule restated independently: None (allowed), "forbidden" or "conflict"."""
    proposing = action in ("propose", "add_evidence", "withdraw")
    if role not in (PROPOSER_ROLES if proposing else DECIDER_ROLES):
        return "forbidden"
    if action == "propose":
        return None
    assert e is not None
    needed = "approved" if action == "revoke" else "proposed"
    if e.state != needed:
        return "conflict"
    if action == "withdraw" and actor != e.proposed_by:
        return "forbidden"
    if action in ("approve", "reject") and actor == e.proposed_by:
        return "forbidden"
    if action == "approve" and e.end_us is None:
        return "conflict"
    return None


@given(action=st.sampled_from(ACTIONS), role=st.sampled_from(ROLES),
       actor=st.sampled_from(["alice", "bob", "ticket:jira:BESS-1"]),
       proposer=st.sampled_from(["alice", "bob", "ticket:jira:BESS-1"]),
       state=st.sampled_from(STATES), ended=st.booleans())
def test_the_rule_for_every_role_action_and_state(action: Action, role: str, actor: str,
                                                  proposer: str, state: str,
                                                  ended: bool) -> None:
    e = None if action == "propose" else excl(state, proposer, 2 if ended else None)
    refusal = check(action, actor, role, e)
    assert (None if refusal is None else refusal.kind) == _expected(action, actor, role, e)
    if refusal is not None:
        assert refusal.message  # every refusal says why
    # the invariant four eyes exists for: nobody approves their own proposal
    if action == "approve" and e is not None and actor == e.proposed_by:
        assert refusal is not None
    # and only a contract manager (or an admin) ever decides
    if action in ("approve", "reject", "revoke") and role not in ("contract_manager", "admin"):
        assert refusal is not None and refusal.kind == "forbidden"


# -- validation --------------------------------------------------------------------------------

def test_categories_are_the_contracts() -> None:
    assert allowed_categories(C) == ("grid_outage", "force_majeure", "customer_request",
                                     "scheduled_maintenance")
    with_maintenance = contract(availability__excluded_causes=["scheduled_maintenance"])
    assert allowed_categories(with_maintenance) == ("scheduled_maintenance",)


@pytest.mark.parametrize(("scope", "start", "end", "category", "field", "words"), [
    ("v1", "2026-06-01 00:00", "2026-06-02 00:00", "grid_outage", "scope_id",
     "'v1' is neither site 'alpha' nor one of its units (u1, u2)"),
    ("u1-i1", "2026-06-01 00:00", "2026-06-02 00:00", "grid_outage", "scope_id",
     "neither site"),
    ("u1", "2026-06-02 00:00", "2026-06-02 00:00", "grid_outage", "end", "must be after start"),
    ("u1", "2026-06-02 00:00", "2026-06-01 00:00", "grid_outage", "end", "must be after start"),
    ("u1", "2024-05-31 23:00", "2024-06-02 00:00", "grid_outage", "start",
     "outside the contract term: LTSA-T runs from 2024-06-01T00:00:00+02:00 to "
     "2044-06-01T00:00:00+02:00"),
    ("u1", "2044-05-31 00:00", "2044-06-01 00:00:00.000001", "grid_outage", "end",
     "outside the contract term"),
    ("alpha", "2026-06-01 00:00", "2026-06-02 00:00", "fault", "category",
     "'fault' is not a category of LTSA-T; one of grid_outage, force_majeure, "
     "customer_request, scheduled_maintenance"),
    ("alpha", "2026-06-01 00:00", "2026-06-02 00:00", "Grid outage", "category", "not a cat"),
])
def test_invalid_windows_name_the_field(scope: str, start: str, end: str, category: str,
                                        field: str, words: str) -> None:
    with pytest.raises(InvalidExclusion) as caught:
        validate(FLEET, C, scope, at(start), at(end), category)
    assert caught.value.field == field
    assert words in caught.value.problem


def test_valid_windows() -> None:
    assert validate(FLEET, C, "alpha", at("2026-06-01 00:00"), at("2026-06-02 00:00"),
                    "force_majeure") == "force_majeure"
    assert validate(FLEET, C, "u2", at("2024-06-01 00:00"), at("2044-06-01 00:00"),
                    "scheduled_maintenance") == "scheduled_maintenance"
    # open-ended (a ticket not resolved yet)
    assert validate(FLEET, C, "u1", at("2026-06-01 00:00"), None, "grid_outage")


def test_approved_windows_are_the_approved_ones_in_time_order() -> None:
    a = excl("approved", n=1)
    b = dataclasses.replace(excl("approved", n=2), start_us=0, scope_id="alpha")
    found = approved_windows([a, excl("proposed", n=3), excl("rejected", n=4),
                              excl("revoked", n=5), b])
    assert found == [ExclusionWindow("alpha", 0, 2, "grid_outage"),
                     ExclusionWindow("u1", 1, 2, "grid_outage")]


# -- revisions -----------------------------------------------------------------------------------

def test_revised_range_runs_to_the_end_of_the_contract_year_closed_periods_only() -> None:
    # contract years start on 1 June: a window in 2026-10 can change 2026-10..2027-05
    start, end = at("2026-10-03 00:00"), at("2026-10-04 00:00")
    assert revised_range(FLEET, C, start, end, at("2027-07-01 00:00")) == "2026-10..2027-05"
    assert revised_range(FLEET, C, start, end, at("2026-12-15 00:00")) == "2026-10..2026-11"
    assert revised_range(FLEET, C, start, end, at("2026-11-01 00:00")) == "2026-10"
    assert revised_range(FLEET, C, start, end, at("2026-10-31 23:00")) is None
    # a window across the anniversary reaches the end of the next contract year
    assert revised_range(FLEET, C, at("2027-05-31 00:00"), at("2027-06-02 00:00"),
                         at("2030-01-01 00:00")) == "2027-05..2028-05"


def test_money_text() -> None:
    assert money_text(12000.0, "EUR") == "€12,000"
    assert money_text(0.0, "EUR") == "€0"
    assert money_text(1234.5, "USD") == "$1,234.50"
    assert money_text(99.99, "SEK") == "99.99 SEK"


def test_revisions_of_an_approval_evaluated_with_and_without_the_window() -> None:
    """u1 down 24 h in October 2026 for a grid outage the status did not know; the window
    excludes it. Equal weights, 745 h (summer time ends): A = 1 − 24 / 1490 = 98.389 % →
    100 %; under a 99 % guarantee the shortfall 0.6107 floors to 0.61 %: LD 12,200 EUR."""
    c = contract(guarantee__default_pct=99.0)
    status = [iv("u1", "2026-06-01 00:00", "2026-10-10 00:00"),  # the contract year's start
              iv("u1", "2026-10-10 00:00", "2026-10-11 00:00", "unavailable"),
              iv("u1", "2026-10-11 00:00", "2026-11-01 00:00"),
              iv("u2", "2026-06-01 00:00", "2026-11-01 00:00")]
    window = ExclusionWindow("u1", at("2026-10-10 00:00"), at("2026-10-11 00:00"),
                             "grid_outage")
    before = evaluation_json(evaluate(FLEET, c, status, [], "2026-09..2026-10"))
    after = evaluation_json(evaluate(FLEET, c, status, [window], "2026-09..2026-10"))
    found = revisions(before["periods"], after["periods"], 17, "EUR")
    assert len(found) == 1  # September did not change
    r = found[0]
    assert (r.period, r.availability_pct_before, r.availability_pct_after) == (
        "2026-10", 98.389, 100.0)
    assert (r.ld_before, r.ld_after) == (12200.0, 0.0)
    assert r.text == "2026-10 revised: 98.389 % → 100.000 %, LD €12,200 → €0, exclusion #17"
    assert revisions(before["periods"], before["periods"], 17, "EUR") == []
    with pytest.raises(ValueError, match="periods differ"):
        revisions(before["periods"][:1], after["periods"][1:], 17, "EUR")


def test_every_action_is_listed() -> None:
    assert set(ACTIONS) == set(get_args(Action))
    assert set(TRANSITIONS) | {"propose", "add_evidence"} == set(ACTIONS)
