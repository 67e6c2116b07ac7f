"""Users' own notification preferences in the notifier (connectors/notify/service.py): the
rules mail `user:ana` for major alarms; Ana's own preferences file (as the API writes it)
narrows what reaches her — severities, quiet hours that critical alarms ignore, her own
address — and is taken again while the notifier runs, a broken one not taken.

A real notifier (its broker and Redis, topics of this module's own) is driven through
`handle` and `tick` with injected times; what it decided is read from its real outbox."""

from __future__ import annotations

import datetime as dt
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.notify.service import Notifier
from connectors.settings import Settings
from contracts.events import Severity
from contracts.notify import NotifyEvent

RULES = """\
rules:
  - name: majors
    when: {kind: alarm, severity_at_least: major}
    notify: ["user:ana", "user:bo"]
preferences:
  bo: {email: bo@rules.example.test, severities: [critical, major, minor]}
digest: {window_s: 1, max_per_window: 1000}
"""
USERS = """\
users:
  - {username: ana, password_hash: $argon2id$v=19$xxxxxxxxxxxxxxxxxxxxxx, role: engineer,
     customers: ['*'], regions: ['*'], email: ana@example.test}
  - {username: bo, password_hash: $argon2id$v=19$xxxxxxxxxxxxxxxxxxxxxx, role: engineer,
     customers: ['*'], regions: ['*'], email: bo@users.example.test}
"""
NOON = int(dt.datetime(2026, 6, 1, 12, tzinfo=dt.UTC).timestamp() * 1000)
NIGHT = NOON + 11 * 3_600_000  # 23:00 UTC


@pytest.fixture
def notifier(tmp_path: Path, kafka_bootstrap: str, redis_url: str) -> Iterator[Notifier]:
    (tmp_path / "rules.yaml").write_text(RULES, encoding="utf-8")
    (tmp_path / "users.yaml").write_text(USERS, encoding="utf-8")
    suffix = uuid.uuid4().hex[:8]
    settings = Settings(KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, REDIS_URL=redis_url,
                        run_dir=tmp_path, notify_rules=tmp_path / "rules.yaml",
                        topic_breaches=f"t-{suffix}.breaches", topic_alerts=f"t-{suffix}.alerts",
                        topic_dlq=f"t-{suffix}.dlq", topic_partitions=1)
    n = Notifier(settings, base_url="http://bessmon.example.test/")
    yield n
    n.consumer.close()
    n.producer.close()
    n.dispatcher.close()
    n.redis.close()


def write(path: Path, text: str, stamp_s: int) -> None:
    """The file as the API writes it, with a modification time of its own (the notifier
    takes a file again when its time or size changed)."""
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(stamp_s * 10**9, stamp_s * 10**9))


def alarm(event_id: str, severity: Severity, at_ms: int) -> NotifyEvent:
    return NotifyEvent(event_id=event_id, kind="alarm", transition="raised", severity=severity,
                       site_id="nordvik", customer="Nordvik Energi AB", region="SE3",
                       asset_id="nordvik-u01", title=f"{severity.upper()} nordvik-u01",
                       ts_ms=at_ms)


def mailed(n: Notifier) -> dict[str, set[str]]:
    """Event id → the addresses its messages went to, from the outbox."""
    out: dict[str, set[str]] = {}
    for m in n.outbox.log(limit=500):
        for event_id in m.event_ids:
            out.setdefault(event_id, set()).add(m.address)
    return out


