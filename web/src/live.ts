// The live feed (/api/v1/ws, protocol in api/routes/ws.py): authenticate, subscribe to
// channels, snapshot then updates. When the connection drops — the API restarted, the
// network went away, the server found us too slow (4408) — it reconnects with exponential
// backoff and resubscribes with `since` = the last seq seen per channel, so nothing is
// missed and nothing applied twice. It pings every 10 s; a connection silent for a heartbeat
// and 10 s more counts as dropped (a network that died without saying so), and so does the
// browser going offline.

export type LiveState = "connecting" | "live" | "reconnecting" | "denied";

export interface ChannelHandler {
  snapshot(data: unknown): void;
  update(data: unknown): void;
}

/** The socket as this client uses it (a browser WebSocket, or a fake in tests). */
export interface SocketLike {
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason?: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

/** Exponential delays with jitter: 0.5 s, 1 s, 2 s … up to `maxMs`. */
export class Backoff {
  private attempt = 0;

  constructor(private readonly baseMs = 500, private readonly maxMs = 15_000,
              private readonly random: () => number = Math.random) {}

  next(): number {
    const raw = Math.min(this.maxMs, this.baseMs * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 30);
    return Math.round(raw * (0.8 + 0.4 * this.random()));
  }

  reset(): void {
    this.attempt = 0;
  }

  get attempts(): number {
    return this.attempt;
  }
}

type Frame = { type: string; channel?: string; seq?: number; data?: unknown;
               heartbeat_s?: number; ts_ms?: number; message?: string; frames?: Frame[] };

/** The last seq applied per channel, and what to do with each frame. */
export class ChannelSeqs {
  private readonly seqs = new Map<string, number>();

  /** "apply" a snapshot or a new update, "drop" one seen already (a resume can repeat). */
  judge(frame: Frame): "snapshot" | "update" | "drop" | "resume" {
    const channel = frame.channel ?? "";
    const seq = frame.seq ?? 0;
    if (frame.type === "snapshot") {
      this.seqs.set(channel, seq);
      return "snapshot";
    }
    if (frame.type === "resume") return "resume"; // the missed updates follow, seq by seq
    const last = this.seqs.get(channel);
    if (last !== undefined && seq <= last) return "drop";
    this.seqs.set(channel, seq);
    return "update";
  }

  since(channel: string): number | undefined {
    return this.seqs.get(channel);
  }

  forget(channel: string): void {
    this.seqs.delete(channel);
  }

  get size(): number {
    return this.seqs.size;
  }
}

export interface LiveOptions {
  url: string;
  token: () => string | null;
  onState?: (state: LiveState) => void;
  onHeartbeat?: (serverTsMs: number) => void;
  /** The server refused the token (4401): true when a fresh one is there to try. */
  onDenied?: () => Promise<boolean>;
  socket?: (url: string) => SocketLike;
  backoff?: Backoff;
  now?: () => number;
}

export class LiveClient {
  private ws: SocketLike | null = null;
  private readonly channels = new Map<string, Set<ChannelHandler>>();
  private readonly seqs = new ChannelSeqs();
  private readonly backoff: Backoff;
  private ready = false;
  private stopped = true;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private watchdog: ReturnType<typeof setInterval> | null = null;
  private lastFrameMs = 0;
  private silenceMs = 25_000;
  private lastPingMs = 0;
  private everLive = false;
  state: LiveState = "connecting";

  constructor(private readonly opts: LiveOptions) {
    this.backoff = opts.backoff ?? new Backoff();
  }

  private now(): number {
    return (this.opts.now ?? Date.now)();
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.open();
  }

  stop(): void {
    this.stopped = true;
    this.clearTimers();
    this.detach(this.ws);
    this.ws = null;
    this.ready = false;
  }

  /** Connect now rather than at the next backoff (the browser is back online). */
  retryNow(): void {
    if (this.stopped || this.ws) return;
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.open();
  }

  /** The network is gone (the browser says so): give the connection up now, retry later. */
  drop(): void {
    if (this.stopped || !this.ws) return;
    this.detach(this.ws);
    this.ws = null;
    this.ready = false;
    this.scheduleRetry();
  }

  /** A refreshed token for the open connection (the server checks it at every heartbeat). */
  reauth(): void {
    const token = this.opts.token();
    if (this.ready && token) this.send({ type: "auth", token });
  }

  subscribe(channel: string, handler: ChannelHandler): () => void {
    let handlers = this.channels.get(channel);
    const joining = handlers !== undefined;
    if (!handlers) {
      handlers = new Set();
      this.channels.set(channel, handlers);
    }
    handlers.add(handler);
    if (this.ready) {
      // A second listener needs the whole state too: a fresh snapshot for all of them.
      if (joining) this.seqs.forget(channel);
      this.send({ type: "subscribe", channel });
    }
    return () => {
      const set = this.channels.get(channel);
      if (!set || !set.delete(handler) || set.size > 0) return;
      this.channels.delete(channel);
      this.seqs.forget(channel);
      if (this.ready) this.send({ type: "unsubscribe", channel });
    };
  }

