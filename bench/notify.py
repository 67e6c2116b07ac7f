"""Notification benchmark: `--transitions` alarm transitions (raised, then cleared) over
`--sites` sites produced on `bess.breaches` at `--rate` per second, through the notifier
(the rules, the throttle with digests, the persistent outbox, the dispatcher) into a local
SMTP server (aiosmtpd; one mailbox per site) and a signed-webhook receiver (one for all).

Figures: messages sent per second; from each transition's record to the first message
naming it accepted by the SMTP server (a single message or a digest), p50 and p99; lost
transitions (never mailed) and duplicate messages (a Message-ID / Idempotency-Key seen
twice); the SMTP connections the server saw. Digesting is on: at most `--per-window`
single messages per mailbox per `--window-s`, the rest in one digest at the window's end.

The receivers run in a process of their own (`--receivers process`, the default), as a real
relay and a real webhook endpoint would: in the benchmark's process they compete for its
interpreter lock with the notifier they measure (parsing every mail), which slows the
notifier down. `--receivers thread` keeps them in this process (how the benchmark first
ran; its figures are not comparable).

    .venv/bin/python -m bench.notify [--transitions 10000] [--sites 30] [--rate 500]
                                     [--workers 4] [--receivers process|thread]

The last line is one JSON object with the figures."""

from __future__ import annotations

import argparse
import email
import email.policy
import hashlib
import hmac
import json
import multiprocessing
import re
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Protocol

TOKEN = re.compile(r"bench-(\d+)-([rc])\b")
SECRET = "bench-secret"


class Sink(Protocol):
    def record(self, message_id: str, text: str, *, timed: bool = True) -> None: ...


@dataclass
class Seen:
    """First acceptance time (ms) of every transition, every message id, and the SMTP
    connections (client addresses) that carried mail."""

    first_ms: dict[str, float] = field(default_factory=dict)
    message_ids: list[str] = field(default_factory=list)
    peers: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, message_id: str, text: str, *, timed: bool = True) -> None:
        self.add(message_id, [m.group(0) for m in TOKEN.finditer(text)] if timed else [],
                 time.time() * 1000)

    def add(self, message_id: str, tokens: list[str], at_ms: float,
            peer: str | None = None) -> None:
        with self.lock:
            self.message_ids.append(message_id)
            for token in tokens:
                self.first_ms.setdefault(token, at_ms)
            if peer is not None:
                self.peers.add(peer)


@dataclass
class Mailbox:
    seen: Seen | Forwarder

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        body = msg.get_body(("plain",))
        text = f"{msg['Subject']}\n{body.get_content() if body is not None else ''}"
        self.seen.add("mail:" + str(msg["Message-ID"]),
                      [m.group(0) for m in TOKEN.finditer(text)], time.time() * 1000,
                      peer=repr(session.peer))
        return "250 OK"


class Forwarder:
    """In the receivers' process: what they accepted, sent to the benchmark's process in
    batches (the time is taken here, when the receiver accepted)."""

    def __init__(self, pipe: Connection) -> None:
        self.pipe = pipe
        self.lock = threading.Lock()
        self.batch: list[tuple[str, list[str], float, str | None]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._forward, daemon=True)
        self.thread.start()

    def record(self, message_id: str, text: str, *, timed: bool = True) -> None:
        self.add(message_id, [m.group(0) for m in TOKEN.finditer(text)] if timed else [],
                 time.time() * 1000)

    def add(self, message_id: str, tokens: list[str], at_ms: float,
            peer: str | None = None) -> None:
        with self.lock:
            self.batch.append((message_id, tokens, at_ms, peer))

    def _forward(self) -> None:
        while not self.stop.wait(0.05):
            self.flush()

    def flush(self) -> None:
        with self.lock:
            batch, self.batch = self.batch, []
        if batch:
            self.pipe.send(("seen", batch))


