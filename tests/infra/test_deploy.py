"""The scale-out deploy files (infra/deploy/) rendered and checked against the real code.

Nothing here runs a container: the Compose file is interpolated (`${VAR:-default}`, `$$`) and
loaded, the Kustomize base is resolved by hand (its resources, ConfigMap generators and
image override), Kubernetes' `$(VAR)` references in container arguments are expanded from
the container's environment, once per StatefulSet pod. Then:

  * every bessmon command line parses with the CLI's own `build_parser()`, and every flag is
    one the CLI has;
  * every variable the files give a bessmon part is a setting (`Settings`,
    `TicketingSettings`) or a name the code (or uvicorn) reads, and the values pass the
    settings' validation;
  * every path inside the image or under /etc/bessmon is a file of the repository or of the
    ConfigMap, and the fleet and device lists load with the real loaders;
  * the Modbus shards are 0..N-1 of one N, each with gateways; the Bytewax cluster's process
    ids are 0..N-1, its addresses name its own processes in order, its recovery partitions
    are made for N processes, and the topics have at least N partitions;
  * the topics created are the settings' topics; the API processes are the proxy's
    upstream (and the Service's endpoints); health checks and probes ask real routes.

The `*_problems` helpers return what is wrong; the last tests feed them broken inputs, so a
check that can no longer fail is noticed."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import shlex
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from connectors.modbus.devices import load_devices, shard
from connectors.opcua.config import load_devices as load_opcua_devices
from connectors.settings import REPO_ROOT, Settings
from connectors.ticketing.config import TicketingSettings, load_ticketing_config
from contracts.fleet import Fleet, load_fleet
from infra.cli import build_parser

DEPLOY = REPO_ROOT / "infra" / "deploy"
K8S = DEPLOY / "k8s"
IMAGE_ROOT = "/opt/bessmon"  # the Dockerfile's WORKDIR: the repository inside the image
CONFIG_ROOT = "/etc/bessmon"  # the site configuration (compose: a mount; k8s: a ConfigMap)

# Variables the parts are given that are not settings, each with where it is read.
NOT_SETTINGS = {
    "PYTHONUNBUFFERED": "python",
    "FORWARDED_ALLOW_IPS": "uvicorn",  # checked against uvicorn's source below
    "POD_INDEX": "the deploy files' own $(POD_INDEX)",
    "BESSMON_REPORTS_FILE": "infra/cli/report.py",
    "JIRA_API_TOKEN": "the password_env of infra/deploy/k8s/config/ticketing.yaml",
}
# The only Secret the base refers to, and the keys it may have (documented in
# kustomization.yaml).
SECRET = "bessmon-secrets"
SECRET_VALUES = {"questdb-url": "questdb://questdb:9000?pg_port=8812&user=admin&password=x",
                 "questdb-password": "x" * 20, "ack-secret": "a" * 44,
                 "smtp-url": "smtp://relay.example.net:587",
                 "webhook-secret-jira": "j" * 32, "webhook-secret-servicenow": "s" * 32,
                 "webhook-secret-zendesk": "z" * 32}


# -- rendering --------------------------------------------------------------------------------

INTERPOLATION = re.compile(r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
                           r"(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's interpolation: `$$` is `$`, `${X}`, `$X`, `${X:-d}`, `${X-d}`, `${X:?e}`."""
    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m["name"] or m["bare"]
        value = env.get(name)
        op = m["op"]
        if op in (":-", "-"):
            if value is None or (op == ":-" and value == ""):
                return str(m["arg"])
        elif op in (":?", "?") and (value is None or (op == ":?" and value == "")):
            raise ValueError(f"${{{name}}} is required: {m['arg']}")
        return value or ""
    return INTERPOLATION.sub(one, text)


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines; `#` comments and blank lines skipped (commented-out keys too)."""
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


def commented_env_names(path: Path) -> set[str]:
    """The names of `#KEY=…` lines: settings a user may uncomment."""
    return {m[1] for m in re.finditer(r"^#\s*([A-Z][A-Z0-9_]*)=", path.read_text(), re.M)}


def render_compose(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    text = interpolate((DEPLOY / "compose.yaml").read_text(), env or {})
    doc: dict[str, Any] = yaml.safe_load(text)
    return doc


def render_kustomize(root: Path = K8S) -> list[dict[str, Any]]:
    """The base as `kubectl kustomize` would put it out, for what it uses: resources,
    configMapGenerator (envs, files; no name suffix) and images."""
    kust = yaml.safe_load((root / "kustomization.yaml").read_text())
    assert kust.get("generatorOptions", {}).get("disableNameSuffixHash") is True
    unknown = set(kust) - {"apiVersion", "kind", "resources", "configMapGenerator",
                           "generatorOptions", "images"}
    assert not unknown, f"kustomization.yaml uses {unknown}: teach render_kustomize"
    docs: list[dict[str, Any]] = []
    for resource in kust["resources"]:
        docs += [d for d in yaml.safe_load_all((root / resource).read_text()) if d]
    for gen in kust.get("configMapGenerator", []):
        data: dict[str, str] = {}
        for env_file in gen.get("envs", []):
            data.update(read_env_file(root / env_file))
        for file in gen.get("files", []):
            data[Path(file).name] = (root / file).read_text()
        docs.append({"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": gen["name"]}, "data": data})
    images = {i["name"]: f"{i.get('newName', i['name'])}:{i['newTag']}"
              for i in kust.get("images", [])}
    for doc in docs:
        for container in containers_of(doc):
            name = container["image"].split(":")[0]
            if name in images and ":" not in container["image"]:
                container["image"] = images[name]
    return docs


def pod_spec(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
        spec: dict[str, Any] = doc["spec"]["template"]["spec"]
        return spec
    return None


def containers_of(doc: Mapping[str, Any], init: bool = True) -> list[dict[str, Any]]:
    spec = pod_spec(doc)
    if spec is None:
        return []
    return [*(spec.get("initContainers", []) if init else []), *spec["containers"]]


# -- the bessmon image and its command lines ----------------------------------------------------

def is_bessmon_image(image: str) -> bool:
    return image.split(":")[0] in ("bessmon", "${BESSMON_IMAGE")


def cli_problems(argv: list[str]) -> list[str]:
    """Why `bessmon <argv>` would not run as written (argparse's own message)."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = build_parser().parse_args(argv)
    except SystemExit:
        return [f"bessmon {shlex.join(argv)}: {err.getvalue().strip().splitlines()[-1]}"]
    if not hasattr(args, "run"):
        return [f"bessmon {shlex.join(argv)}: names no command"]
    return []


def parse(argv: list[str]) -> argparse.Namespace:
    assert not (problems := cli_problems(argv)), problems
    return build_parser().parse_args(argv)


SETTINGS_ENV = {
    (field.validation_alias if isinstance(field.validation_alias, str)
     else f"BESSMON_{name.upper()}")
    for model in (Settings, TicketingSettings) for name, field in model.model_fields.items()}


def env_problems(names: set[str]) -> list[str]:
    return [f"{name}: not a setting nor a variable anything reads"
            for name in sorted(names - SETTINGS_ENV - set(NOT_SETTINGS))]


@contextlib.contextmanager
def environment(env: Mapping[str, str]) -> Iterator[None]:
    """Only these variables of ours set (the test's own environment's put aside)."""
    ours = {k: v for k, v in os.environ.items()
            if k.startswith("BESSMON_") or k in SETTINGS_ENV}
    for k in ours:
        del os.environ[k]
    os.environ.update(env)
    try:
        yield
    finally:
        for k in env:
            os.environ.pop(k, None)
        os.environ.update(ours)


def settings_of(env: Mapping[str, str]) -> Settings:
    """The settings a part with this environment gets (validated as it would be)."""
    with environment(env):
        TicketingSettings()
        return Settings()


def repo_path(path: str, config_dir: Path | Mapping[str, str]) -> Path | None:
    """Where a path inside the image is in the repository (None: not ours to check)."""
    if path == IMAGE_ROOT or path.startswith(IMAGE_ROOT + "/"):
        return REPO_ROOT / path[len(IMAGE_ROOT):].lstrip("/")
    if path.startswith(CONFIG_ROOT + "/"):
        if isinstance(config_dir, Path):
            return config_dir / path[len(CONFIG_ROOT) + 1:]
        return REPO_ROOT / "__configmap__" / path  # checked against the ConfigMap's keys
    return None


def path_problems(values: list[str], config: Path | Mapping[str, str]) -> list[str]:
    problems = []
    for value in values:
        for token in re.findall(r"(?:/opt/bessmon|/etc/bessmon)[^\s\"';,]*", value):
            if isinstance(config, Mapping) and token.startswith(CONFIG_ROOT + "/"):
                if token[len(CONFIG_ROOT) + 1:] not in config:
                    problems.append(f"{token}: not a key of the ConfigMap at {CONFIG_ROOT}")
                continue
            where = repo_path(token, config)
            if where is not None and not where.exists():
                problems.append(f"{token}: no {where.relative_to(REPO_ROOT)} in the repository")
    return problems


def shard_problems(shards: list[tuple[int, int]], devices_file: Path | None = None) -> list[str]:
    if not shards:
        return ["no Modbus connector"]
    counts = {n for _, n in shards}
    if len(counts) != 1:
        return [f"the shards say different N: {sorted(counts)}"]
    (n,) = counts
    ids = sorted(i for i, _ in shards)
    if ids != list(range(n)):
        return [f"shards {ids} are not 0..{n - 1} once each"]
    if devices_file is not None:
        devices = load_devices(devices_file).devices
        return [f"shard {i}/{n} polls no gateway of {devices_file.name}"
                for i in range(n) if not shard(devices, i, n)]
    return []


def cluster_problems(processes: list[tuple[str, argparse.Namespace]],
                     recovery_init: tuple[str, int] | None, partitions: int) -> list[str]:
    """`processes`: (this process's own host, its parsed `bessmon flows`) per process."""
    problems = []
    n = len(processes)
    ids = sorted(a.process_id for _, a in processes)
    if ids != list(range(n)):
        problems.append(f"process ids {ids} are not 0..{n - 1}")
    addresses = {a.addresses for _, a in processes}
    if len(addresses) != 1:
        problems.append(f"the processes list different --addresses: {sorted(addresses)}")
    for host, a in processes:
        listed = (a.addresses or "").split(",")
        if len(listed) != n:
            problems.append(f"{host}: --addresses lists {len(listed)} processes, not {n}")
        elif listed[a.process_id].rsplit(":", 1)[0] != host:
            problems.append(f"{host}: --addresses gives process {a.process_id} as "
                            f"{listed[a.process_id]}")
        if a.processes != 1:
            problems.append(f"{host}: --processes inside a cluster of processes")
    dirs = {str(a.recovery_dir) for _, a in processes}
    if len(dirs) != 1 or dirs == {"None"}:
        problems.append(f"recovery directories: {sorted(dirs)}")
    if recovery_init is None:
        problems.append("no recovery partitions are made")
    elif recovery_init[1] != n:
        problems.append(f"{recovery_init[1]} recovery partitions for {n} processes")
    if partitions < n:
        problems.append(f"{partitions} topic partitions for {n} flow processes")
    return problems


RECOVERY_INIT = re.compile(r"python -m bytewax\.recovery ([^\s;&|}]+) ([^\s;&|}]+)")


def recovery_init_of(script: str) -> tuple[str, int]:
    """The `python -m bytewax.recovery DIR N` in a shell script, checked with bytewax's own
    argument parser."""
    from bytewax import recovery

    (call,) = RECOVERY_INIT.findall(script)
    argv = sys.argv
    sys.argv = ["bytewax.recovery", *call]
    try:
        args = recovery._parse_args()  # type: ignore[attr-defined]
    finally:
        sys.argv = argv
    return str(args.db_dir), int(args.part_count)


def topics_of(settings: Settings) -> set[str]:
    return {v for k, v in settings.model_dump().items()
            if k.startswith("topic_") and k != "topic_partitions"}


@pytest.fixture(scope="module")
def app_routes(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """The API's routes, from the app itself (api/main.py): "GET /api/v1/health",
    "WS /api/v1/ws", …"""
    from fastapi.routing import APIWebSocketRoute, iter_route_contexts

    from api.main import create_app

    app = create_app(Settings(run_dir=tmp_path_factory.mktemp("run")))
    routes = set()
    for context in iter_route_contexts(app.routes):
        if isinstance(context.route, APIWebSocketRoute):
            routes.add(f"WS {context.path}")
        else:
            routes |= {f"{m} {context.path}" for m in context.methods or ()}
    return routes


# -- Compose --------------------------------------------------------------------------------

def bessmon_services(doc: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in doc["services"].items()
            if is_bessmon_image(str(s.get("image", "")))}


def cli_services(doc: Mapping[str, Any]) -> dict[str, list[str]]:
    """The services that run `bessmon` (the image's entrypoint): their arguments."""
    return {name: [str(a) for a in s["command"]]
            for name, s in bessmon_services(doc).items() if "entrypoint" not in s}


def compose_env(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment as a mapping"
    return {k: str(v) for k, v in env.items()}


@pytest.fixture(scope="module", params=["defaults", ".env.example"])
def compose(request: pytest.FixtureRequest) -> dict[str, Any]:
    env = {} if request.param == "defaults" else read_env_file(DEPLOY / ".env.example")
    return render_compose(env)


def test_compose_every_command_parses(compose: dict[str, Any]) -> None:
    commands = cli_services(compose)
    assert {"connect", "flows", "api", "control", "notify", "report", "tickets"} <= \
        {argv[0] for argv in commands.values()}
    assert [p for argv in commands.values() for p in cli_problems(argv)] == []


def test_compose_env_is_settings(compose: dict[str, Any]) -> None:
    names = {k for s in bessmon_services(compose).values() for k in compose_env(s)}
    assert env_problems(names) == []
    for name, service in bessmon_services(compose).items():
        settings = settings_of(compose_env(service))
        assert settings.environment == "production", name
        assert settings.kafka_bootstrap_servers and settings.redis_url and settings.questdb_url


def test_env_example_names_are_settings_or_compose_variables() -> None:
    example = DEPLOY / ".env.example"
    compose_text = (DEPLOY / "compose.yaml").read_text()
    names = set(read_env_file(example)) | commented_env_names(example)
    compose_only = {n for n in names if f"${{{n}" in compose_text and n not in SETTINGS_ENV}
    assert env_problems(names - compose_only) == []
    assert settings_of({k: v for k, v in read_env_file(example).items()
                        if k in SETTINGS_ENV})


def test_compose_paths_exist(compose: dict[str, Any]) -> None:
    for name, service in bessmon_services(compose).items():
        mounts = {v.split(":")[1]: v.split(":")[0] for v in service.get("volumes", [])}
        if "entrypoint" not in service:  # a part (not a one-off script)
            assert mounts.get(CONFIG_ROOT) == "./k8s/config", name
        config = DEPLOY / "k8s" / "config"
        values = [*compose_env(service).values(), *map(str, service["command"])]
        assert path_problems(values, config) == [], name
        settings = settings_of(compose_env(service))
        for path in (settings.fleet_file, settings.contracts_dir, settings.monitoring_file,
                     settings.control_file, settings.profiles_dir):
            assert repo_path(str(path), config) is not None, f"{name}: {path} outside the image"


def test_compose_shards_cover_the_device_list(compose: dict[str, Any]) -> None:
    shards, files = [], set()
    for argv in cli_services(compose).values():
        if argv[:2] == ["connect", "modbus"]:
            args = parse(argv)
            shards.append(args.shard)
            files.add(str(args.devices))
    (devices,) = files
    local = repo_path(devices, DEPLOY / "k8s" / "config")
    assert local is not None
    assert shard_problems(shards, local) == []
    assert len(shards) == 2


def test_compose_flows_are_one_cluster(compose: dict[str, Any]) -> None:
    services = bessmon_services(compose)
    processes = [(name, parse(argv)) for name, argv in cli_services(compose).items()
                 if argv[0] == "flows"]
    assert len(processes) == 3
    inits = [s for s in services.values() if "bytewax.recovery" in " ".join(s["command"])]
    (init,) = inits
    where, count = recovery_init_of(" ".join(init["command"]))
    partitions = settings_of(compose_env(services[processes[0][0]])).topic_partitions
    assert cluster_problems(processes, (where, count), partitions) == []
    # Every process and the init share one recovery volume, at the --recovery-dir.
    recovery_dir = str(processes[0][1].recovery_dir)
    assert where == recovery_dir
    volumes = {next(v.split(":")[0] for v in s["volumes"] if v.split(":")[1] == recovery_dir)
               for s in [init, *(services[name] for name, _ in processes)]}
    assert len(volumes) == 1 and not volumes.pop().startswith(".")
    for name, _ in processes:
        assert services[name]["depends_on"]["flows-init"]["condition"] == \
            "service_completed_successfully"


def test_compose_topics_are_the_settings_topics(compose: dict[str, Any]) -> None:
    job = compose["services"]["kafka-topics"]
    assert job["image"].startswith("apache/kafka:")
    script = " ".join(job["command"])
    assert "kafka-topics.sh" in script and "--if-not-exists" in script
    part_env = compose_env(next(iter(bessmon_services(compose).values())))
    settings = settings_of(part_env)
    assert set(job["environment"]["TOPICS"].split()) == topics_of(settings)
    assert int(job["environment"]["PARTITIONS"]) == settings.topic_partitions
    for name, service in bessmon_services(compose).items():
        if "entrypoint" not in service and "kafka-topics" not in service.get("depends_on", {}):
            pytest.fail(f"{name} does not wait for the topics")


def test_compose_kafka_is_kraft(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    env = kafka["environment"]
    assert kafka["image"].startswith("apache/kafka:")
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "ZOOKEEPER" not in " ".join(env)
    bootstrap = settings_of(compose_env(next(iter(bessmon_services(compose).values()))))
    assert f"PLAINTEXT://{bootstrap.kafka_bootstrap_servers}" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert cluster_id_problems(env["CLUSTER_ID"]) == []


def cluster_id_problems(cluster_id: str) -> list[str]:
    """Kafka's storage format takes a base64url UUID: 22 characters, 16 bytes."""
    import base64

    try:
        raw = base64.urlsafe_b64decode(cluster_id + "==")
    except ValueError:
        raw = b""
    ok = len(cluster_id) == 22 and len(raw) == 16
    return [] if ok else [f"CLUSTER_ID {cluster_id!r} is not a base64url UUID"]


def test_k8s_kafka_is_kraft(k8s: list[dict[str, Any]]) -> None:
    sts = by_kind(k8s, "StatefulSet")["kafka"]
    (container,) = containers_of(sts)
    env = container_env(container, k8s, 0)
    assert container["image"].startswith("apache/kafka:")
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert cluster_id_problems(env["CLUSTER_ID"]) == []
    assert sts["spec"]["template"]["spec"]["enableServiceLinks"] is False  # KAFKA_* env
    settings = settings_of(dict(by_kind(k8s, "ConfigMap")["bessmon-env"]["data"]))
    host, port = str(settings.kafka_bootstrap_servers).split(":")
    service = by_kind(k8s, "Service")[host]
    assert service["spec"]["selector"].items() <= \
        sts["spec"]["template"]["metadata"]["labels"].items()
    assert int(port) in {p["port"] for p in service["spec"]["ports"]}
    advertised = env["KAFKA_ADVERTISED_LISTENERS"].removeprefix("PLAINTEXT://")
    assert advertised == f"kafka-0.{sts['spec']['serviceName']}:{port}"
    redis_host = str(settings.redis_url).split("//")[1].split(":")[0]
    questdb = settings_of({"QUESTDB_URL": SECRET_VALUES["questdb-url"]}).questdb_url
    for name in (redis_host, str(questdb).split("//")[1].split(":")[0]):
        assert name in by_kind(k8s, "Service"), name


def nginx_upstream(conf: str) -> tuple[str, set[tuple[str, int]]]:
    (name, body), = re.findall(r"upstream\s+(\S+)\s*\{(.*?)\}", conf, re.S)
    servers = {(h, int(p)) for h, p in re.findall(r"^\s*server\s+([\w.-]+):(\d+)", body, re.M)}
    return name, servers


def proxy_problems(conf: str, apis: set[tuple[str, int]]) -> list[str]:
    problems = []
    upstream, servers = nginx_upstream(conf)
    if servers != apis:
        problems.append(f"nginx's upstream {sorted(servers)} is not the API processes "
                        f"{sorted(apis)}")
    locations = dict(re.findall(r"location\s+(?:=\s+)?(\S+)\s*\{(.*?)\}", conf, re.S))
    for path, body in locations.items():
        if f"proxy_pass http://{upstream}" not in body:
            problems.append(f"location {path} does not pass to {upstream}")
    ws = locations.get("/api/v1/ws", "")
    if not (re.search(r"proxy_set_header\s+Upgrade\s+\$http_upgrade", ws)
            and re.search(r"proxy_set_header\s+Connection\s+\$connection_upgrade", ws)):
        problems.append("/api/v1/ws is not upgraded to a WebSocket")
    if "/" not in locations:
        problems.append("nothing serves / (the dashboard)")
    return problems


def test_compose_api_processes_are_behind_the_proxy(compose: dict[str, Any],
                                                    app_routes: set[str]) -> None:
    apis = {(name, parse(argv).port) for name, argv in cli_services(compose).items()
            if argv[0] == "api"}
    assert len(apis) == 3
    proxy = compose["services"]["proxy"]
    assert "./nginx.conf:/etc/nginx/nginx.conf:ro" in proxy["volumes"]
    assert set(proxy["depends_on"]) == {name for name, _ in apis}
    assert proxy_problems((DEPLOY / "nginx.conf").read_text(), apis) == []
    assert "WS /api/v1/ws" in app_routes
    services = bessmon_services(compose)
    for name, port in apis:
        assert parse(cli_services(compose)[name]).host == "0.0.0.0"
        check = " ".join(services[name]["healthcheck"]["test"])
        (url_port, path), = re.findall(r"http://127\.0\.0\.1:(\d+)(/[^'\" ]*)", check)
        assert int(url_port) == port and f"GET {path}" in app_routes, check


def documented_commands(text: str) -> list[list[str]]:
    """The `bessmon …` command lines in a file's comments (continued with `\\`)."""
    comments = "\n".join(line.lstrip("# ").rstrip() for line in text.splitlines()
                         if line.lstrip().startswith("#"))
    joined = re.sub(r"\\\n\s*", " ", comments)
    found = []
    for line in joined.splitlines():
        if line.split(" ", 1)[0] not in ("docker", "kubectl"):
            continue  # prose
        words = shlex.split(line, comments=True)
        if "bessmon" in words:
            found.append(words[words.index("bessmon") + 1:])
    return found


def test_documented_commands_parse() -> None:
    commands = documented_commands((DEPLOY / "compose.yaml").read_text())
    assert commands and [p for argv in commands for p in cli_problems(argv)] == []


def test_forwarded_allow_ips_is_uvicorns() -> None:
    import inspect

    import uvicorn.config

    assert 'os.environ.get("FORWARDED_ALLOW_IPS"' in inspect.getsource(uvicorn.config)


# -- Kubernetes -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def k8s() -> list[dict[str, Any]]:
    return render_kustomize()


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def container_env(container: Mapping[str, Any], docs: list[dict[str, Any]],
                  pod_index: int | None) -> dict[str, str]:
    """The container's environment as Kubernetes would set it (Secrets: placeholders)."""
    maps = {n: d["data"] for n, d in by_kind(docs, "ConfigMap").items()}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(maps[source["configMapRef"]["name"]])
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = str(var["value"])
            continue
        ref = var["valueFrom"]
        if "configMapKeyRef" in ref:
            env[var["name"]] = maps[ref["configMapKeyRef"]["name"]][ref["configMapKeyRef"]["key"]]
        elif "secretKeyRef" in ref:
            secret = ref["secretKeyRef"]
            assert secret["name"] == SECRET and secret["key"] in SECRET_VALUES, secret
            env[var["name"]] = SECRET_VALUES[secret["key"]]
        elif "fieldRef" in ref:
            assert ref["fieldRef"]["fieldPath"] == \
                "metadata.labels['apps.kubernetes.io/pod-index']", ref
            assert pod_index is not None, f"{var['name']}: a pod index outside a StatefulSet"
            env[var["name"]] = str(pod_index)
        else:
            raise AssertionError(f"unknown valueFrom {ref}")
    return env


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' `$(VAR)` in command and args (`$$(VAR)` stays literal)."""
    def one(m: re.Match[str]) -> str:
        if m.group(0).startswith("$$"):
            return m.group(0)[1:]
        assert m[1] in env, f"$({m[1]}) is not in the container's environment"
        return env[m[1]]
    return re.sub(r"\$\$?\(([A-Za-z_][A-Za-z0-9_]*)\)", one, text)


def pods(doc: Mapping[str, Any]) -> list[int | None]:
    """The pod indexes of a workload (StatefulSet: each ordinal; else one pod, no index)."""
    if doc["kind"] == "StatefulSet":
        return list(range(int(doc["spec"]["replicas"])))
    return [None]


def rendered_containers(docs: list[dict[str, Any]]
                        ) -> Iterator[tuple[str, int | None, dict[str, Any], dict[str, str],
                                            list[str]]]:
    """(workload, pod index, container, its environment, its expanded command + args) of
    every bessmon container of every pod."""
    for doc in docs:
        for index in pods(doc):
            for container in containers_of(doc):
                if not is_bessmon_image(container["image"]):
                    continue
                env = container_env(container, docs, index)
                argv = [expand(str(a), env)
                        for a in [*container.get("command", []), *container.get("args", [])]]
                yield doc["metadata"]["name"], index, container, env, argv


def test_k8s_every_resource_file_is_in_the_base() -> None:
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert files == set(kust["resources"])


def test_k8s_every_command_parses(k8s: list[dict[str, Any]]) -> None:
    seen, problems = set(), []
    for _, _, container, _, argv in rendered_containers(k8s):
        if "command" in container:  # not the image's entrypoint (`bessmon`): a script
            continue
        seen.add(argv[0])
        problems += cli_problems(argv)
    assert problems == []
    assert {"connect", "flows", "api", "control", "notify", "report"} <= seen


def test_k8s_env_is_settings(k8s: list[dict[str, Any]]) -> None:
    names = set()
    for name, _, container, env, _ in rendered_containers(k8s):
        if "command" in container:
            continue
        names |= set(env)
        settings = settings_of(env)
        assert settings.environment == "production", name
        assert settings.kafka_bootstrap_servers and settings.redis_url, name
        if name in ("flows", "api", "reports", "archive"):  # the history store's users
            assert settings.questdb_url, name
    assert env_problems(names) == []


def test_k8s_secret_keys_are_documented() -> None:
    documented = (K8S / "kustomization.yaml").read_text()
    used = set(re.findall(r"key: ([a-z-]+)",
                          "\n".join(p.read_text() for p in K8S.glob("*.yaml"))))
    secret_keys = used & set(SECRET_VALUES)
    assert secret_keys and all(k in documented for k in secret_keys)


def test_k8s_paths_and_volumes(k8s: list[dict[str, Any]]) -> None:
    config = by_kind(k8s, "ConfigMap")["bessmon-config"]["data"]
    claims = set(by_kind(k8s, "PersistentVolumeClaim"))
    maps = set(by_kind(k8s, "ConfigMap"))
    for doc in k8s:
        spec = pod_spec(doc)
        if spec is None:
            continue
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        templates = {t["metadata"]["name"] for t in doc["spec"].get("volumeClaimTemplates", [])}
        for v in volumes.values():
            if "persistentVolumeClaim" in v:
                assert v["persistentVolumeClaim"]["claimName"] in claims, v
            if "configMap" in v:
                assert v["configMap"]["name"] in maps, v
        for container in containers_of(doc):
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            for mount, volume in mounts.items():
                assert volume in volumes or volume in templates, (doc["metadata"], mount)
            if any(CONFIG_ROOT in str(a) for a in container.get("args", [])):
                assert volumes[mounts[CONFIG_ROOT]]["configMap"]["name"] == "bessmon-config"
    for name, _, container, env, argv in rendered_containers(k8s):
        assert path_problems([*env.values(), *argv], config) == [], name
        if "command" not in container:
            settings = settings_of(env)
            for path in (settings.fleet_file, settings.contracts_dir, settings.monitoring_file,
                         settings.control_file, settings.profiles_dir):
                assert repo_path(str(path), config) is not None, f"{name}: {path}"


def test_k8s_device_lists_load_with_the_fleet(k8s: list[dict[str, Any]]) -> None:
    env = by_kind(k8s, "ConfigMap")["bessmon-env"]["data"]
    fleet_path = repo_path(env["BESSMON_FLEET_FILE"], K8S / "config")
    assert fleet_path is not None
    fleet: Fleet = load_fleet(fleet_path)
    modbus = load_devices(K8S / "config" / "devices.yaml").devices
    opcua = load_opcua_devices(K8S / "config" / "opcua-devices.yaml", fleet).devices
    units = {u.id for s in fleet.sites for u in s.units}
    assert {d.asset for d in modbus} | {d.id for d in opcua} == units  # every unit, once
    assert not {d.asset for d in modbus} & {d.id for d in opcua}
    ticketing = load_ticketing_config(K8S / "config" / "ticketing.yaml")
    assert ticketing.rest_providers() == ["jira"]
    assert "password_env: JIRA_API_TOKEN" in (K8S / "config" / "ticketing.yaml").read_text()
    config = by_kind(k8s, "ConfigMap")["bessmon-config"]["data"]
    assert set(config) == {p.name for p in (K8S / "config").iterdir()}


def statefulset_args(k8s: list[dict[str, Any]], name: str
                     ) -> list[tuple[int, argparse.Namespace]]:
    return [(index, parse(argv)) for workload, index, container, _, argv
            in rendered_containers(k8s)
            if workload == name and "command" not in container and index is not None]


def test_k8s_shards_cover_the_device_list(k8s: list[dict[str, Any]]) -> None:
    sts = by_kind(k8s, "StatefulSet")["connector-modbus"]
    pods_args = statefulset_args(k8s, "connector-modbus")
    assert [i for i, _ in pods_args] == list(range(sts["spec"]["replicas"]))
    assert all(a.shard == (i, sts["spec"]["replicas"]) for i, a in pods_args)
    (devices,) = {str(a.devices) for _, a in pods_args}
    local = K8S / "config" / devices.removeprefix(CONFIG_ROOT + "/")
    assert shard_problems([a.shard for _, a in pods_args], local) == []
    template = sts["spec"]["template"]["spec"]["containers"][0]
    spool = settings_of(container_env(template, k8s, 0)).spool_dir
    assert str(spool) in {m["mountPath"] for m in template["volumeMounts"]}


def test_k8s_flows_are_one_cluster(k8s: list[dict[str, Any]]) -> None:
    sts = by_kind(k8s, "StatefulSet")["flows"]
    service = by_kind(k8s, "Service")[sts["spec"]["serviceName"]]
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["selector"].items() <= \
        sts["spec"]["template"]["metadata"]["labels"].items()
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    n = sts["spec"]["replicas"]
    pods_args = statefulset_args(k8s, "flows")
    hosts = [f"flows-{i}.{sts['spec']['serviceName']}" for i in range(n)]
    (init,) = sts["spec"]["template"]["spec"]["initContainers"]
    inits = set()
    for i in range(n):
        env = container_env(init, k8s, i)
        script = expand(" ".join(map(str, [*init["command"], *init["args"]])), env)
        inits.add(recovery_init_of(script))
        assert f"part-{i}.sqlite3" in script
    (recovery_init,) = inits
    partitions = int(by_kind(k8s, "ConfigMap")["bessmon-env"]["data"]["BESSMON_TOPIC_PARTITIONS"])
    assert cluster_problems([(hosts[i], a) for i, a in pods_args], (str(pods_args[0][1]
                            .recovery_dir), recovery_init[1]), partitions) == []
    # the recovery directory is the pod's own volume, in the flows and in the init container
    templates = {t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]}
    recovery_dir = str(pods_args[0][1].recovery_dir)
    for container in [init, *sts["spec"]["template"]["spec"]["containers"]]:
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert mounts[recovery_dir] in templates
    ports = {p["containerPort"] for p in sts["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert {int(a.rsplit(":", 1)[1]) for a in pods_args[0][1].addresses.split(",")} <= ports
    assert {p["port"] for p in service["spec"]["ports"]} >= ports


def test_k8s_topics_are_the_settings_topics(k8s: list[dict[str, Any]]) -> None:
    job = by_kind(k8s, "Job")["kafka-topics"]
    (container,) = containers_of(job)
    env = container_env(container, k8s, None)
    script = " ".join([*container["command"], *container["args"]])
    assert "kafka-topics.sh" in script and "--if-not-exists" in script
    settings = settings_of(dict(by_kind(k8s, "ConfigMap")["bessmon-env"]["data"]))
    assert set(env["TOPICS"].split()) == topics_of(settings)
    assert int(env["PARTITIONS"]) == settings.topic_partitions
    assert env["BOOTSTRAP"] == settings.kafka_bootstrap_servers


def test_k8s_api_service_and_probes(k8s: list[dict[str, Any]], app_routes: set[str]) -> None:
    api = by_kind(k8s, "Deployment")["api"]
    service = by_kind(k8s, "Service")["bessmon-api"]
    labels = api["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    (container,) = api["spec"]["template"]["spec"]["containers"]
    args = parse([str(a) for a in container["args"]])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports[service["spec"]["ports"][0]["targetPort"]] == args.port
    assert api["spec"]["replicas"] >= 2
    assert f"GET {container['readinessProbe']['httpGet']['path']}" in app_routes
    probes = [c[p] for doc in k8s for c in containers_of(doc)
              for p in ("readinessProbe", "livenessProbe", "startupProbe") if p in c]
    for probe in probes:
        if "httpGet" in probe:
            assert f"GET {probe['httpGet']['path']}" in app_routes, probe
            port = probe["httpGet"]["port"]
            assert ports.get(port, port) == args.port


def test_k8s_workloads_are_well_formed(k8s: list[dict[str, Any]]) -> None:
    for doc in k8s:
        spec = pod_spec(doc)
        if spec is None:
            continue
        name = doc["metadata"]["name"]
        if doc["kind"] != "Job":
            selector = doc["spec"]["selector"]["matchLabels"]
            assert selector.items() <= doc["spec"]["template"]["metadata"]["labels"].items()
        if doc["kind"] == "StatefulSet":
            assert doc["spec"]["serviceName"] in by_kind(k8s, "Service"), name
        assert spec.get("enableServiceLinks") is False, name
        for container in containers_of(doc, init=False):
            resources = container.get("resources", {})
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(kind, {})), (name, kind)
    singletons = {"control", "notify", "reports", "archive"}
    deployments = by_kind(k8s, "Deployment")
    for name in singletons:
        assert deployments[name]["spec"]["replicas"] == 1
        assert deployments[name]["spec"]["strategy"]["type"] == "Recreate"


# -- the image --------------------------------------------------------------------------------

def test_dockerfile_builds_from_the_repository() -> None:
    import tomllib

    from api.main import WEB_DIST

    text = (DEPLOY / "Dockerfile").read_text()
    lines = [line.strip() for line in text.replace("\\\n", " ").splitlines()]
    workdirs = [line.split()[1] for line in lines if line.startswith("WORKDIR ")]
    assert workdirs[-1] == IMAGE_ROOT
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert re.search(r'ENTRYPOINT \["(\w+)"\]', text)[1] in project["project"]["scripts"]  # type: ignore[index]
    copied = set()
    for line in lines:
        if line.startswith("COPY ") and "--from=" not in line:
            *sources, _ = line.split()[1:]
            for source in sources:
                where = "web/" + source if source.startswith("package") else source
                assert (REPO_ROOT / where).exists(), line
                copied.add(source.strip("/").split("/")[0])
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages <= copied
    assert "pip install -e ." in text  # editable: the code finds web/dist and infra/sim beside it
    (dist,) = re.findall(r"COPY --from=web \S+ (\S+)", text)
    assert Path(IMAGE_ROOT, dist) == Path(IMAGE_ROOT) / WEB_DIST.relative_to(REPO_ROOT)
    run_dir = re.search(r"BESSMON_RUN_DIR=(\S+)", text)
    assert run_dir and run_dir[1] == read_env_file(K8S / "bessmon.env")["BESSMON_RUN_DIR"]
    node = int(re.search(r"FROM node:(\d+)", text)[1])  # type: ignore[index]
    engines = (REPO_ROOT / "web" / "package.json").read_text()
    assert node >= int(re.search(r'"node": ">=(\d+)', engines)[1])  # type: ignore[index]


# -- the checks can fail ----------------------------------------------------------------------

def test_the_checks_catch_mistakes(app_routes: set[str]) -> None:
    assert cli_problems(["flows", "--process-id", "0", "--adresses", "a:1"])
    assert cli_problems(["connect", "modbus", "--devices", "d.yaml", "--shard", "2/2"])
    assert cli_problems(["report", "schedule", "--every", "never"])
    assert cli_problems(["api", "--workers", "0"])
    assert env_problems({"BESSMON_FLEET_FLIE", "KAFKA_BOOTSTRAP"}) == [
        "BESSMON_FLEET_FLIE: not a setting nor a variable anything reads",
        "KAFKA_BOOTSTRAP: not a setting nor a variable anything reads"]
    with pytest.raises(ValueError):
        settings_of({"BESSMON_TOPIC_PARTITIONS": "0"})
    assert path_problems(["/opt/bessmon/infra/sim/fleet.yml"], K8S / "config")
    assert path_problems(["--devices=/etc/bessmon/device.yaml"], K8S / "config")
    devices = K8S / "config" / "devices.yaml"
    assert shard_problems([(0, 2), (0, 2)], devices)
    assert shard_problems([(0, 2), (1, 3)], devices)
    assert shard_problems([(0, 3), (1, 3), (2, 3)], devices)  # 2 gateways: shard 2 idle
    flows = [parse(["flows", "--process-id", str(i), "--addresses", "a:1,b:1",
                    "--recovery-dir", "/r"]) for i in range(2)]
    assert cluster_problems([("a", flows[0]), ("b", flows[1])], ("/r", 2), 4) == []
    assert cluster_problems([("b", flows[0]), ("a", flows[1])], ("/r", 2), 4)
    assert cluster_problems([("a", flows[0]), ("b", flows[1])], ("/r", 3), 4)
    assert cluster_problems([("a", flows[0]), ("b", flows[1])], ("/r", 2), 1)
    assert cluster_problems([("a", flows[0]), ("a", flows[0])], ("/r", 2), 4)
    conf = (DEPLOY / "nginx.conf").read_text()
    apis = {("api-0", 8000), ("api-1", 8000), ("api-2", 8000)}
    assert proxy_problems(conf, apis) == []
    assert proxy_problems(conf, apis | {("api-3", 8000)})
    assert proxy_problems(conf.replace("proxy_set_header Upgrade", "# "), apis)
    assert "GET /api/v1/health" in app_routes
    assert "GET /api/v1/healthz" not in app_routes
    with pytest.raises(AssertionError):
        expand("--process-id $(POD_IDX)", {"POD_INDEX": "0"})
    assert interpolate("${A:-x} $${B} ${C}", {"C": "c"}) == "x ${B} c"
    with pytest.raises(ValueError):
        interpolate("${A:?needed}", {})
    assert cluster_id_problems("bessmonKRaftCluster01")
