import { describe, expect, it } from "vitest";
import { byDevice, count, deviceLabel, qualityTotals, sitesToShow } from "./quality";
import type { Alert, DeadLetterRow, QualityTotals } from "./types";

const row = (device: string, reason: string, n: number, lastMs = 10,
             over: Partial<DeadLetterRow> = {}): DeadLetterRow => ({
  device, reason, count: n, first_ms: 1, last_ms: lastMs, last_detail: `${reason}!`,
  asset_id: device.startsWith("site-") ? device : null, ...over });

const alert = (id: string): Alert => ({
  v: 1, alert_id: id, kind: "dlq_rate", scope_id: "x", site_id: "s", severity: "major",
  state: "raised", raised_ms: 1, ts_ms: 1, message: "m", details: {} });

const totals = (records: number, alerts = 0, tallies: DeadLetterRow[] = []) =>
  ({ records, pairs: tallies.length, tallies,
     alerts: Array.from({ length: alerts }, (_, i) => alert(`a${i}`)) });

describe("refused records by device", () => {
  it("group a device's reasons under it, the device with the most records first", () => {
    const devices = byDevice([row("site-u02", "schema", 30), row("site-u01", "schema", 5),
                              row("site-u01", "malformed_json", 40, 50), row("", "empty", 2)]);
    expect(devices.map((d) => [d.device, d.count, d.last_ms])).toEqual([
      ["site-u01", 45, 50], ["site-u02", 30, 10], ["", 2, 10]]);
    expect(devices[0]!.reasons.map((r) => [r.reason, r.count, r.last_detail])).toEqual([
      ["malformed_json", 40, "malformed_json!"], ["schema", 5, "schema!"]]);
    expect(devices[0]!.asset_id).toBe("site-u01");
    expect(devices[2]!.asset_id).toBeNull();
  });

  it("put equal counts the most recent first, then by name, whatever the input order", () => {
    const rows = [row("b", "r2", 3, 5), row("a", "r1", 3, 5), row("c", "r1", 3, 9),
                  row("a", "r3", 3, 5)];
    const expected = [["a", ["r1", "r3"]], ["c", ["r1"]], ["b", ["r2"]]];
    const shape = (list: DeadLetterRow[]) =>
      byDevice(list).map((d) => [d.device, d.reasons.map((r) => r.reason)]);
    // a: 6 records; c: 3, newer than b's 3.
    expect(shape(rows)).toEqual(expected);
    expect(shape([...rows].reverse())).toEqual(expected);
  });

  it("is empty for no tallies", () => {
    expect(byDevice([])).toEqual([]);
  });
});

describe("sites to show", () => {
  it("put the sites with the most refused records, then alerts, first; others in order", () => {
    const sites = [{ id: "a", ...totals(0) }, { id: "b", ...totals(5) },
                   { id: "c", ...totals(0, 2) }, { id: "d", ...totals(50) },
                   { id: "e", ...totals(0) }];
    expect(sitesToShow(sites).map((s) => s.id)).toEqual(["d", "b", "c", "a", "e"]);
  });

  it("total the fleet's records, devices and alerts", () => {
    const parts: QualityTotals[] = [
      totals(12, 1, [row("x", "schema", 10), row("x", "empty", 1), row("y", "schema", 1)]),
      totals(3, 2, [row("x", "schema", 3)])];
    expect(qualityTotals(parts)).toEqual({ records: 15, devices: 3, alerts: 3 });
    expect(qualityTotals([])).toEqual({ records: 0, devices: 0, alerts: 0 });
  });
});

describe("labels", () => {
  it("read counts and keyless records plainly", () => {
    expect(count(1234567)).toBe("1,234,567");
    expect(count(Number.NaN)).toBe("–");
    expect(deviceLabel("")).toBe("(no key)");
    expect(deviceLabel("nordvik-u01")).toBe("nordvik-u01");
  });
});
