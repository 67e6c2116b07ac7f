"""The notifier's start: a broken rules file is refused with its file, line and key before
anything runs, and the other parts of the stack are not its concern (it is its own
process)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from connectors.settings import REPO_ROOT


def notify_run(tmp_path: Path, rules: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "rules.yaml"
    path.write_text(rules)
    env = {**os.environ, "BESSMON_NOTIFY_RULES": str(path), "BESSMON_RUN_DIR": str(tmp_path),
           "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    return subprocess.run([sys.executable, "-m", "infra.cli", "notify", "run"], env=env,
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)


def test_a_broken_rules_file_is_refused_with_its_place(tmp_path: Path) -> None:
    done = notify_run(tmp_path, "channels:\n  ops: {type: email, to: [a@b.test]}\n"
                                "rules:\n  - name: r\n    when: {kind: alarm}\n"
                                "    notify: [nope]\n")
    assert done.returncode == 2
    assert "rules.yaml" in done.stderr and "rules[0].notify[0]" in done.stderr
    assert "nope" in done.stderr


def test_an_unknown_user_in_a_rule_is_refused(tmp_path: Path) -> None:
    (tmp_path / "users.yaml").write_text(
        "users:\n  - {username: ana, password_hash: $argon2id$v=19$xxxxxxxxxxxxxxxxxxxxxx, "
        "role: engineer, customers: ['*'], regions: ['*']}\n")
    done = notify_run(tmp_path, "rules:\n  - name: r\n    when: {kind: alarm}\n"
                                "    notify: ['user:bob']\n")
    assert done.returncode == 2 and "bob" in done.stderr, done.stderr