def test_anas_own_preferences_narrow_what_reaches_her(notifier: Notifier,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    n = notifier
    path = n.settings.notify_preferences_path
    assert path == n.settings.run_dir / "notify-preferences.yaml" and not path.exists()
    n.handle(alarm("major-0", "major", NOON), NOON)
    assert mailed(n)["major-0"] == {"ana@example.test", "bo@rules.example.test"}

    # Ana takes critical alarms only: the file is taken at the next tick.
    write(path, "preferences:\n  ana: {severities: [critical]}\n", 1)
    n.tick(NOON + 1)
    n.handle(alarm("major-1", "major", NOON + 2), NOON + 2)
    n.handle(alarm("critical-1", "critical", NOON + 3), NOON + 3)
    sent = mailed(n)
    assert sent["major-1"] == {"bo@rules.example.test"}  # bo still hears of it, she does not
    assert sent["critical-1"] == {"ana@example.test", "bo@rules.example.test"}

    # Quiet hours 22:00-07:00 (UTC), every severity, and an address of her own.
    write(path, "preferences:\n  ana: {quiet_hours: '22:00-07:00', email: ana@home.example.test}"
                "\n  bo: {severities: [critical]}\n", 2)
    n.tick(NOON + 4)
    n.handle(alarm("major-2", "major", NIGHT), NIGHT)
    n.handle(alarm("critical-2", "critical", NIGHT + 1), NIGHT + 1)
    n.handle(alarm("major-3", "major", NOON + 5), NOON + 5)
    sent = mailed(n)
    assert "major-2" not in sent  # held by her quiet hours; bo takes critical only now
    assert sent["critical-2"] == {"ana@home.example.test", "bo@rules.example.test"}
    assert sent["major-3"] == {"ana@home.example.test"}  # outside quiet hours: hers again

    # A file broken by hand is not taken: hers stay in force, and the log says where.
    caplog.set_level(logging.ERROR, "connectors.notify.service")
    write(path, "preferences:\n  ana:\n    severities: [loud]\n", 3)
    n.tick(NIGHT + 2)
    assert f"{path}:3: preferences.ana.severities[0]" in caplog.text
    n.handle(alarm("major-4", "major", NIGHT + 3), NIGHT + 3)
    assert "major-4" not in mailed(n)  # still quiet for her, bo still critical only

    # Mended: taken; removed: the rules file's preferences alone again.
    write(path, "preferences:\n  bo: {severities: [critical]}\n", 4)
    n.tick(NIGHT + 4)
    n.handle(alarm("major-5", "major", NIGHT + 5), NIGHT + 5)
    assert mailed(n)["major-5"] == {"ana@example.test"}
    path.unlink()
    n.tick(NIGHT + 6)
    n.handle(alarm("major-6", "major", NIGHT + 7), NIGHT + 7)
    assert mailed(n)["major-6"] == {"ana@example.test", "bo@rules.example.test"}


def test_own_preferences_are_read_at_start_and_survive_a_rules_reload(
        notifier: Notifier, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write(notifier.settings.notify_preferences_path,
          "preferences:\n  ana: {severities: [critical]}\n", 1)
    n = Notifier(notifier.settings.model_copy(update={"notify_workers": 2}),
                 base_url="http://bessmon.example.test/")
    assert n.dispatcher.workers == 2 and notifier.dispatcher.workers == 4  # BESSMON_NOTIFY_WORKERS
    try:
        n.handle(alarm("major-0", "major", NOON), NOON)
        assert mailed(n)["major-0"] == {"bo@rules.example.test"}
        # The rules change (an admin saves them): Ana's own preferences still apply.
        write(tmp_path / "rules.yaml", RULES.replace("minor]", "minor, warning]"), 5)
        n.tick(NOON + 1)
        n.handle(alarm("major-1", "major", NOON + 2), NOON + 2)
        n.handle(alarm("critical-1", "critical", NOON + 3), NOON + 3)
        assert mailed(n)["major-1"] == {"bo@rules.example.test"}
        assert mailed(n)["critical-1"] == {"ana@example.test", "bo@rules.example.test"}
    finally:
        n.consumer.close()
        n.producer.close()
        n.dispatcher.close()
        n.redis.close()
    # A broken file at start is said, and not fatal: the rules file's preferences apply.
    write(notifier.settings.notify_preferences_path, "preferences: [ana]\n", 2)
    caplog.set_level(logging.ERROR, "connectors.notify.service")
    m = Notifier(notifier.settings, base_url="http://bessmon.example.test/")
    try:
        assert "notify-preferences.yaml:1: preferences" in caplog.text
        m.handle(alarm("major-2", "major", NOON + 4), NOON + 4)
        assert mailed(m)["major-2"] == {"ana@example.test", "bo@rules.example.test"}
    finally:
        m.consumer.close()
        m.producer.close()
        m.dispatcher.close()
        m.redis.close()