  get channelCount(): number {
    return this.channels.size;
  }

  private setState(state: LiveState): void {
    if (this.state === state) return;
    this.state = state;
    this.opts.onState?.(state);
  }

  private send(msg: object): void {
    try {
      this.ws?.send(JSON.stringify(msg));
    } catch { /* closing: the reconnect resubscribes */ }
  }

  private open(): void {
    this.setState(this.everLive ? "reconnecting" : "connecting");
    const make = this.opts.socket ?? ((url: string) => new WebSocket(url) as unknown as SocketLike);
    let ws: SocketLike;
    try {
      ws = make(this.opts.url);
    } catch {
      this.scheduleRetry();
      return;
    }
    this.ws = ws;
    this.lastFrameMs = this.now();
    ws.onopen = () => {
      const token = this.opts.token();
      if (!token) {
        this.setState("denied");
        this.stop();
        return;
      }
      // Updates in batches: one message per server tick (0.1 s), not one per update.
      ws.send(JSON.stringify({ type: "auth", token, batch: true }));
    };
    ws.onmessage = (ev) => this.frame(ev.data);
    ws.onerror = () => { /* onclose follows */ };
    ws.onclose = (ev) => this.closed(ws, ev.code);
    this.startWatchdog();
  }

  private frame(raw: unknown): void {
    this.lastFrameMs = this.now();
    let msg: Frame;
    try {
      msg = JSON.parse(String(raw)) as Frame;
    } catch {
      return;
    }
    if (msg.type === "batch") for (const f of msg.frames ?? []) this.handle(f);
    else this.handle(msg);
  }

  private handle(msg: Frame): void {
    switch (msg.type) {
      case "ready":
        if (msg.heartbeat_s) this.silenceMs = (msg.heartbeat_s + 10) * 1000;
        if (this.ready) return; // the answer to a re-auth
        this.ready = true;
        this.everLive = true;
        this.backoff.reset();
        for (const channel of this.channels.keys()) {
          const since = this.seqs.since(channel);
          this.send(since === undefined ? { type: "subscribe", channel }
            : { type: "subscribe", channel, since });
        }
        this.setState("live");
        return;
      case "heartbeat":
        if (typeof msg.ts_ms === "number") this.opts.onHeartbeat?.(msg.ts_ms);
        return;
      case "snapshot":
      case "update":
      case "resume": {
        const handlers = this.channels.get(msg.channel ?? "");
        if (!handlers) return; // unsubscribed meanwhile
        const verdict = this.seqs.judge(msg);
        if (verdict === "snapshot") for (const h of [...handlers]) h.snapshot(msg.data);
        else if (verdict === "update") for (const h of [...handlers]) h.update(msg.data);
        return;
      }
      default:
        return; // pong, unsubscribed, error (e.g. a channel not ours): nothing to do
    }
  }

  private closed(ws: SocketLike, code: number): void {
    if (ws !== this.ws) return; // an old socket, given up already
    this.detach(ws);
    this.ws = null;
    this.ready = false;
    if (this.stopped) return;
    if (code === 4401) {
      const denied = this.opts.onDenied;
      if (!denied) {
        this.setState("denied");
        this.stop();
        return;
      }
      void denied().then((retry) => {
        if (this.stopped) return;
        if (retry) this.scheduleRetry();
        else {
          this.setState("denied");
          this.stop();
        }
      });
      return;
    }
    this.scheduleRetry();
  }

  private scheduleRetry(): void {
    this.setState(this.everLive ? "reconnecting" : "connecting");
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (!this.stopped) this.open();
    }, this.backoff.next());
  }

  private startWatchdog(): void {
    if (this.watchdog !== null) return;
    this.watchdog = setInterval(() => {
      const ws = this.ws;
      if (!ws) return;
      const now = this.now();
      if (this.ready && now - this.lastPingMs >= 10_000) {
        this.lastPingMs = now;
        this.send({ type: "ping" }); // the pong proves the way back works too
      }
      if (now - this.lastFrameMs <= this.silenceMs) return;
      // Nothing heard for a heartbeat and more: dead, even if nobody said so.
      this.detach(ws);
      this.ws = null;
      this.ready = false;
      this.scheduleRetry();
    }, 2_500);
  }

  private detach(ws: SocketLike | null): void {
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
    try {
      ws.close(1000, "bye");
    } catch { /* already closed */ }
  }

  private clearTimers(): void {
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    if (this.watchdog !== null) clearInterval(this.watchdog);
    this.retryTimer = null;
    this.watchdog = null;
  }
}
