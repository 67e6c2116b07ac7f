// The REST client: bearer token on every call, JSON in and out, errors as ApiError with the
// API's `detail`; the token refreshed before it runs out (POST /auth/refresh).
import { Signal } from "./signal";
import { loadToken, refreshDelay, saveToken, tokenExpiry } from "./token";
import type { Me } from "./types";

export class ApiError extends Error {
  constructor(readonly status: number, readonly detail: string) {
    super(`${status}: ${detail}`);
  }
}

type Query = Record<string, string | number | null | undefined>;

/** The tab's credential: kept in sessionStorage (it dies with the tab), refreshed on time. */
export class Session {
  readonly changed = new Signal<string | null>(); // the new token (null: signed out)
  readonly expired = new Signal<void>(); // the API refused the token
  private refreshTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(private readonly storage: Storage) {}

  get token(): string | null {
    return loadToken(this.storage);
  }

  set(token: string | null): void {
    saveToken(this.storage, token);
    this.changed.emit(token);
  }

  stopRefreshing(): void {
    if (this.refreshTimer !== null) clearTimeout(this.refreshTimer);
    this.refreshTimer = null;
  }

  /** Keep the token fresh: one timer, re-armed after every refresh. */
  keepFresh(api: Api, now: () => number = Date.now): void {
    this.stopRefreshing();
    const token = this.token;
    const expiry = token ? tokenExpiry(token) : null;
    if (expiry === null) return; // an API key or a foreign token: nothing to refresh here
    this.refreshTimer = setTimeout(async () => {
      try {
        const fresh = await api.refresh();
        this.set(fresh);
        this.keepFresh(api, now);
      } catch (err) {
        if (err instanceof ApiError && (err.status === 401 || err.status === 400)) {
          this.expired.emit();
          return;
        }
        // The API is away: try again in a while, as long as the token lives.
        this.refreshTimer = setTimeout(() => this.keepFresh(api, now), 30_000);
      }
    }, refreshDelay(expiry, now()));
  }
}

export class Api {
  constructor(private readonly session: Session, private readonly base = "/api/v1") {}

  private url(path: string, query?: Query): string {
    const q = Object.entries(query ?? {}).filter(([, v]) => v != null)
      .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`).join("&");
    return `${this.base}${path}${q ? `?${q}` : ""}`;
  }

  private async call(method: string, path: string, opts: { query?: Query; json?: unknown;
                     form?: Record<string, string>; auth?: boolean } = {}): Promise<Response> {
    const headers: Record<string, string> = { Accept: "application/json" };
    const token = this.session.token;
    if (opts.auth !== false && token) headers.Authorization = `Bearer ${token}`;
    let body: string | undefined;
    if (opts.json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(opts.json);
    } else if (opts.form) {
      headers["Content-Type"] = "application/x-www-form-urlencoded";
      body = new URLSearchParams(opts.form).toString();
    }
    let response: Response;
    try {
      response = await fetch(this.url(path, opts.query), { method, headers, body,
                                                           cache: "no-store" });
    } catch {
      throw new ApiError(0, "the API is unreachable");
    }
    if (!response.ok) {
      let detail = response.statusText;
      try {
        const data = (await response.json()) as { detail?: unknown };
        if (typeof data.detail === "string") detail = data.detail;
      } catch { /* not JSON */ }
      if (response.status === 401 && opts.auth !== false) this.session.expired.emit();
      throw new ApiError(response.status, detail);
    }
    return response;
  }

  async get<T>(path: string, query?: Query): Promise<T> {
    return (await (await this.call("GET", path, { query })).json()) as T;
  }

  async post<T>(path: string, json: unknown = {}): Promise<T> {
    return (await (await this.call("POST", path, { json })).json()) as T;
  }

  async put<T>(path: string, json: unknown): Promise<T> {
    return (await (await this.call("PUT", path, { json })).json()) as T;
  }

  async delete<T>(path: string): Promise<T> {
    return (await (await this.call("DELETE", path, {})).json()) as T;
  }

  /** A file download (reports): its bytes and the name the API gave it. */
  async download(path: string, query: Query): Promise<{ blob: Blob; filename: string }> {
    const response = await this.call("GET", path, { query });
    const disposition = response.headers.get("Content-Disposition") ?? "";
    const match = /filename="?([^";]+)"?/.exec(disposition);
    return { blob: await response.blob(), filename: match?.[1] ?? "report" };
  }

  async login(username: string, password: string): Promise<string> {
    const response = await this.call("POST", "/auth/token", { form: { username, password },
                                                              auth: false });
    return ((await response.json()) as { access_token: string }).access_token;
  }

  async refresh(): Promise<string> {
    return (await this.post<{ access_token: string }>("/auth/refresh")).access_token;
  }

  me(): Promise<Me> {
    return this.get<Me>("/auth/me");
  }
}
