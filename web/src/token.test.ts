import { describe, expect, it } from "vitest";
import { loadToken, refreshDelay, saveToken, tokenExpiry } from "./token";

function jwt(claims: object): string {
  const b64 = (o: object) => btoa(JSON.stringify(o)).replace(/=+$/, "")
    .replace(/\+/g, "-").replace(/\//g, "_");
  return `${b64({ alg: "ES256" })}.${b64(claims)}.sig`;
}

describe("tokens", () => {
  it("reads a JWT's expiry and nothing from other credentials", () => {
    expect(tokenExpiry(jwt({ sub: "admin", exp: 1_800_000_000 }))).toBe(1_800_000_000_000);
    expect(tokenExpiry(jwt({ sub: "admin" }))).toBeNull();
    expect(tokenExpiry("bsk_an-api-key")).toBeNull();
    expect(tokenExpiry("a.%%%.c")).toBeNull();
  });

  it("refreshes well before the end, never in a tight loop", () => {
    const hour = 3_600_000;
    expect(refreshDelay(8 * hour, 0)).toBe(0.8 * 8 * hour);
    expect(refreshDelay(120_000, 0)).toBe(60_000); // a minute before the end
    expect(refreshDelay(1_000, 0)).toBe(5_000); // expired or nearly: still not at once
    expect(refreshDelay(0, 10_000)).toBe(5_000);
  });

  it("keeps the token in the storage it is given", () => {
    const m = new Map<string, string>();
    const storage = { getItem: (k: string) => m.get(k) ?? null,
                      setItem: (k: string, v: string) => void m.set(k, v),
                      removeItem: (k: string) => void m.delete(k) };
    saveToken(storage, "t");
    expect(loadToken(storage)).toBe("t");
    saveToken(storage, null);
    expect(loadToken(storage)).toBeNull();
  });
});