def serve_receivers(pipe: Connection) -> None:
    """The receivers' process: an SMTP server and a webhook receiver until told to stop."""
    from aiosmtpd.controller import Controller

    from infra.ports import free_port

    forwarder = Forwarder(pipe)
    smtp_port = free_port()
    smtp = Controller(Mailbox(forwarder), hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    hook = webhook_server(forwarder)
    pipe.send(("ports", smtp_port, hook.server_address[1]))
    pipe.recv()  # stop
    smtp.stop()
    hook.shutdown()
    forwarder.stop.set()
    forwarder.thread.join()
    forwarder.flush()
    pipe.send(("done",))


class Receivers:
    """The SMTP server and the webhook receiver, in this process or in one of their own."""

    def __init__(self, seen: Seen, mode: str) -> None:
        self.seen, self.mode = seen, mode
        if mode == "thread":
            from aiosmtpd.controller import Controller

            from infra.ports import free_port

            self.smtp_port = free_port()
            self._smtp = Controller(Mailbox(seen), hostname="127.0.0.1", port=self.smtp_port)
            self._smtp.start()
            self._hook = webhook_server(seen)
            self.hook_port = self._hook.server_address[1]
            return
        self._pipe, child = multiprocessing.get_context("spawn").Pipe()
        self._process = multiprocessing.get_context("spawn").Process(
            target=serve_receivers, args=(child,), daemon=True)
        self._process.start()
        if not self._pipe.poll(60):
            raise RuntimeError("the receivers' process did not start")
        _, self.smtp_port, self.hook_port = self._pipe.recv()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                item = self._pipe.recv()
            except EOFError:
                return
            if item[0] == "done":
                return
            for message_id, tokens, at_ms, peer in item[1]:
                self.seen.add(message_id, tokens, at_ms, peer)

    def stop(self) -> None:
        if self.mode == "thread":
            self._smtp.stop()
            self._hook.shutdown()
            return
        self._pipe.send(("stop",))
        self._reader.join(30)
        self._process.join(30)


def webhook_server(seen: Sink) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(expected, self.headers.get("X-Bessmon-Signature", "")):
                self.send_response(401)
                self.end_headers()
                return
            seen.record("hook:" + self.headers.get("Idempotency-Key", ""), body.decode(),
                        timed=False)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def rules(sites: list[str], hook_port: int, window_s: float, per_window: int) -> str:
    lines = ["channels:"]
    lines += [f"  mail-{s}: {{type: email, to: [ops-{s}@example.test]}}" for s in sites]
    lines += [f"  hook: {{type: webhook, url: 'http://127.0.0.1:{hook_port}/', "
              "secret_env: BENCH_NOTIFY_SECRET}", "rules:"]
    for s in sites:
        lines += [f"  - name: site-{s}", f"    when: {{kind: alarm, sites: [{s}]}}",
                  f"    notify: [mail-{s}]"]
    lines += ["  - name: all-hook", "    when: {kind: alarm}", "    notify: [hook]",
              f"digest: {{window_s: {window_s}, max_per_window: {per_window}}}",
              "flapping: {window_s: 600, max_transitions: 1000}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transitions", type=int, default=10_000)
    parser.add_argument("--sites", type=int, default=30)
    parser.add_argument("--rate", type=float, default=500.0, help="transitions per second")
    parser.add_argument("--window-s", type=float, default=1.0)
    parser.add_argument("--per-window", type=int, default=5)
    parser.add_argument("--drain-s", type=float, default=60.0, help="longest wait at the end")
    parser.add_argument("--workers", type=int, default=None,
                        help="the dispatcher's sender threads (default: its own default)")
    parser.add_argument("--receivers", choices=("process", "thread"), default="process",
                        help="run the SMTP server and webhook receiver in a process of their "
                             "own (default) or in this one")
    args = parser.parse_args()

    import os

    from connectors.kafka import CheckedProducer
    from connectors.notify.service import Notifier
    from connectors.settings import Settings
    from contracts.events import BreachEvent
    from contracts.fleet import load_fleet
    from infra.services import start_broker, start_redis
    from infra.sim.fleetgen import fleet_yaml, generate_fleet

    run_dir = Path(tempfile.mkdtemp(prefix="bench-notify-"))
    broker, redis_service = start_broker(run_dir / "logs"), start_redis(run_dir / "logs")
    seen = Seen()
    receivers = Receivers(seen, args.receivers)
    smtp_port = receivers.smtp_port
    fleet_file = run_dir / "fleet.yaml"
    fleet_file.write_text(fleet_yaml(generate_fleet(args.sites, units_per_site=1)))
    fleet = load_fleet(fleet_file)
    sites = [s.id for s in fleet.sites]
    rules_file = run_dir / "rules.yaml"
    rules_file.write_text(rules(sites, receivers.hook_port, args.window_s, args.per_window))
    os.environ["BENCH_NOTIFY_SECRET"] = SECRET
    settings = Settings(KAFKA_BOOTSTRAP_SERVERS=broker.address, REDIS_URL=redis_service.address,
                        run_dir=run_dir, fleet_file=fleet_file, notify_rules=rules_file,
                        smtp_url=f"smtp://127.0.0.1:{smtp_port}?starttls=0")
    notifier = Notifier(settings, base_url="http://bessmon.example.test/")
    if args.workers is not None:
        notifier.dispatcher.workers = args.workers
    stop = threading.Event()
    worker = threading.Thread(target=notifier.run, args=(stop,), daemon=True)
    worker.start()
    notifier.ready.wait(30)
    producer = CheckedProducer(broker.address, **{"linger.ms": 1})
    sent_ms: dict[str, float] = {}
    started = time.time()
    try:
        for i in range(args.transitions):
            due = started + i / args.rate
            wait = due - time.time()
            if wait > 0:
                time.sleep(wait)
            alarm, cleared = i // 2, i % 2 == 1
            site = fleet.sites[alarm % len(fleet.sites)]
            block = site.units[0].inverters[0].blocks[0].id
            now = int(time.time() * 1000)
            token = f"bench-{alarm}-{'c' if cleared else 'r'}"
            b = BreachEvent(breach_id=f"bench:{alarm}", rule_id="cell-temp-high",
                            kind="limit", asset_id=block, site_id=site.id,
                            tag="cell_temp_max_c", severity="major",
                            state="cleared" if cleared else "raised", raised_ms=now,
                            ts_ms=now, value=46.0, threshold=45.0, message=token)
            sent_ms[token] = time.time() * 1000
            producer.produce(settings.topic_breaches, block, b.model_dump_json().encode())
        producer.flush(30)
        produced_s = time.time() - started
        deadline = time.time() + args.drain_s
        while time.time() < deadline and len(seen.first_ms) < len(sent_ms):
            time.sleep(0.2)
        wall_s = time.time() - started
    finally:
        stop.set()
        worker.join(30)
        producer.close()
        receivers.stop()
        redis_service.stop()
        broker.stop()
    mail = [m for m in seen.message_ids if m.startswith("mail:")]
    hooks = [m for m in seen.message_ids if m.startswith("hook:")]
    latencies = sorted(seen.first_ms[t] - sent_ms[t] for t in sent_ms if t in seen.first_ms)
    lost = sum(1 for t in sent_ms if t not in seen.first_ms)
    duplicates = (len(mail) - len(set(mail))) + (len(hooks) - len(set(hooks)))
    p99 = latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))] \
        if latencies else None
    figures = {
        "bench": "notify", "transitions": args.transitions, "sites": args.sites,
        "rate_per_s": args.rate, "window_s": args.window_s, "per_window": args.per_window,
        "emails": len(mail), "webhooks": len(hooks),
        "messages_per_s": round((len(mail) + len(hooks)) / max(wall_s, 1e-9), 1),
        "produce_s": round(produced_s, 1), "wall_s": round(wall_s, 1),
        "p50_ms": round(statistics.median(latencies), 1) if latencies else None,
        "p99_ms": round(p99, 1) if p99 is not None else None,
        "lost": lost, "duplicates": duplicates, "smtp_connections": len(seen.peers),
        "workers": notifier.dispatcher.workers, "receivers": args.receivers}
    print(f"{args.transitions} transitions over {args.sites} sites at {args.rate:g}/s: "
          f"{len(mail)} e-mails and {len(hooks)} webhooks ({figures['messages_per_s']}/s); "
          f"record → SMTP accepted p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms; "
          f"lost {lost}, duplicates {duplicates}", flush=True)
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
