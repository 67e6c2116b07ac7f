"""Prometheus metrics of every part, in one place (docs/metrics.md lists them with their
meaning), and the small authenticated HTTP server each part that is not the API exposes
them on.

Every metric is defined here, at import, in prometheus_client's default registry (which
also holds the process's `process_*` / `python_*` figures and Bytewax's own
`bytewax_kafka_consumer_lag`); a part only updates the ones of its own, so a part's scrape
shows its figures and zeros (or nothing, for labelled ones) for the others. Names carry the
`bessmon_` prefix and their unit (`_seconds`, `_bytes`, `_records`; counters end in
`_total`). Labels are bounded sets — a gateway, a topic and partition, a reason, a kind, a
channel type — never an asset or a device: 30 sites of 300 assets each would be 9,000
series per figure.

`serve_metrics(settings, part)` starts the server of a process: `/metrics` on
`BESSMON_METRICS_HOST` (default 127.0.0.1: not reachable from another host unless asked)
and `BESSMON_METRICS_PORT` (default 0: a free port), answered only with
`Authorization: Bearer <metrics token>` (`metrics_token`), 401 otherwise. The process writes
where it listens to `<run_dir>/metrics/<part>.json`, in Prometheus' file-based service
discovery format (`file_sd_configs`), and removes it when it stops; `bessmon up` copies the
addresses into `<run_dir>/stack.json` (`metrics`)."""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from wsgiref.simple_server import WSGIServer, make_server

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer, _SilentHandler

from connectors.secret_file import read_or_create
from connectors.settings import PLACEHOLDER_TOKENS, Settings

log = logging.getLogger(__name__)

MIN_TOKEN_CHARS = 32
TOKEN_FILE_CHARS = 43  # secrets.token_urlsafe(32)

# Latencies from a millisecond to ten seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0)

# --- connectors (connectors/modbus/poller.py, connectors/publish.py) ----------------------

CONNECTOR_POLLS = Counter(
    "bessmon_connector_polls_total",
    "Device polls started, per gateway (host:port) and protocol", ["protocol", "gateway"])
CONNECTOR_POLL_ERRORS = Counter(
    "bessmon_connector_poll_errors_total",
    "Device polls that failed, per gateway and reason (unavailable: timeout or connection "
    "down; refused: an exception response; garbled: an answer that cannot be decoded; "
    "undecodable: our decoding failed)", ["protocol", "gateway", "reason"])
CONNECTOR_POLL_SECONDS = Histogram(
    "bessmon_connector_poll_duration_seconds",
    "Time from a poll's request to its whole answer (successful polls), per gateway",
    ["protocol", "gateway"], buckets=LATENCY_BUCKETS)
CONNECTOR_PUBLISHED = Counter(
    "bessmon_connector_records_published_total",
    "Records a connector handed to the broker (or its spool), per kind (sample, health, "
    "dead_letter)", ["kind"])
CONNECTOR_DEAD_LETTERS = Counter(
    "bessmon_connector_dead_letters_total",
    "Values and answers a connector refused (to the dead-letter topic), per reason",
    ["reason"])
CONNECTOR_SPOOL_FULL = Counter(
    "bessmon_connector_spool_full_total",
    "Records a connector dropped because its producer queue and its disk spool were both "
    "full (data lost)")
CONNECTOR_SPOOL_BYTES = Gauge(
    "bessmon_connector_spool_bytes",
    "Bytes waiting in a connector's disk spool (the broker away or slow)", ["connector"])
CONNECTOR_QUEUE_RECORDS = Gauge(
    "bessmon_connector_producer_queue_records",
    "Records a connector's producer holds in memory, not yet acknowledged by the broker",
    ["connector"])

# --- flows (flows/telemetry_flow.py, flows/sink_errors.py, flows/history_sink.py) ---------

FLOW_RECORDS_IN = Counter(
    "bessmon_flow_records_in_total",
    "Records the flows read, per input (telemetry, ticket, dead_letter: a connector's "
    "dead letters, counted for the data-quality view)", ["input"])
