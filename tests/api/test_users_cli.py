"""`bessmon users`: adding, listing, disabling and enabling local users through the real
command — hashed with argon2, refused when invalid, every change in the audit log, and a
disabled user's token refused at their next request."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from fastapi.testclient import TestClient

from api.main import create_app
from connectors.api_store import ApiStore
from connectors.audit import AuditLog
from connectors.settings import REPO_ROOT, Settings


def bessmon(settings: Settings, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BESSMON_USERS_FILE": str(settings.users_path),
           "BESSMON_API_DB": str(settings.api_db_path), "BESSMON_RUN_DIR": str(settings.run_dir)}
    return subprocess.run([sys.executable, "-m", "infra.cli", *args], env=env, cwd=REPO_ROOT,
                          input=stdin, capture_output=True, text=True, timeout=60)


def test_add_list_disable_enable(tmp_path: Path, api_settings: Settings) -> None:
    settings = api_settings.model_copy(update={"users_file": tmp_path / "users.yaml"})
    added = bessmon(settings, "users", "add", "ola", "--role", "engineer", "--customer",
                    "Nordvik Energi AB", "--region", "*", "--password-stdin",
                    stdin="correct horse battery\n")
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("ola: engineer, customers Nordvik Energi AB, regions *")
    text = settings.users_path.read_text()
    assert "$argon2id$" in text and "correct horse" not in text
    assert oct(settings.users_path.stat().st_mode & 0o777) == "0o600"
    listed = bessmon(settings, "users", "list")
    assert listed.stdout.splitlines() == ["ola\tengineer\tcustomers=Nordvik Energi AB\tregions=*"]

    with TestClient(create_app(settings)) as client:
        signed_in = client.post("/api/v1/auth/token",
                                data={"username": "ola", "password": "correct horse battery"})
        assert signed_in.status_code == 200
        headers = {"Authorization": f"Bearer {signed_in.json()['access_token']}"}
        me = client.get("/api/v1/auth/me", headers=headers).json()
        assert (me["role"], me["sites"]) == ("engineer", ["nordvik"])

        assert bessmon(settings, "users", "disable", "ola").returncode == 0
        refused = client.get("/api/v1/auth/me", headers=headers)
        assert refused.status_code == 401
        assert refused.json()["detail"] == "user no longer exists or is disabled"
        assert bessmon(settings, "users", "enable", "ola").returncode == 0
        assert client.get("/api/v1/auth/me", headers=headers).status_code == 200

    entries = AuditLog(ApiStore(settings.api_db_path)).entries()
    assert [(e.action, e.target) for e in entries if e.action.startswith("user.")] == [
        ("user.set", "ola"), ("user.disable", "ola"), ("user.enable", "ola")]


def test_bad_input_is_refused(tmp_path: Path, api_settings: Settings) -> None:
    settings = api_settings.model_copy(update={"users_file": tmp_path / "users.yaml"})
    short = bessmon(settings, "users", "add", "ola", "--role", "viewer", "--customer", "*",
                    "--region", "*", "--password-stdin", stdin="short\n")
    assert (short.returncode, short.stderr.strip()) == (
        2, "bessmon: a password has at least 10 characters")
    role = bessmon(settings, "users", "add", "ola", "--role", "king", "--customer", "*",
                   "--region", "*", "--password-stdin", stdin="long enough pw\n")
    assert role.returncode == 2 and "invalid choice: 'king'" in role.stderr
    missing = bessmon(settings, "users", "disable", "nobody")
    assert missing.returncode == 2 and "no user 'nobody'" in missing.stderr
    settings.users_path.write_text("users:\n  - username: x\n    role: viewer\n")
    broken = bessmon(settings, "users", "list")
    assert broken.returncode == 2
    assert broken.stderr.strip() == (f"bessmon: {settings.users_path}:2: users[0].password_hash:"
                                     " required key is missing")


def test_a_user_has_an_email_the_notifier_reads(tmp_path: Path, api_settings: Settings) -> None:
    """`--email`: where the notifier's `user:<name>` messages go (a rules file's preference
    may name another); a malformed address is refused and nothing is written."""
    from connectors.notify.service import read_users
    from contracts.notify import NotifyConfig, parse_notify

    settings = api_settings.model_copy(update={"users_file": tmp_path / "users.yaml"})
    bad = bessmon(settings, "users", "add", "bo", "--role", "viewer", "--customer", "*",
                  "--region", "*", "--email", "not an address", "--password-stdin",
                  stdin="correct horse battery\n")
    assert bad.returncode == 2 and "not an email address" in bad.stderr
    assert not settings.users_path.exists()
    for name in ("bo", "ana"):
        done = bessmon(settings, "users", "add", name, "--role", "viewer", "--customer", "*",
                       "--region", "*", "--email", f"{name}@example.test", "--password-stdin",
                       stdin="correct horse battery\n")
        assert done.returncode == 0, done.stderr
    listed = bessmon(settings, "users", "list").stdout
    assert "email=bo@example.test" in listed
    users = read_users(settings.users_path, NotifyConfig())
    assert users["bo"].email == "bo@example.test"
    prefs = parse_notify("preferences:\n  ana: {email: ana@home.test}\n", "r.yaml")
    assert read_users(settings.users_path, prefs)["ana"].email == "ana@home.test"
