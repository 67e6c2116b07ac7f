"""Roles and what each may do: the one table the API checks and the docs print
(`permission_table`). A permission not in a role's set is refused with 403, whatever the
scope; the scope (principal.py) then limits *which* sites' data a permission reaches."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

Role = Literal["viewer", "engineer", "service_manager", "contract_manager", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "engineer", "service_manager", "contract_manager", "admin")


class Permission(StrEnum):
    READ = "read"  # fleet, sites, assets, availability, alarms, alerts, tickets, telemetry
    ALARMS_ACKNOWLEDGE = "alarms.acknowledge"
    ALARMS_SHELVE = "alarms.shelve"
    CONTRACTS_READ = "contracts.read"  # contract terms, compliance, LD amounts
    REPORTS_EXPORT = "reports.export"  # compliance reports and telemetry exports
    AUDIT_READ = "audit.read"
    API_KEYS_MANAGE = "api_keys.manage"
    # Records refused before they could be tied to a site (no device of the fleet on their
    # key, no asset of the fleet in them): fleet-wide, so shown only to a caller whose scope
    # is the whole fleet (`*` customers and regions) — whoever could write to the topic.
    DATA_QUALITY_UNROUTED = "data_quality.unrouted"
    # Operator commands to the equipment (emergency stop, stop, start, reset, mode): they
    # change what a battery does, so only those on call for it and admins hold them.
    CONTROL_COMMAND = "control.command"
    # The notification rules (who is told of which alarm, through which channel): one file
    # for the whole fleet, naming people's addresses and webhook URLs — admins only.
    NOTIFY_MANAGE = "notify.manage"
    # Exclusion windows (docs/exclusions.md): proposing one (and adding its evidence,
    # withdrawing one's own) is for those who know why a unit was down; deciding — approve,
    # reject, revoke — for contract managers, never on their own proposal (four eyes,
    # contracts/exclusions.py). The same roles as `PROPOSER_ROLES` / `DECIDER_ROLES` there.
    EXCLUSIONS_PROPOSE = "exclusions.propose"
    EXCLUSIONS_DECIDE = "exclusions.decide"
    # The parts of the stack and their restarts (api/routes/stack.py): how bessmon itself
    # runs is for those who run it — admins.
    STACK_READ = "stack.read"


P = Permission
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    # NOC operators at the wall display: everything live, nothing changed, no money.
    "viewer": frozenset({P.READ}),
    # Engineers on call: handle alarms, and command the units (emergency stop above all).
    "engineer": frozenset({P.READ, P.ALARMS_ACKNOWLEDGE, P.ALARMS_SHELVE, P.CONTROL_COMMAND}),
    # Service managers: alarms and the contract's KPIs and reports; no commands to the
    # equipment (that is the on-call engineer's).
    "service_manager": frozenset({P.READ, P.ALARMS_ACKNOWLEDGE, P.ALARMS_SHELVE,
                                  P.CONTRACTS_READ, P.REPORTS_EXPORT, P.EXCLUSIONS_PROPOSE}),
    # LTSA contract managers: contracts, LD and reports, and deciding exclusions; alarms
    # are not theirs to handle.
    "contract_manager": frozenset({P.READ, P.CONTRACTS_READ, P.REPORTS_EXPORT,
                                   P.EXCLUSIONS_PROPOSE, P.EXCLUSIONS_DECIDE}),
    "admin": frozenset(Permission),
}


def allows(role: Role, permission: Permission) -> bool:
    return permission in ROLE_PERMISSIONS[role]


def permission_table() -> str:
    """The table as Markdown (docs/api.md embeds it; a test keeps the two the same)."""
    head = "| permission | " + " | ".join(ROLES) + " |"
    rule = "|---|" + "---|" * len(ROLES)
    rows = [f"| `{p.value}` | " + " | ".join("✓" if allows(r, p) else "" for r in ROLES)
            + " |" for p in Permission]
    return "\n".join([head, rule, *rows])
