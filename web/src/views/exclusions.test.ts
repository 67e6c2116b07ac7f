import { describe, expect, it } from "vitest";
import type { ExclusionOut } from "../generated/api";
import { exclusionActions, exclusionCategories, localInputMs } from "./exclusions";

const excl = (over: Partial<ExclusionOut> = {}): ExclusionOut => ({
  id: 17, contract_id: "LTSA-NORDVIK", site_id: "nordvik", scope_id: "nordvik-u01",
  start_ms: 1000, end_ms: 2000, category: "grid_outage", reason: "line trip",
  state: "proposed", proposed_by: "alice", proposed_ms: 1, decided_by: null, decided_ms: null,
  decision_comment: null, revoked_by: null, revoked_ms: null, revoke_comment: null,
  source: null, evidence: [], revisions: [], ...over });

const roles: Record<string, string[]> = {
  service_manager: ["exclusions.propose"],
  contract_manager: ["exclusions.propose", "exclusions.decide"],
  viewer: [],
};
const can = (role: string) => (p: string) => (roles[role] ?? []).includes(p);

describe("exclusion actions", () => {
  it("four eyes: the proposer never sees approve or reject, another contract manager does", () => {
    expect(exclusionActions(excl(), "alice", can("contract_manager"))).toEqual(["withdraw"]);
    expect(exclusionActions(excl(), "bob", can("contract_manager")))
      .toEqual(["approve", "reject"]);
  });

  it("shows nothing to decide to a service manager or a viewer", () => {
    expect(exclusionActions(excl(), "bob", can("service_manager"))).toEqual([]);
    expect(exclusionActions(excl(), "alice", can("service_manager"))).toEqual(["withdraw"]);
    expect(exclusionActions(excl(), "bob", can("viewer"))).toEqual([]);
  });

  it("an open-ended window can be rejected, not approved; approved ones can be revoked", () => {
    expect(exclusionActions(excl({ end_ms: null, proposed_by: "ticket:jira:B-1" }), "bob",
      can("contract_manager"))).toEqual(["reject"]);
    expect(exclusionActions(excl({ state: "approved" }), "alice", can("contract_manager")))
      .toEqual(["revoke"]);
    for (const state of ["rejected", "withdrawn", "revoked"] as const) {
      expect(exclusionActions(excl({ state }), "bob", can("contract_manager"))).toEqual([]);
    }
  });
});

describe("exclusion form", () => {
  it("offers the contract's excluded causes and scheduled maintenance", () => {
    expect(exclusionCategories({ availability: { excluded_causes: ["grid_outage",
      "force_majeure"] } })).toEqual(["grid_outage", "force_majeure", "scheduled_maintenance"]);
    expect(exclusionCategories({ availability: { excluded_causes:
      ["scheduled_maintenance"] } })).toEqual(["scheduled_maintenance"]);
    expect(exclusionCategories({})).toEqual(["scheduled_maintenance"]);
  });

  it("reads datetime-local inputs", () => {
    expect(localInputMs("")).toBeNull();
    expect(localInputMs("nonsense")).toBeNull();
    expect(localInputMs("2026-10-10T08:00")).toBe(new Date("2026-10-10T08:00").getTime());
  });
});
