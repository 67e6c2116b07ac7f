import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Backoff, ChannelSeqs, LiveClient, type LiveState, type SocketLike } from "./live";

class FakeSocket implements SocketLike {
  onopen: SocketLike["onopen"] = null;
  onmessage: SocketLike["onmessage"] = null;
  onclose: SocketLike["onclose"] = null;
  onerror: SocketLike["onerror"] = null;
  sent: Record<string, unknown>[] = [];
  closed = false;

  send(data: string): void {
    this.sent.push(JSON.parse(data) as Record<string, unknown>);
  }

  close(): void {
    this.closed = true;
  }

  // The server's side:
  open(): void {
    this.onopen?.({});
  }

  frame(msg: object): void {
    this.onmessage?.({ data: JSON.stringify(msg) });
  }

  drop(code = 1006): void {
    this.onclose?.({ code });
  }
}

function setup(token: string | null = "tok") {
  const sockets: FakeSocket[] = [];
  const states: LiveState[] = [];
  const client = new LiveClient({
    url: "ws://x/api/v1/ws", token: () => token,
    socket: () => {
      const s = new FakeSocket();
      sockets.push(s);
      return s;
    },
    onState: (s) => states.push(s),
    backoff: new Backoff(500, 15_000, () => 0.5),
  });
  return { client, sockets, states };
}

describe("backoff", () => {
  it("doubles up to its ceiling and starts over after a success", () => {
    const b = new Backoff(500, 4_000, () => 0.5);
    expect([b.next(), b.next(), b.next(), b.next(), b.next()]).toEqual(
      [500, 1_000, 2_000, 4_000, 4_000]);
    b.reset();
    expect(b.next()).toBe(500);
    const jittery = new Backoff(1_000, 1_000, () => 0);
    expect(jittery.next()).toBe(800);
  });
});

describe("sequence numbers", () => {
  it("apply each update once, after the snapshot", () => {
    const s = new ChannelSeqs();
    expect(s.judge({ type: "snapshot", channel: "fleet", seq: 10 })).toBe("snapshot");
    expect(s.judge({ type: "update", channel: "fleet", seq: 10 })).toBe("drop");
    expect(s.judge({ type: "update", channel: "fleet", seq: 11 })).toBe("update");
    expect(s.judge({ type: "resume", channel: "fleet", seq: 15 })).toBe("resume");
    expect(s.since("fleet")).toBe(11); // a resume names the end of what follows, not ours
    expect(s.judge({ type: "update", channel: "fleet", seq: 12 })).toBe("update");
    s.forget("fleet");
    expect(s.size).toBe(0);
  });
});