FLOW_OUTPUTS = Counter(
    "bessmon_flow_outputs_total",
    "Items the flows' site step produced, per kind (StatusChange, SiteAvailability, "
    "BreachEvent, Alert, DeadLetter, …)", ["kind"])
FLOW_DEAD_LETTERS = Counter(
    "bessmon_flow_dead_letters_total",
    "Records and items the flows sent to the dead-letter topic, per source (flows.telemetry, "
    "flows.tickets, flows.<sink>) and reason", ["source", "reason"])
FLOW_SINK_SECONDS = Histogram(
    "bessmon_flow_sink_write_duration_seconds",
    "Time to write one batch to a sink (history, redis, kafka), retries of an outage "
    "included", ["sink"], buckets=LATENCY_BUCKETS)
FLOW_SINK_OUTAGES = Counter(
    "bessmon_flow_sink_outages_total",
    "Failed writes of a whole batch to a sink (retried, nothing dropped)", ["sink"])
HISTORY_WRITE_SECONDS = Histogram(
    "bessmon_history_write_duration_seconds",
    "Time of one write to the history store, per table", ["table"], buckets=LATENCY_BUCKETS)

# --- consumers (control/service.py, connectors/notify/service.py) --------------------------

CONSUMER_LAG = Gauge(
    "bessmon_consumer_lag_records",
    "Records of a topic partition not yet read by a part's consumer (high watermark minus "
    "position; the flows' is bytewax_kafka_consumer_lag)", ["consumer", "topic", "partition"])
CONSUMER_RECORDS = Counter(
    "bessmon_consumer_records_total", "Records a part's consumer read, per topic",
    ["consumer", "topic"])

# --- API (api/metrics.py, api/routes/ws.py, api/live.py) ----------------------------------

HTTP_REQUESTS = Counter(
    "bessmon_http_requests_total",
    "HTTP requests answered by the API, per method, route template and status",
    ["method", "route", "status"])
HTTP_SECONDS = Histogram(
    "bessmon_http_request_duration_seconds",
    "Time to answer an HTTP request, per method and route template", ["method", "route"],
    buckets=LATENCY_BUCKETS)
WS_CLIENTS = Gauge("bessmon_ws_clients", "Live-feed WebSocket clients signed in now")
WS_FRAMES = Counter(
    "bessmon_ws_frames_sent_total",
    "Frames sent to live-feed clients, per frame type (update, snapshot, heartbeat, …)",
    ["type"])
WS_UPDATES = Counter(
    "bessmon_ws_updates_total",
    "Updates queued for live-feed clients, per channel kind (fleet, site, asset, alarms, "
    "alerts)", ["channel"])
WS_CLOSED = Counter(
    "bessmon_ws_closed_total",
    "Live-feed sockets closed by the server, per close code (4401 not authenticated, 4408 "
    "too slow, 1011 internal error)", ["code"])

# --- control loop (control/service.py) -----------------------------------------------------

CONTROL_COMMANDS = Counter(
    "bessmon_control_commands_sent_total",
    "Setpoint commands the control loop sent to the connectors, per command kind", ["kind"])
CONTROL_RESULTS = Counter(
    "bessmon_control_command_results_total",
    "Command results read by the control loop, per decider (control, connector) and outcome",
    ["by", "outcome"])
CONTROL_UNITS = Gauge(
    "bessmon_control_units", "Battery units per state of the control loop's state machine",
    ["state"])
CONTROL_DEAD_LETTERS = Counter(
    "bessmon_control_dead_letters_total",
    "Records the control loop refused (to the dead-letter topic), per reason", ["reason"])
CONTROL_TICK_SECONDS = Histogram(
    "bessmon_control_tick_duration_seconds",
    "Time of one control loop tick (staleness, ramps, heartbeats)", buckets=LATENCY_BUCKETS)

# --- notifier (connectors/notify/service.py, dispatcher.py) -------------------------------

