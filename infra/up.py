"""`bessmon up`: the whole embedded stack on one machine — broker, Redis, simulator, Modbus
connector, OPC UA connector, flows, control loop and API as child processes — until Ctrl-C
or SIGTERM stops them in order. SIGUSR1 restarts the API alone (after changing its code, or
to see that dashboards and feeds reconnect and resume): the rest of the stack keeps running.

The simulator serves the fleet's last site over OPC UA (when there are several) and the
others over Modbus TCP, injects random faults at demo rates, and sends tickets for them to
the API's Jira webhook, signed with a secret made for this run (or the one set in
BESSMON_WEBHOOK_SECRET_JIRA) and given to both (the API starts after the simulator: the
simulator queues and retries until it answers). When BESSMON_TICKETING_FILE gives a
provider a REST connection, the ticket poller (`bessmon tickets poll`) runs too.

`--sites N` / `--fleet fleet-30` generate the fleet (infra/sim/portfolio.py, for the run's
seed) into `<run dir>/fleet.yaml` and, from four sites on, a contract per site into
`<run dir>/contracts/`, which every child reads as BESSMON_CONTRACTS_DIR."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
from confluent_kafka import KafkaException

from connectors import metrics
from connectors.history import HistoryStoreError
from connectors.kafka import ensure_topics
from connectors.metrics import metrics_token_path, read_targets
from connectors.notify.outbox import Outbox
from connectors.settings import Settings
from connectors.ticketing.config import TicketingSettings
from contracts.contract import fleet_contracts, load_contracts
from contracts.errors import InvalidInput
from contracts.fleet import load_fleet
from contracts.monitoring import load_monitoring
from contracts.notify import load_notify
from infra.accounts import admin_token, ensure_users
from infra.ports import free_port, is_listening
from infra.seed import seed_history
from infra.services import Service, ServiceError, spawn, start_broker, start_redis, stop_process
from infra.sim.portfolio import generate_portfolio, write_portfolio
from infra.supervise import Backoff, Supervised

# One Modbus connector process per this many units polled each second (one connector does
# ~500-700 unit polls/s on one core here: bench/connectors.py); `--connectors N` overrides.
UNITS_PER_CONNECTOR = 400


class StackError(RuntimeError):
    """The stack could not start; the message says which part and shows its log."""


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes]
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    life: Supervised = field(default_factory=lambda: Supervised(time.monotonic()))

    def tail(self, lines: int = 15) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


@dataclass
class Stack:
    settings: Settings
    # None: the fleet file and contracts of the settings; 1-3: the demo sites (and the
    # settings' contracts); more: a generated portfolio with its own contracts (run dir).
    sites: int | None = None
    api_port: int | None = None
    seed: int = 0
    speed: float = 1.0
    fault_rate: float = 0.0  # times the realistic rates (0: no random faults)
    fault_durations: float = 1.0
    ticket_delay_s: float = 300.0  # from a fault to its ticket (simulated time)
    opcua_site: str | None = None  # None: the last site when there are several; "none": none
    notify_rules: Path | None = None  # the notifier's rules (None: <run dir>/notify-rules.yaml)
    connectors: int | None = None  # Modbus connector processes (None: by the fleet's size)
    # Seed the current contract year's history from the simulator when the history has none
    # of it (infra/seed.py), before the flows start.
    seed_history: bool = True
    say: Callable[[str], None] = print
    backoff: Backoff = field(default_factory=Backoff)  # restarting a part that died
    services: list[Service] = field(default_factory=list)  # the broker and Redis it started
    service_lives: dict[str, Supervised] = field(default_factory=dict)
    topics: list[str] = field(default_factory=list)  # made again in a restarted broker
    children: list[Child] = field(default_factory=list)
    dashboard_url: str = ""
    api_base: str = ""  # http://host:port of the API
    credentials: Path | None = None  # the demo users' passwords, when this run made them
    state: dict[str, object] = field(default_factory=dict)  # what stack.json holds
    _targets_read_s: float = 0.0

    @property
    def run_dir(self) -> Path:
        return self.settings.run_dir

    def start(self) -> str:
        """Start everything; returns the dashboard URL (with the access token fragment)."""
        run_dir, logs = self.run_dir, self.run_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        for old in [*logs.glob("*.log"), *(run_dir / "metrics").glob("*.json")]:
            old.unlink()  # the metrics addresses of an earlier run's parts, too
        settings = self.settings
        own_broker = not settings.kafka_bootstrap_servers
        try:
            if own_broker:
                self.services.append(start_broker(logs))
                settings = settings.model_copy(
                    update={"kafka_bootstrap_servers": self.services[-1].address})
            if not settings.redis_url:
                self.services.append(start_redis(logs))
                settings = settings.model_copy(update={"redis_url": self.services[-1].address})
        except ServiceError as exc:
            raise StackError(str(exc)) from None
        self.service_lives = {s.name: Supervised(time.monotonic()) for s in self.services}
        bootstrap = settings.require_kafka()
        self.topics = [settings.topic_telemetry, settings.topic_status,
                       settings.topic_availability, settings.topic_dlq, settings.topic_tickets,
                       settings.topic_commands, settings.topic_command_results,
                       settings.topic_device_health]
        ensure_topics(bootstrap, self.topics, settings.topic_partitions)
        fleet_file, contracts_dir = settings.fleet_file, settings.contracts_dir
        if self.sites is not None:
            fleet_file, own = write_portfolio(generate_portfolio(self.sites, self.seed), run_dir)
            contracts_dir = own or contracts_dir
        fleet = load_fleet(fleet_file)
        sites = [s.id for s in fleet.sites]
        try:  # every child reads these contracts: refused here before anything starts
            contracts = fleet_contracts(load_contracts(contracts_dir), fleet)
        except InvalidInput as exc:
            raise StackError(f"contracts: {exc}") from None
        opcua_site = self.opcua_site if self.opcua_site is not None else \
            (sites[-1] if len(sites) > 1 else "none")
        if opcua_site != "none" and opcua_site not in sites:
            raise StackError(f"--opcua-site: no site {opcua_site!r} in {fleet_file}")
        rules = self.notify_rules or run_dir / "notify-rules.yaml"
        if self.notify_rules is not None or rules.exists():
            load_notify(rules)  # a broken file is refused before anything starts
        try:  # a broken ticketing file is refused before anything starts
            ticketing = TicketingSettings()
            poll_tickets = bool(ticketing.config.rest_providers())
        except ValueError as exc:
            raise StackError(f"ticketing configuration: {exc}") from None
        if self.seed_history:  # before any poll: the live flows take over from it
            try:
                seed_history(settings, fleet, load_monitoring(settings.monitoring_file),
                             contracts, seed=self.seed, now_ms=int(time.time() * 1000),
                             work_dir=run_dir / "seed", say=self.say)
            except InvalidInput as exc:
                raise StackError(f"monitoring: {exc}") from None
            except (HistoryStoreError, KafkaException) as exc:  # the stack runs without it
                self.say(f"history not seeded: {exc}")
        self.credentials = ensure_users(settings, fleet)
        token = admin_token(settings)
        sim_token = secrets.token_urlsafe(24)
        api_port = self.api_port if self.api_port is not None else 8000
        if api_port == 0 or is_listening(settings.api_host, api_port):
            api_port = free_port(settings.api_host)
        sim_port = free_port()
        devices_file = run_dir / "devices.yaml"
        opcua_file = run_dir / "opcua-devices.yaml"
        devices_file.unlink(missing_ok=True)
        opcua_file.unlink(missing_ok=True)
        base = self.api_base = f"http://{settings.api_host}:{api_port}"
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
               "REDIS_URL": settings.require_redis(), "BESSMON_FLEET_FILE": str(fleet_file),
               "BESSMON_CONTRACTS_DIR": str(contracts_dir),
               "BESSMON_RUN_DIR": str(run_dir),
               "BESSMON_SIM_TOKEN": sim_token, "PYTHONUNBUFFERED": "1",
               "BESSMON_NOTIFY_RULES": str(rules.resolve()),
               # Each part's metrics on a free port, written to <run dir>/metrics/<part>.json
               "BESSMON_METRICS_PORT": "0"}
        # The Jira webhook's secret: the simulator signs with it, the API checks. One made
        # for this run, unless one is set (a real Jira sends to this API too); only these
        # two processes get it.
        jira_secret = env.pop("BESSMON_WEBHOOK_SECRET_JIRA", "") or secrets.token_urlsafe(32)
        ticketing_env = {**env, "BESSMON_WEBHOOK_SECRET_JIRA": jira_secret}
        cli = [sys.executable, "-m", "infra.cli"]

        sim_args = [*cli, "sim", "--keep-ports", "--devices-out", str(devices_file),
                    "--control-port",
                    str(sim_port), "--seed", str(self.seed), "--speed", str(self.speed),
                    "--fault-rate", str(self.fault_rate),
                    "--fault-durations", str(self.fault_durations), "--tickets-url", base,
                    "--ticket-delay", str(self.ticket_delay_s)]
        if opcua_site != "none":
            sim_args += ["--opcua-site", opcua_site, "--opcua-devices-out", str(opcua_file)]
        self._child("sim", sim_args, ticketing_env)
        modbus = opcua_site == "none" or len(sites) > 1  # else the one site is on OPC UA
        # The simulator writes the OPC UA list first: the Modbus one means both are there.
        self._wait("simulator", lambda: (devices_file if modbus else opcua_file).exists(), 30)
        if modbus:  # N connectors, each polling its share of the gateways
            units = sum(len(s.units) for s in fleet.sites if s.id != opcua_site)
            gateways = len(sites) - (opcua_site != "none")
            n = min(gateways, self.connectors or max(1, -(-units // UNITS_PER_CONNECTOR)))
            for k in range(n):
                self._child("connector" if n == 1 else f"connector-{k + 1}of{n}",
                            [*cli, "connect", "modbus", "--devices", str(devices_file),
                             "--shard", f"{k}/{n}"], env)
        if opcua_site != "none":
            self._child("opcua-connector", [*cli, "connect", "opcua", "--devices",
                                            str(opcua_file)], env)
        # Bytewax recovery: a flows process that died resumes from its last snapshot (every
        # 10 s) — nothing lost, nothing counted twice. A broker started here begins empty,
        # so snapshots of an earlier run (offsets into its topics) are dropped; with your own
        # broker the flows resume where the last run stopped.
        recovery = run_dir / "recovery"
        if own_broker:  # and the notifier's places in the topics (of an earlier broker)
            shutil.rmtree(recovery, ignore_errors=True)
            outbox = Outbox(settings.notify_db_path)
            outbox.forget_consumed()
            outbox.close()
        self._child("flows", [*cli, "flows", "--recovery-dir", str(recovery)], env)
        self._child("control", [*cli, "control", "run"], env)
        # The notifier always runs: with no rules file yet it tells nobody, and picks up
        # the rules an admin saves through the API (or edits in the file) while it runs.
        self._child("notify", [*cli, "notify", "run", "--base-url", base + "/"], env)
        # The scheduled compliance reports: `report run-due` every 10 minutes, into
        # <run dir>/reports/, new versions e-mailed through the notifier's outbox.
        self._child("reports", [*cli, "report", "schedule", "--base-url", base + "/"], env)
        # The analytics archive: the closed days of the history into Parquet, every hour.
        self._child("archive", [*cli, "archive", "schedule"], env)
        if poll_tickets:  # tickets without webhooks: a vendor's REST API is configured
            self._child("tickets", [*cli, "tickets", "poll", "--base-url",
                                    ticketing.public_url or base + "/"], env)
        self._child("api", [*cli, "api", "--host", settings.api_host, "--port", str(api_port)],
                    ticketing_env)
        self._wait("API", lambda: _healthy(f"{base}/api/v1/health"), 60)
        state = {"api_url": base + "/", "api_metrics_url": f"{base}/metrics",
                 "metrics_token_file": None if settings.metrics_token
                 else str(metrics_token_path(settings)),
                 "sim_url": f"http://127.0.0.1:{sim_port}",
                 "sim_token": sim_token, "kafka": bootstrap, "redis": settings.require_redis(),
                 "fleet_file": str(fleet_file), "contracts_dir": str(contracts_dir),
                 "contracts": len(contracts), "pid": os.getpid(),
                 "opcua_site": None if opcua_site == "none" else opcua_site,
                 **self.parts()}
        self._write_state(state)
        self.dashboard_url = f"{base}/#token={token}"
        return self.dashboard_url

    def _write_state(self, state: dict[str, object]) -> None:
        self.state = state
        write_private(self.run_dir / "stack.json", json.dumps(state, indent=2))

    def _child(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        process, log_path, log = spawn(name, argv, self.run_dir / "logs", env)
        self.children.append(Child(name, process, log_path, log, argv, env))

    def restart_api(self) -> None:
        """Stop the API and start it again on the same port with the same command; the
        other parts keep running (clients see the API go away and come back)."""
        index = next(i for i, c in enumerate(self.children) if c.name == "api")
        old = self.children[index]
        stop_process(old.process, timeout_s=10)
        old.log.close()
        process, log_path, log = spawn("api", old.argv, self.run_dir / "logs", old.env)
        self.children[index] = Child("api", process, log_path, log, old.argv, old.env,
                                     Supervised(time.monotonic(), restarts=old.life.restarts))
        self._wait("API", lambda: _healthy(f"{self.api_base}/api/v1/health"), 60)
        self._write_state({**self.state, **self.parts()})

    def _wait(self, what: str, ready: Callable[[], bool], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():
            for child in self.children:
                if child.process.poll() is not None:
                    raise StackError(f"{child.name} exited with status {child.process.returncode}"
                                     f" while waiting for the {what}:\n{child.tail()}")
            if time.monotonic() > deadline:
                raise StackError(f"the {what} was not ready after {timeout_s:.0f}s "
                                 f"(logs in {self.run_dir / 'logs'})")
            time.sleep(0.1)

    def watch(self, stop_requested: Callable[[], bool],
              restart_requested: Callable[[], bool] = lambda: False) -> int:
        """Block until a stop is requested (0); restart the API when asked meanwhile, and
        every part that dies, with backoff (infra/supervise.py)."""
        while not stop_requested():
            if restart_requested():
                self.say("restarting the API…")
                try:
                    self.restart_api()
                except StackError as exc:
                    self.say(f"the API did not come back: {exc}; stopping.")
                    return 1
                self.say(f"API restarted ({self.api_base})")
                continue
            self.supervise(time.monotonic())
            time.sleep(0.2)
        return 0

    def supervise(self, now_s: float) -> None:
        """One look at every part: a part that died is logged and due again after its
        backoff; a part that is due is started again with the same command."""
        changed = False
        for index, child in enumerate(self.children):
            life = child.life
            if life.due_s is None and (status := child.process.poll()) is not None:
                delay = life.died(now_s, status, self.backoff)
                self.say(f"{child.name} exited with status {status} after "
                         f"{now_s - life.started_s:.0f} s; starting it again in {delay:.0f} s "
                         f"(restart {life.restarts + 1}); its log ends:\n{child.tail()}")
                changed = True
            elif life.is_due(now_s):
                child.log.close()
                process, log_path, log = spawn(child.name, child.argv, self.run_dir / "logs",
                                               child.env)
                life.restarted(now_s)
                self.children[index] = Child(child.name, process, log_path, log, child.argv,
                                             child.env, life)
                self.say(f"{child.name} started again (pid {process.pid}, restart "
                         f"{life.restarts})")
                changed = True
                metrics.PART_RESTARTS.labels(child.name).inc()
        changed = self._supervise_services(now_s) or changed
        if self.state and now_s - self._targets_read_s >= 2.0:  # parts' metrics addresses
            self._targets_read_s = now_s
            changed = changed or read_targets(self.run_dir) != self.state.get("metrics")
        if changed:
            self._write_state({**self.state, **self.parts()})

    def _supervise_services(self, now_s: float) -> bool:
        """The broker and Redis this stack started: one that died is started again on its
        port, so every part reconnects by itself. Neither keeps data on disk: Redis's hot
        state is written again by the flows; what the broker held is gone (the topics are
        made again, empty; the parts carry on from there — docs/operations.md)."""
        changed = False
        for index, service in enumerate(self.services):
            life = self.service_lives.setdefault(service.name, Supervised(now_s))
            if life.due_s is None and (status := service.process.poll()) is not None:
                delay = life.died(now_s, status, self.backoff)
                lost = (" — it kept its topics in memory: what they held is lost"
                        if service.name == "kafka" else "")
                self.say(f"{service.name} exited with status {status}{lost}; starting it again "
                         f"on {service.address} in {delay:.0f} s (restart {life.restarts + 1})")
                changed = True
            elif life.is_due(now_s):
                service.close_log()
                port = int(service.address.rsplit(":", 1)[1].split("/", 1)[0])
                try:
                    if service.name == "kafka":
                        again = start_broker(self.run_dir / "logs", port)
                        ensure_topics(again.address, self.topics,
                                      self.settings.topic_partitions)
                    else:
                        again = start_redis(self.run_dir / "logs", port)
                except (ServiceError, KafkaException) as exc:
                    delay = life.died(now_s, -1, self.backoff)
                    self.say(f"{service.name} did not start again: {exc}; next try in "
                             f"{delay:.0f} s")
                    continue
                self.services[index] = again
                life.restarted(time.monotonic())
                self.say(f"{service.name} started again (pid {again.process.pid}, "
                         f"restart {life.restarts})")
                metrics.PART_RESTARTS.labels(service.name).inc()
                if service.name == "kafka":
                    self._restart_producers(time.monotonic())
                changed = True
        return changed

    def _restart_producers(self, now_s: float) -> None:
        """After a broker that restarted empty: every part that talks to it starts again.
        Their producers are idempotent, and the new broker knows none of their producer ids
        (it refuses their records for good); a new process gets a new one. The places kept
        in the old broker's topics mean nothing in the new one: the flows' recovery
        snapshots and the notifier's places are dropped, as when `bessmon up` starts its
        own broker — the flows start afresh on the new topics (what they wrote to the
        history stays). A connector sends what it spooled meanwhile."""
        self.say("every part but the simulator starts again on the new broker; the flows "
                 "start afresh (their recovery snapshots point into the old one)")
        for index, child in enumerate(self.children):  # one by one: each down briefly
            if child.name == "sim":
                continue
            stop_process(child.process, timeout_s=10)
            child.log.close()
            if child.name == "flows":
                shutil.rmtree(self.run_dir / "recovery", ignore_errors=True)
            elif child.name == "notify":
                outbox = Outbox(self.settings.notify_db_path)
                outbox.forget_consumed()
                outbox.close()
            process, log_path, log = spawn(child.name, child.argv, self.run_dir / "logs",
                                           child.env)
            child.life.restarted(now_s)
            self.children[index] = Child(child.name, process, log_path, log, child.argv,
                                         child.env, child.life)
            metrics.PART_RESTARTS.labels(child.name).inc()

    def parts(self) -> dict[str, object]:
        """stack.json's view of the parts: their pids, and for each its restarts, state
        and last exit status; where each part's metrics are (connectors/metrics.py)."""
        for c in self.children:
            metrics.PART_UP.labels(c.name).set(0 if c.life.due_s is not None else 1)
        for name, life in self.service_lives.items():
            metrics.PART_UP.labels(name).set(0 if life.due_s is not None else 1)
        return {"children": {c.name: c.process.pid for c in self.children},
                "parts": {c.name: {"pid": c.process.pid, "restarts": c.life.restarts,
                                   "state": "restarting" if c.life.due_s is not None
                                   else "running", "last_exit": c.life.last_status}
                          for c in self.children} | {
                    s.name: {"pid": s.process.pid, "restarts": self.service_lives[s.name].restarts,
                             "state": "restarting" if self.service_lives[s.name].due_s
                             is not None else "running",
                             "last_exit": self.service_lives[s.name].last_status}
                    for s in self.services if s.name in self.service_lives},
                "metrics": read_targets(self.run_dir)}

    def stop(self) -> None:
        """Stop in reverse order of start: API first, broker last. Nothing is left running."""
        for child in reversed(self.children):
            stop_process(child.process, timeout_s=10)
            child.log.close()
        self.children.clear()
        for service in reversed(self.services):
            service.stop()
        self.services.clear()
        (self.run_dir / "stack.json").unlink(missing_ok=True)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (it holds tokens), whole or not at all: a reader
    never sees half of it (written aside, then renamed over it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    aside = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(aside, path)


def run_up(settings: Settings, *, sites: int | None, api_port: int | None, seed: int,
           speed: float, fault_rate: float = 0.0, fault_durations: float = 1.0,
           opcua_site: str | None = None, ticket_delay_s: float = 300.0,
           notify_rules: Path | None = None, connectors: int | None = None,
           seed_history: bool = True) -> int:
    stack = Stack(settings, sites=sites, api_port=api_port, seed=seed, speed=speed,
                  fault_rate=fault_rate, fault_durations=fault_durations, opcua_site=opcua_site,
                  ticket_delay_s=ticket_delay_s, notify_rules=notify_rules,
                  connectors=connectors, seed_history=seed_history)
    stopping = running = restart = False

    def request_stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        if not running:  # still starting: abandon the start, then stop what is up
            raise KeyboardInterrupt

    def request_restart(signum: int, _frame: object) -> None:
        nonlocal restart
        restart = True

    def restart_requested() -> bool:
        nonlocal restart
        asked, restart = restart, False
        return asked

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGUSR1, request_restart)
    started = time.monotonic()
    supervisor_metrics = None
    try:
        url = stack.start()  # (clears the metrics addresses of an earlier run first)
        supervisor_metrics = metrics.serve_metrics(settings, "supervisor")
        running = True
        print(f"Dashboard: {url}", flush=True)
        print(f"  ready in {time.monotonic() - started:.1f}s; logs in {stack.run_dir / 'logs'}; "
              "Ctrl-C stops everything", flush=True)
        if supervisor_metrics is not None:
            token = "BESSMON_METRICS_TOKEN" if settings.metrics_token \
                else metrics_token_path(settings)
            print(f"  metrics: {stack.api_base}/metrics and every part's in "
                  f"{stack.run_dir / 'metrics'}/*.json (Prometheus file_sd); bearer token "
                  f"{token}", flush=True)
        users = stack.credentials or stack.settings.users_path
        print(f"  signed in as admin; users and their passwords: {users}", flush=True)
        status = stack.watch(lambda: stopping, restart_requested)
        print("stopping…", flush=True)
        return status
    except StackError as exc:
        print(f"bessmon up: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        stack.stop()
        if supervisor_metrics is not None:
            supervisor_metrics.close()
