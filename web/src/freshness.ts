// Is a site's data fresh? Judged on the server's clock (the heartbeat carries it), so a
// wall display whose own clock drifts does not turn every site stale, or none.

/** The API's rule (api/views.py STALE_AFTER_MS): older than this is stale. */
export const STALE_AFTER_MS = 30_000;

export interface Freshness {
  stale: boolean;
  ageMs: number | null; // null: no data at all
}

export function freshness(tsMs: number | null | undefined, serverNowMs: number,
                          staleAfterMs = STALE_AFTER_MS): Freshness {
  if (tsMs == null) return { stale: true, ageMs: null };
  const ageMs = Math.max(0, serverNowMs - tsMs);
  return { stale: ageMs > staleAfterMs, ageMs };
}

/** The server's time from what it said its time was, and when that arrived. */
export class ServerClock {
  private offsetMs = 0;
  private known = false;

  observe(serverTsMs: number, localNowMs: number): void {
    const offset = serverTsMs - localNowMs;
    // The first reading as it is; then smoothed, so one slow frame does not jolt it.
    this.offsetMs = this.known ? this.offsetMs * 0.7 + offset * 0.3 : offset;
    this.known = true;
  }

  now(localNowMs: number = Date.now()): number {
    return localNowMs + this.offsetMs;
  }

  get offset(): number {
    return this.offsetMs;
  }
}