NOTIFY_OUTBOX = Gauge(
    "bessmon_notify_outbox_messages",
    "Messages in the notifier's outbox per state (pending: the backlog to send)", ["state"])
NOTIFY_MESSAGES = Counter(
    "bessmon_notify_messages_total",
    "Send attempts per channel type (email, webhook, slack, teams) and outcome (sent, "
    "retried, failed)", ["channel_type", "outcome"])
NOTIFY_SEND_SECONDS = Histogram(
    "bessmon_notify_send_duration_seconds",
    "Time of one send attempt, per channel type", ["channel_type"], buckets=LATENCY_BUCKETS)
NOTIFY_ENQUEUED = Counter(
    "bessmon_notify_enqueued_total", "Messages put into the outbox (new ones only)")

# --- supervisor (`bessmon up`, infra/up.py) ------------------------------------------------

PART_RESTARTS = Counter(
    "bessmon_part_restarts_total",
    "Times `bessmon up` started a part again after it died", ["part"])
PART_UP = Gauge(
    "bessmon_part_up", "1 while a part runs, 0 while `bessmon up` waits to restart it",
    ["part"])


def metric_names() -> set[str]:
    """Every sample name the default registry exposes (counters with `_total` and
    `_created`, histograms with `_bucket`, `_sum`, `_count`), for the dashboards' test."""
    names: set[str] = set()
    for metric in REGISTRY.collect():
        names.add(metric.name)
        names.update(s.name for s in metric.samples)
        if metric.type == "counter":
            names.add(metric.name + "_total")
        elif metric.type == "histogram":
            names.update(metric.name + s for s in ("_bucket", "_sum", "_count"))
    return names


# --- the metrics token ---------------------------------------------------------------------

def metrics_token_path(settings: Settings) -> Path:
    return settings.run_dir / "auth" / "metrics.token"


def metrics_token(settings: Settings) -> str:
    """The bearer token a scraper shows: `BESSMON_METRICS_TOKEN` when set (the same on every
    host of a deployment: at least 32 characters), else this machine's key file
    `<run_dir>/auth/metrics.token`, made owner-only (0600) on first use by whichever part
    needs it first and shared by the parts of the machine (connectors/ack_secret.py does the
    same for the ack-link key). Never logged."""
    if settings.metrics_token is not None:
        value = settings.metrics_token.strip()
        if value.lower() in PLACEHOLDER_TOKENS or len(value) < MIN_TOKEN_CHARS:
            raise ValueError(f"BESSMON_METRICS_TOKEN must be a random secret of at least "
                             f"{MIN_TOKEN_CHARS} characters (e.g. openssl rand -base64 32)")
        return value
    return load_or_create_token(metrics_token_path(settings))


def load_or_create_token(path: Path) -> str:
    """The token in `path`, made first if there is none (connectors/secret_file.py)."""
    return read_or_create(path, lambda: secrets.token_urlsafe(32).encode("ascii"),
                          _read_token)


def _read_token(path: Path) -> str:
    token = path.read_text(encoding="ascii", errors="replace").strip()
    if len(token) < MIN_TOKEN_CHARS:
        raise ValueError(f"{path}: not a metrics token (at least {MIN_TOKEN_CHARS} "
                         f"characters expected); delete it to make a new one (scrapers "
                         f"need the new one)")
    return token


def bearer_ok(header: str | None, token: str) -> bool:
    """`Authorization: Bearer <token>`, compared in constant time."""
    if not header:
        return False
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode("utf-8", "replace"), token.encode("utf-8"))


