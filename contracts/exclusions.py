"""Exclusion windows as a workflow (docs/exclusions.md): proposed by a contract or service
manager (or by a ticket), approved or rejected by a contract manager other than the proposer
(four eyes), withdrawn by the proposer, revoked after approval by a contract manager. Only
approved windows reach the availability (availability rules §3, rule 1 and 2).

Pure: no I/O. The API (api/routes/exclusions.py) stores exclusions and asks this module
whether a step is allowed (`check`), whether a proposed window is valid (`validate`), which
periods an approval revises (`revised_range`) and how to word the revision (`revisions`).

    proposed ──approve──▶ approved ──revoke──▶ revoked
        │ ──reject───▶ rejected
        └ ──withdraw─▶ withdrawn

Roles are plain strings here (contracts/ does not depend on the API); the API's permission
table grants `exclusions.propose` to exactly `PROPOSER_ROLES` and `exclusions.decide` to
exactly `DECIDER_ROLES` (a test keeps the two the same)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, get_args

from contracts.contract import Contract
from contracts.events import Cause
from contracts.fleet import Fleet
from contracts.intervals import ExclusionWindow
from contracts.periods import ContractCalendar, Period, from_us

ExclusionState = Literal["proposed", "approved", "rejected", "withdrawn", "revoked"]
STATES: tuple[ExclusionState, ...] = get_args(ExclusionState)
Action = Literal["propose", "add_evidence", "approve", "reject", "withdraw", "revoke"]
ACTIONS: tuple[Action, ...] = get_args(Action)

PROPOSER_ROLES = frozenset({"service_manager", "contract_manager", "admin"})
# An admin holds every permission of the API; deciding is still subject to four eyes.
DECIDER_ROLES = frozenset({"contract_manager", "admin"})

# action → (the state it needs, the state it leads to); `propose` and `add_evidence` below
TRANSITIONS: dict[Action, tuple[ExclusionState, ExclusionState]] = {
    "approve": ("proposed", "approved"),
    "reject": ("proposed", "rejected"),
    "withdraw": ("proposed", "withdrawn"),
    "revoke": ("approved", "revoked"),
}
# A ticket (or any machine) proposes as `ticket:<provider>:<id>`: never a person, so never
# one who could approve.
TICKET_PREFIX = "ticket:"
MAINTENANCE: Cause = "scheduled_maintenance"
CURRENCY_SIGNS = {"EUR": "€", "USD": "$", "GBP": "£"}


@dataclass(frozen=True, slots=True)
class Exclusion:
    """An exclusion as stored (times in µs since the epoch; `end_us` None: open-ended, a
    ticket's window while the ticket is not resolved)."""

    id: int
    contract_id: str
    scope_id: str
    start_us: int
    end_us: int | None
    category: Cause
    reason: str
    state: ExclusionState
    proposed_by: str

    def window(self) -> ExclusionWindow:
        if self.end_us is None:
            raise ValueError(f"exclusion #{self.id} has no end")
        return ExclusionWindow(self.scope_id, self.start_us, self.end_us, self.category)


Kind = Literal["forbidden", "conflict"]


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a step is refused: `forbidden` (who: 403) or `conflict` (the exclusion's state:
    409), with a sentence for people."""

    kind: Kind
    message: str


def check(action: Action, actor: str, role: str, exclusion: Exclusion | None) -> Refusal | None:
    """None when `actor` (of `role`) may take `action` on `exclusion` (None for `propose`),
    else the precise refusal. Who is asked first, then the state, then four eyes."""
    if action in ("propose", "add_evidence", "withdraw"):
        if role not in PROPOSER_ROLES:
            return Refusal("forbidden", f"role {role} may not propose exclusions")
    elif role not in DECIDER_ROLES:
        return Refusal("forbidden", f"role {role} may not {action} exclusions (a contract "
                       "manager decides)")
    if action == "propose":
        return None
    if exclusion is None:
        raise ValueError(f"{action} needs an exclusion")
    ref = f"exclusion #{exclusion.id}"
    if action == "add_evidence":
        if exclusion.state != "proposed":
            return Refusal("conflict", f"{ref} is {exclusion.state}: evidence can be added "
                           "only while it is proposed")
        return None
    needed, _ = TRANSITIONS[action]
    if exclusion.state != needed:
        article = "an" if needed[0] in "aeiou" else "a"
        return Refusal("conflict", f"{ref} is {exclusion.state}; only {article} {needed} "
                       f"exclusion can be {_past(action)}")
    if action == "withdraw" and actor != exclusion.proposed_by:
        return Refusal("forbidden", f"only the proposer ({exclusion.proposed_by}) can "
                       f"withdraw {ref}")
    if action in ("approve", "reject") and actor == exclusion.proposed_by:
        return Refusal("forbidden", f"the proposer cannot {action} their own exclusion "
                       "(four eyes: another contract manager decides)")
    if action == "approve" and exclusion.end_us is None:
        return Refusal("conflict", f"{ref} has no end yet (its ticket is not resolved): "
                       "approve it once it has one, or reject it")
    return None


def _past(action: Action) -> str:
    return {"approve": "approved", "reject": "rejected", "withdraw": "withdrawn",
            "revoke": "revoked"}.get(action, action)


def next_state(action: Action) -> ExclusionState:
    return TRANSITIONS[action][1]


def allowed_categories(contract: Contract) -> tuple[Cause, ...]:
    """The categories a window of this contract may have: its `excluded_causes` (rule 1),
    and `scheduled_maintenance` (rule 2: it counts against the maintenance allowance). A
    window of any other cause would have no effect (availability rules §3), so none is
    proposed."""
    causes = contract.availability.excluded_causes
    return causes if MAINTENANCE in causes else (*causes, MAINTENANCE)


class InvalidExclusion(ValueError):
    """A proposed window the contract refuses: `field` names the input, `problem` says why."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field, self.problem = field, problem


def calendar_of(fleet: Fleet, contract: Contract) -> ContractCalendar:
    return ContractCalendar(contract.start, contract.term_years, fleet.site(contract.site).tz)


def validate(fleet: Fleet, contract: Contract, scope_id: str, start_us: int,
             end_us: int | None, category: str) -> Cause:
    """The category as a `Cause` when the window is valid for the contract; else
    `InvalidExclusion` naming the field: `scope_id` (the contract's site or one of its
    units), `end` (after `start`), `start`/`end` (within the contract term), `category`."""
    site = fleet.site(contract.site)
    if scope_id != site.id and scope_id not in {u.id for u in site.units}:
        raise InvalidExclusion("scope_id", f"{scope_id!r} is neither site {site.id!r} nor one "
                               f"of its units ({', '.join(u.id for u in site.units)})")
    if end_us is not None and end_us <= start_us:
        raise InvalidExclusion("end", "must be after start")
    cal = calendar_of(fleet, contract)
    term = (f"{contract.id} runs from {from_us(cal.start_us, site.tz).isoformat()} to "
            f"{from_us(cal.end_us, site.tz).isoformat()}")
    if not cal.start_us <= start_us < cal.end_us:
        raise InvalidExclusion("start", f"outside the contract term: {term}")
    if end_us is not None and end_us > cal.end_us:
        raise InvalidExclusion("end", f"outside the contract term: {term}")
    allowed = allowed_categories(contract)
    if category not in allowed:
        raise InvalidExclusion("category", f"{category!r} is not a category of {contract.id}; "
                               f"one of {', '.join(allowed)}")
    return category  # type: ignore[return-value]


def approved_windows(exclusions: Sequence[Exclusion]) -> list[ExclusionWindow]:
    """The windows of the approved exclusions, in time order (what the engine evaluates)."""
    return sorted((e.window() for e in exclusions if e.state == "approved"),
                  key=lambda w: (w.start_us, w.end_us, w.scope_id, w.reason))


# -- revisions: what an approval (or a revocation) changed in closed periods -----------------

def revised_range(fleet: Fleet, contract: Contract, start_us: int, end_us: int,
                  closed_before_us: int) -> str | None:
    """The periods (`2026-09..2026-12` or one label) whose numbers a window over
    `[start_us, end_us)` can change and that are closed at `closed_before_us`: from the
    period containing its start to the last period of the contract year its end falls in —
    later periods of that year change with it, through the LD and bonus caps and the
    maintenance allowance (availability rules §3, §5). None when no such period is closed."""
    cal = calendar_of(fleet, contract)
    kind = contract.measurement_period
    start = max(start_us, cal.start_us)
    last_instant = min(end_us, cal.end_us) - 1
    if last_instant < start:
        return None
    first = cal.containing(start, kind)
    year = cal.contract_year(last_instant)
    assert year is not None
    last = cal.containing(cal.year_bounds(year)[1] - 1, kind)
    periods: list[Period] = [first]
    while periods[-1].start_us < last.start_us:
        periods.append(cal.following(periods[-1]))
    closed = [p for p in periods if p.end_us <= closed_before_us]
    if not closed:
        return None
    return closed[0].label if len(closed) == 1 else f"{closed[0].label}..{closed[-1].label}"


@dataclass(frozen=True, slots=True)
class Revision:
    """One closed period's numbers before and after (as printed: availability rules §7)."""

    period: str
    availability_pct_before: float | None
    availability_pct_after: float | None
    ld_before: float
    ld_after: float
    bonus_before: float
    bonus_after: float
    text: str

    def as_json(self) -> dict[str, Any]:
        return {"period": self.period, "availability_pct_before": self.availability_pct_before,
                "availability_pct_after": self.availability_pct_after,
                "ld_before": self.ld_before, "ld_after": self.ld_after,
                "bonus_before": self.bonus_before, "bonus_after": self.bonus_after,
                "text": self.text}


def money_text(amount: float, currency: str) -> str:
    exact = Decimal(repr(amount))
    sign = CURRENCY_SIGNS.get(currency)
    number = f"{exact:,.0f}" if exact == exact.to_integral_value() else f"{exact:,.2f}"
    return f"{sign}{number}" if sign else f"{number} {currency}"


def _pct_text(pct: float | None) -> str:
    return "n/a" if pct is None else f"{pct:.3f} %"


def revisions(before: Sequence[Mapping[str, Any]], after: Sequence[Mapping[str, Any]],
              exclusion_id: int, currency: str, verb: str = "revised") -> list[Revision]:
    """The periods whose availability, LD or bonus differ between two evaluations of the
    same periods (the `periods` of `contracts.output.evaluation_json`), worded as
    "2026-10 revised: 97.100 % → 98.300 %, LD €12,000 → €0, exclusion #17"."""
    out: list[Revision] = []
    for b, a in zip(before, after, strict=True):
        if b["period"] != a["period"]:
            raise ValueError(f"periods differ: {b['period']} / {a['period']}")
        if (b["availability_pct"], b["ld"], b["bonus"]) == (
                a["availability_pct"], a["ld"], a["bonus"]):
            continue
        parts = [f"{a['period']} {verb}: {_pct_text(b['availability_pct'])} → "
                 f"{_pct_text(a['availability_pct'])}",
                 f"LD {money_text(b['ld'], currency)} → {money_text(a['ld'], currency)}"]
        if b["bonus"] != a["bonus"]:
            parts.append(f"bonus {money_text(b['bonus'], currency)} → "
                         f"{money_text(a['bonus'], currency)}")
        parts.append(f"exclusion #{exclusion_id}")
        out.append(Revision(a["period"], b["availability_pct"], a["availability_pct"],
                            b["ld"], a["ld"], b["bonus"], a["bonus"], ", ".join(parts)))
    return out
