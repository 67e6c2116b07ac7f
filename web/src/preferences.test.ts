import { describe, expect, it } from "vitest";
import type { NotifyPreferences } from "./generated/api";
import { bodyOf, caution, formOf, problemText, sourceText } from "./preferences";

const DEFAULTS: NotifyPreferences = {
  severities: ["critical", "major", "minor", "warning"],
  channels: ["email", "webhook", "slack", "teams"],
  quiet_hours: null, tz: "UTC", email: null, source: "default",
};
const MINE: NotifyPreferences = {
  severities: ["major", "critical"], channels: ["email"], quiet_hours: "22:00-07:00",
  tz: "Europe/Stockholm", email: "me@home.example.test", source: "own",
};

describe("own notification preferences", () => {
  it("shows the defaults in the browser's time zone", () => {
    expect(formOf(DEFAULTS, "Europe/Oslo")).toEqual({
      severities: ["critical", "major", "minor", "warning"],
      channels: ["email", "webhook", "slack", "teams"],
      quietFrom: "", quietTo: "", tz: "Europe/Oslo", email: "",
    });
  });

  it("shows saved preferences as saved, choices in their usual order", () => {
    expect(formOf(MINE, "Europe/Oslo")).toEqual({
      severities: ["critical", "major"], channels: ["email"],
      quietFrom: "22:00", quietTo: "07:00", tz: "Europe/Stockholm",
      email: "me@home.example.test",
    });
    // An administrator's entry (the rules file) keeps its zone too.
    expect(formOf({ ...DEFAULTS, source: "rules", tz: "America/New_York" }, "Europe/Oslo").tz)
      .toBe("America/New_York");
  });

  it("round-trips: the form of an answer is the body that saves it again", () => {
    const { source: _, ...body } = MINE;
    expect(bodyOf(formOf(MINE, "UTC"))).toEqual({
      body: { ...body, severities: ["critical", "major"] } });
  });

  it("sends empty fields as none", () => {
    const form = { ...formOf(DEFAULTS, "Asia/Tokyo"), email: "  ", quietFrom: "", quietTo: "" };
    expect(bodyOf(form)).toEqual({ body: {
      severities: ["critical", "major", "minor", "warning"],
      channels: ["email", "webhook", "slack", "teams"],
      quiet_hours: null, tz: "Asia/Tokyo", email: null } });
    expect(bodyOf({ ...form, tz: " " })).toMatchObject({ body: { tz: "UTC" } });
  });

  it("refuses what cannot be saved before asking the server", () => {
    const form = formOf(MINE, "UTC");
    expect(bodyOf({ ...form, severities: [] })).toEqual({
      problem: "Choose at least one severity." });
    expect(bodyOf({ ...form, channels: [] })).toEqual({
      problem: "Choose at least one channel." });
    expect(bodyOf({ ...form, quietTo: "" })).toEqual({
      problem: "Quiet hours need both a start and an end (or neither)." });
  });

  it("warns that without e-mail nothing reaches the user", () => {
    expect(caution(formOf(MINE, "UTC"))).toBe("");
    expect(caution({ ...formOf(MINE, "UTC"), channels: ["slack"] }))
      .toMatch(/^Without e-mail nothing reaches you/);
  });

  it("says where the preferences come from, and the server's problem without its prefix", () => {
    expect(sourceText(MINE)).toBe("Your own preferences are in force.");
    expect(sourceText({ ...DEFAULTS, source: "rules" })).toMatch(/administrator/);
    expect(sourceText(DEFAULTS)).toMatch(/^The defaults/);
    expect(problemText("invalid request: body.tz: unknown IANA time zone 'Mars/X'"))
      .toBe("tz: unknown IANA time zone 'Mars/X'");
    expect(problemText("an API key has no notification preferences")).toBe(
      "an API key has no notification preferences");
  });
});