# --- the server ----------------------------------------------------------------------------

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def authenticated_app(token: str) -> WsgiApp:
    """prometheus_client's WSGI app behind a bearer token: `/metrics` (and `/`) with the
    token, 401 without it or with another, 404 elsewhere."""
    metrics = make_wsgi_app(REGISTRY)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "/") not in ("/", "/metrics"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found\n"]
        if not bearer_ok(environ.get("HTTP_AUTHORIZATION"), token):
            start_response("401 Unauthorized", [("Content-Type", "text/plain"),
                                                 ("WWW-Authenticate", "Bearer")])
            return [b"a bearer token is required (the metrics token)\n"]
        return cast(Iterable[bytes], metrics(environ, start_response))

    return app


@dataclass
class MetricsServer:
    part: str
    host: str
    port: int
    target_file: Path
    server: WSGIServer
    thread: threading.Thread

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.target_file.unlink(missing_ok=True)


def target_file(settings: Settings, part: str) -> Path:
    return settings.run_dir / "metrics" / f"{part}.json"


def serve_metrics(settings: Settings, part: str) -> MetricsServer | None:
    """Start the metrics server of this process (a daemon thread) and write where it
    listens to `<run_dir>/metrics/<part>.json`; None when `BESSMON_METRICS_ENABLED` is
    false. `part` names the process (connector-1of2, flows-0, control, notify, …)."""
    if not settings.metrics_enabled:
        return None
    token = metrics_token(settings)
    try:
        server = make_server(settings.metrics_host, settings.metrics_port,
                             authenticated_app(token), ThreadingWSGIServer,
                             handler_class=_SilentHandler)
    except OSError as exc:
        raise RuntimeError(f"{part}: cannot serve metrics on {settings.metrics_host}:"
                           f"{settings.metrics_port} ({exc}); BESSMON_METRICS_PORT=0 takes a "
                           "free port") from None
    port = int(server.server_port)
    thread = threading.Thread(target=server.serve_forever, name=f"metrics-{part}",
                              daemon=True)
    thread.start()
    path = target_file(settings, part)
    host = settings.metrics_host if settings.metrics_host not in ("0.0.0.0", "::") \
        else "127.0.0.1"
    _write_atomically(path, json.dumps([{"targets": [f"{host}:{port}"],
                                         "labels": {"part": part}}]))
    log.info("metrics of %s on http://%s:%d/metrics (bearer token: %s)", part,
             settings.metrics_host, port,
             "BESSMON_METRICS_TOKEN" if settings.metrics_token else metrics_token_path(settings))
    return MetricsServer(part, host, port, path, server, thread)


def read_targets(run_dir: Path) -> dict[str, str]:
    """The parts' metrics addresses as their files say (`<run_dir>/metrics/*.json`)."""
    out: dict[str, str] = {}
    for path in sorted((run_dir / "metrics").glob("*.json")):
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))[0]
            out[str(entry["labels"]["part"])] = str(entry["targets"][0])
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            continue
    return out


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    aside = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    aside.write_text(text, encoding="utf-8")
    os.replace(aside, path)


@contextlib.contextmanager
def exposed(settings: Settings, part: str) -> Iterator[MetricsServer | None]:
    """`serve_metrics` for the time of a `with` block (a part's command runs inside it)."""
    server = serve_metrics(settings, part)
    try:
        yield server
    finally:
        if server is not None:
            server.close()


def record_lag(consumer: Any, name: str) -> None:
    """`bessmon_consumer_lag_records` of each partition assigned to a confluent-kafka
    `consumer` (labelled `name`): the high watermark of the partition's last fetch (cached
    by librdkafka: no request to the broker) less the consumer's position. A partition
    without both yet (nothing fetched) is left out. On Tansu, the broker `bessmon up` runs,
    a high watermark is at most the true end (see docs/metrics.md), so the lag is at most
    the true lag; never below zero."""
    try:
        positions = consumer.position(consumer.assignment())
    except Exception:  # a consumer closing or not assigned: no figure this time
        return
    for tp in positions:
        if tp.offset < 0:
            continue
        try:
            watermarks = consumer.get_watermark_offsets(tp, cached=True)
        except Exception:
            continue
        if watermarks is None or watermarks[1] < 0:
            continue
        CONSUMER_LAG.labels(name, tp.topic, str(tp.partition)).set(
            max(0, watermarks[1] - tp.offset))