describe("live client", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it("authenticates, subscribes, and hands snapshots and updates over", () => {
    const { client, sockets, states } = setup();
    const got: unknown[] = [];
    client.subscribe("fleet", { snapshot: (d) => got.push(["snap", d]),
                                update: (d) => got.push(["upd", d]) });
    client.start();
    const ws = sockets[0]!;
    ws.open();
    expect(ws.sent).toEqual([{ type: "auth", token: "tok", batch: true }]);
    ws.frame({ type: "ready", heartbeat_s: 15 });
    expect(ws.sent[1]).toEqual({ type: "subscribe", channel: "fleet" });
    ws.frame({ type: "snapshot", channel: "fleet", seq: 3, data: [1] });
    ws.frame({ type: "update", channel: "fleet", seq: 4, data: 2 });
    ws.frame({ type: "update", channel: "fleet", seq: 4, data: 2 });
    expect(got).toEqual([["snap", [1]], ["upd", 2]]);
    expect(states).toEqual(["live"]);
  });

  it("takes a batch's updates in order, each judged by its seq", () => {
    const { client, sockets } = setup();
    const got: unknown[] = [];
    client.subscribe("fleet", { snapshot: (d) => got.push(["snap", d]),
                                update: (d) => got.push(["upd", d]) });
    client.subscribe("alarms", { snapshot: () => {}, update: (d) => got.push(["alarm", d]) });
    client.start();
    const ws = sockets[0]!;
    ws.open();
    ws.frame({ type: "ready", heartbeat_s: 15, batch: true });
    ws.frame({ type: "snapshot", channel: "fleet", seq: 3, data: [] });
    ws.frame({ type: "snapshot", channel: "alarms", seq: 9, data: [] });
    ws.frame({ type: "batch", frames: [
      { type: "update", channel: "fleet", seq: 3, data: "old" }, // in the snapshot already
      { type: "update", channel: "fleet", seq: 4, data: "a" },
      { type: "update", channel: "alarms", seq: 10, data: "x" },
      { type: "update", channel: "fleet", seq: 5, data: "b" },
    ] });
    expect(got).toEqual([["snap", []], ["upd", "a"], ["alarm", "x"], ["upd", "b"]]);
  });

  it("reconnects with backoff after a drop and resumes from the last seq", () => {
    const { client, sockets, states } = setup();
    const got: unknown[] = [];
    client.subscribe("alarms", { snapshot: (d) => got.push(["snap", d]),
                                 update: (d) => got.push(["upd", d]) });
    client.start();
    sockets[0]!.open();
    sockets[0]!.frame({ type: "ready", heartbeat_s: 15 });
    sockets[0]!.frame({ type: "snapshot", channel: "alarms", seq: 7, data: [] });
    sockets[0]!.frame({ type: "update", channel: "alarms", seq: 8, data: "a" });
    sockets[0]!.drop(1012); // the API restarts
    expect(states.at(-1)).toBe("reconnecting");
    vi.advanceTimersByTime(499);
    expect(sockets).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(sockets).toHaveLength(2);
    sockets[1]!.drop(); // still down: the next try waits twice as long
    vi.advanceTimersByTime(999);
    expect(sockets).toHaveLength(2);
    vi.advanceTimersByTime(1);
    const ws = sockets[2]!;
    ws.open();
    ws.frame({ type: "ready", heartbeat_s: 15 });
    expect(ws.sent[1]).toEqual({ type: "subscribe", channel: "alarms", since: 8 });
    ws.frame({ type: "resume", channel: "alarms", seq: 9 });
    ws.frame({ type: "update", channel: "alarms", seq: 9, data: "b" });
    expect(got).toEqual([["snap", []], ["upd", "a"], ["upd", "b"]]);
    expect(states.at(-1)).toBe("live");
    // And the backoff started over: the next drop retries after 0.5 s again.
    ws.drop();
    vi.advanceTimersByTime(500);
    expect(sockets).toHaveLength(4);
  });

  it("pings, and gives up a silent connection for another", () => {
    const { client, sockets } = setup();
    client.start();
    const ws = sockets[0]!;
    ws.open();
    ws.frame({ type: "ready", heartbeat_s: 15 });
    vi.advanceTimersByTime(20_000);
    expect(ws.sent.filter((m) => m.type === "ping").length).toBeGreaterThanOrEqual(1);
    ws.frame({ type: "pong" });
    vi.advanceTimersByTime(20_000);
    expect(sockets).toHaveLength(1); // the pong kept it
    vi.advanceTimersByTime(7_500); // 27.5 s of nothing: over the 25 s allowed
    expect(ws.closed).toBe(true);
    vi.advanceTimersByTime(1_000);
    expect(sockets).toHaveLength(2);
  });

  it("gives the connection up at once when the browser goes offline", () => {
    const { client, sockets, states } = setup();
    client.start();
    sockets[0]!.open();
    sockets[0]!.frame({ type: "ready", heartbeat_s: 15 });
    client.drop();
    expect(states.at(-1)).toBe("reconnecting");
    expect(sockets[0]!.closed).toBe(true);
    client.retryNow(); // back online: no waiting for the backoff
    expect(sockets).toHaveLength(2);
  });

  it("unsubscribes when the last listener leaves, and forgets the channel", () => {
    const { client, sockets } = setup();
    client.start();
    sockets[0]!.open();
    sockets[0]!.frame({ type: "ready" });
    const h = { snapshot: () => {}, update: () => {} };
    const off1 = client.subscribe("site:a", h);
    const off2 = client.subscribe("site:a", { snapshot: () => {}, update: () => {} });
    expect(sockets[0]!.sent.filter((m) => m.type === "subscribe")).toHaveLength(2);
    off1();
    expect(client.channelCount).toBe(1);
    off2();
    expect(client.channelCount).toBe(0);
    expect(sockets[0]!.sent.at(-1)).toEqual({ type: "unsubscribe", channel: "site:a" });
    off2(); // twice is harmless
  });

  it("stops at a refused token when no fresh one comes", () => {
    const { client, sockets, states } = setup();
    client.start();
    sockets[0]!.open();
    sockets[0]!.drop(4401);
    expect(states.at(-1)).toBe("denied");
    vi.advanceTimersByTime(60_000);
    expect(sockets).toHaveLength(1);
  });

  it("with no token at all it does not try", () => {
    const { client, sockets, states } = setup(null);
    client.start();
    sockets[0]!.open();
    expect(sockets[0]!.sent).toEqual([]);
    expect(states.at(-1)).toBe("denied");
  });
});
