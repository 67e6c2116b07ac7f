"""Shared fixtures: real services found in docs/architecture.md's order — an address from the
environment, else a local process started by the suite, else a testcontainers container when
a Docker engine is present."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import redis

from connectors.kafka import ensure_topics
from connectors.settings import EXAMPLE_FLEET, Settings
from contracts.fleet import Fleet, load_fleet
from infra.services import ServiceError, start_broker, start_redis

# Property tests have no deadline: how fast an example runs is a benchmark's business, and
# on two shared cores a slow example (a worker busy with a stack) failed a property that held.
hypothesis.settings.register_profile("bessmon", deadline=None)
hypothesis.settings.load_profile("bessmon")

# `make test` runs pytest on two workers (pytest-xdist, `-n 2`). The tests that start a
# whole stack, a browser or a cluster of flow processes take turns on one worker, in
# collection order ("stack": two of them never compete for this machine's two cores, and a
# module's tests stay together with its fixtures); every other test goes to whichever worker
# is free. The stack tests are collected first so that their worker starts with them: they
# take longest. Tests marked `solo` (the protection drill: reaction times against a
# simulator at 60× speed) run alone afterwards, in a pass of their own.
# (xdist's own `loadgroup` cannot do this with pytest ≥ 9.2: it renames node ids, which
# pytest no longer reads; hence a scheduler of our own.)
STACK_TESTS = ("tests/e2e/", "tests/infra/test_stack_lifecycle.py",
               "tests/test_bench_smoke.py", "tests/flows/test_recovery.py")


def is_stack_test(nodeid: str) -> bool:
    return nodeid.startswith(STACK_TESTS)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: not is_stack_test(item.nodeid))  # stable: stack tests first


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    from xdist.scheduler import LoadScopeScheduling

    class StackTakesTurns(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return "stack" if is_stack_test(nodeid) else nodeid

    return StackTakesTurns(config, log)


def _docker_available() -> bool:
    return shutil.which("docker") is not None and os.path.exists("/var/run/docker.sock")


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("service-logs")


@pytest.fixture(scope="session")
def kafka_bootstrap(log_dir: Path) -> Iterator[str]:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield os.environ["KAFKA_BOOTSTRAP_SERVERS"]
        return
    try:
        service = start_broker(log_dir)
    except ServiceError:
        if not _docker_available():
            raise
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer() as container:
            yield container.get_bootstrap_server()
        return
    yield service.address
    service.stop()


@pytest.fixture(scope="session")
def redis_url(log_dir: Path) -> Iterator[str]:
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    try:
        service = start_redis(log_dir)
    except ServiceError:
        if not _docker_available():
            raise
        from testcontainers.redis import RedisContainer

        with RedisContainer() as container:
            host, port = container.get_container_host_ip(), container.get_exposed_port(6379)
            yield f"redis://{host}:{port}/0"
        return
    yield service.address
    service.stop()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client: redis.Redis = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def settings(kafka_bootstrap: str, redis_url: str, tmp_path: Path) -> Settings:
    """Settings with topics of their own, so tests sharing one broker never see each other."""
    suffix = uuid.uuid4().hex[:8]
    s = Settings(
        KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
        REDIS_URL=redis_url,
        run_dir=tmp_path / "run",
        topic_telemetry=f"t-{suffix}.telemetry.raw",
        topic_status=f"t-{suffix}.status",
        topic_availability=f"t-{suffix}.availability",
        topic_dlq=f"t-{suffix}.dlq",
        topic_breaches=f"t-{suffix}.breaches",
        topic_alerts=f"t-{suffix}.alerts",
        topic_commands=f"t-{suffix}.commands",
        topic_command_results=f"t-{suffix}.command.results",
        topic_partitions=2,
    )
    ensure_topics(kafka_bootstrap, [s.topic_telemetry, s.topic_status, s.topic_availability,
                                    s.topic_dlq], partitions=s.topic_partitions)
    return s


@pytest.fixture(scope="session")
def example_fleet() -> Fleet:
    return load_fleet(EXAMPLE_FLEET)
