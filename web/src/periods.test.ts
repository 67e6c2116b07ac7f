import { describe, expect, it } from "vitest";
import { contractYearPeriods, rangeLabel } from "./periods";

describe("contract year periods", () => {
  it("lists the months of the contract year up to the open one", () => {
    // LTSA-NORDVIK: from 2025-10-01; contract year 2 starts 2026-10-01.
    expect(contractYearPeriods("2025-10-01", "month", 2, "2026-12")).toEqual(
      ["2026-10", "2026-11", "2026-12"]);
    expect(contractYearPeriods("2025-10-01", "month", 1, "2026-09")).toHaveLength(12);
  });

  it("starts at the first month that begins in the contract year", () => {
    expect(contractYearPeriods("2024-03-15", "month", 1, "2024-05")).toEqual(
      ["2024-04", "2024-05"]);
  });

  it("lists quarters", () => {
    // LTSA-ELBE: from 2024-07-01; contract year 3 from 2026-07-01.
    expect(contractYearPeriods("2024-07-01", "quarter", 3, "2026-Q4")).toEqual(
      ["2026-Q3", "2026-Q4"]);
    expect(contractYearPeriods("2024-08-10", "quarter", 1, "2025-Q1")).toEqual(
      ["2024-Q4", "2025-Q1"]);
  });

  it("a contract-year contract has one period a year", () => {
    expect(contractYearPeriods("2024-02-29", "contract_year", 3, "CY3")).toEqual(["CY3"]);
  });

  it("stops after a year even if the open period is not found", () => {
    expect(contractYearPeriods("2025-10-01", "month", 2, "1999-01")).toHaveLength(12);
  });

  it("joins labels into the API's ranges", () => {
    expect(rangeLabel(["2026-10"])).toBe("2026-10");
    expect(rangeLabel(["2026-10", "2026-11", "2026-12"])).toBe("2026-10..2026-12");
    expect(() => rangeLabel([])).toThrow();
  });
});
