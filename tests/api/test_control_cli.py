"""`bessmon control estop` through the real command on the real broker: a unit's stop and a
site's (one per unit) land on `bess.commands` keyed by unit, as `cli:<OS user>`, and in the
API's audit log; the broker found in the running stack's `stack.json` when
KAFKA_BOOTSTRAP_SERVERS is unset; an unknown id or a missing reason refused."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from connectors.api_store import ApiStore
from connectors.audit import AuditLog
from connectors.kafka import read_topic
from connectors.settings import REPO_ROOT, Settings
from contracts.control import ControlCommand
from contracts.fleet import Fleet

USER = "cli:" + (os.environ.get("SUDO_USER") or getpass.getuser())


@pytest.fixture
def cli_settings(tmp_path: Path, kafka_bootstrap: str) -> Settings:
    suffix = uuid.uuid4().hex[:8]
    return Settings(KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, run_dir=tmp_path / "run",
                    topic_commands=f"t-{suffix}.commands",
                    topic_command_results=f"t-{suffix}.command.results")


def bessmon(settings: Settings, *args: str,
            kafka: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("KAFKA_BOOTSTRAP_SERVERS", "BESSMON_FLEET_FILE")}
    env.update({"BESSMON_RUN_DIR": str(settings.run_dir),
                "BESSMON_TOPIC_COMMANDS": settings.topic_commands,
                "BESSMON_TOPIC_COMMAND_RESULTS": settings.topic_command_results})
    if kafka:
        env["KAFKA_BOOTSTRAP_SERVERS"] = settings.require_kafka()
    return subprocess.run([sys.executable, "-m", "infra.cli", "control", *args], env=env,
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)


def sent(settings: Settings, count: int | None = None) -> list[tuple[str, ControlCommand]]:
    out = []
    for m in read_topic(settings.require_kafka(), settings.topic_commands, count=count,
                        timeout_s=15, to_end=count is None):
        key, value = m.key(), m.value()
        assert key is not None and value is not None
        out.append((key.decode(), ControlCommand.model_validate_json(value)))
    return out


def audit(settings: Settings) -> list[tuple[str, str, str | None, str, dict[str, object]]]:
    return [(e.actor, e.action, e.target, e.outcome, e.details)
            for e in AuditLog(ApiStore(settings.api_db_path)).entries()]


def test_estop_a_unit(cli_settings: Settings) -> None:
    result = bessmon(cli_settings, "estop", "nordvik-u01", "--reason", "smoke in container 1")
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    command_id, kind, unit = line.split("\t")
    assert (kind, unit) == ("estop", "nordvik-u01")
    [(key, command)] = sent(cli_settings, 1)
    assert key == "nordvik-u01"
    assert (command.command_id, command.kind, command.actor, command.reason) == (
        command_id, "estop", USER, "smoke in container 1")
    assert audit(cli_settings) == [(USER, "control.estop", "nordvik-u01", "ok",
                                    {"reason": "smoke in container 1",
                                     "command_id": command_id})]


def test_estop_a_site_from_the_running_stacks_broker(cli_settings: Settings,
                                                     example_fleet: Fleet) -> None:
    """No KAFKA_BOOTSTRAP_SERVERS: the broker `bessmon up` wrote to stack.json."""
    cli_settings.run_dir.mkdir(parents=True)
    (cli_settings.run_dir / "stack.json").write_text(json.dumps(
        {"kafka": cli_settings.require_kafka(), "fleet_file": str(cli_settings.fleet_file)}))
    result = bessmon(cli_settings, "estop", "elbe", "--reason", "grid operator request",
                     kafka=False)
    assert result.returncode == 0, result.stderr
    units = [u.id for u in example_fleet.site("elbe").units]
    printed = [line.split("\t") for line in result.stdout.splitlines()]
    assert [u for _, _, u in printed] == units
    on_topic = sent(cli_settings, len(units))
    assert sorted((k, c.command_id) for k, c in on_topic) == sorted((u, i) for i, _, u in printed)
    assert [(a[2], a[3]) for a in audit(cli_settings)] == [(u, "ok") for u in units]


def test_an_unknown_id_is_refused(cli_settings: Settings) -> None:
    for target in ("no-such-unit", "nordvik-u01-i1"):  # nothing, and an inverter
        result = bessmon(cli_settings, "estop", target, "--reason", "x")
        assert result.returncode == 2
        assert f"no unit or site {target!r}" in result.stderr
    assert audit(cli_settings) == []


def test_a_reason_is_required(cli_settings: Settings) -> None:
    result = bessmon(cli_settings, "estop", "nordvik-u01")
    assert result.returncode == 2
    assert "--reason" in result.stderr
    result = bessmon(cli_settings, "estop", "nordvik-u01", "--reason", "  ")
    assert result.returncode == 2
    assert "1 to 500 characters" in result.stderr


def test_without_a_broker_it_says_so(cli_settings: Settings) -> None:
    result = bessmon(cli_settings, "estop", "nordvik-u01", "--reason", "x", kafka=False)
    assert result.returncode == 2
    assert "KAFKA_BOOTSTRAP_SERVERS" in result.stderr
