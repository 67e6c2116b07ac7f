// The bearer token of this tab, and when to refresh it: wall displays run for days, tokens
// for hours (POST /auth/refresh before they run out).

const KEY = "bessmon.token";

export function loadToken(storage: Pick<Storage, "getItem">): string | null {
  return storage.getItem(KEY);
}

export function saveToken(storage: Pick<Storage, "setItem" | "removeItem">,
                          token: string | null): void {
  if (token) storage.setItem(KEY, token);
  else storage.removeItem(KEY);
}

function base64url(text: string): string {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/");
  return atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
}

/** A JWT's expiry (epoch ms) without checking anything (the server does); null for a
 * credential that is not a JWT (an API key) or has no expiry. */
export function tokenExpiry(token: string): number | null {
  const parts = token.split(".");
  if (parts.length !== 3) return null;
  try {
    const claims = JSON.parse(base64url(parts[1] ?? "")) as { exp?: unknown };
    return typeof claims.exp === "number" ? claims.exp * 1000 : null;
  } catch {
    return null;
  }
}

/** Milliseconds until a refresh: when four fifths of the remaining life have passed, and at
 * least a minute before the end; never sooner than 5 s (a clock far off must not spin). */
export function refreshDelay(expiryMs: number, nowMs: number): number {
  const left = expiryMs - nowMs;
  return Math.max(5_000, Math.min(left * 0.8, left - 60_000));
}
