"""Notification routing (contracts/notify.py): the rules file is refused with file, key path
and line when broken; events reach exactly the recipients their rules, scopes and preferences
allow, once per transition; the throttle, flapping and escalation timelines run on injected
times; and no user ever hears of a site outside their scope (Hypothesis)."""

from __future__ import annotations

import datetime as dt
import pickle
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.errors import InvalidInput
from contracts.events import SEVERITIES
from contracts.notify import (
    Delivery,
    Due,
    Escalation,
    NotifyConfig,
    NotifyEvent,
    Throttle,
    UserInfo,
    dedup_key,
    deliveries,
    in_window,
    load_notify,
    on_call,
    parse_notify,
    route,
)

MINIMAL = """\
channels:
  ops-mail: {type: email, to: [ops@example.test]}
rules:
  - name: majors
    when: {kind: alarm, severity_at_least: major}
    notify: [ops-mail]
"""

NORDVIK, BAVARIA = ("nordvik", "Nordvik Energi AB", "SE3"), ("bavaria", "Bavaria Power", "DE")

CONFIG = """\
channels:
  ops-mail: {type: email, to: [ops@example.test, noc@example.test]}
  hook: {type: webhook, url: "https://hooks.example.test/bess", secret_env: HOOK_SECRET}
  slack-se: {type: slack, url: "https://hooks.slack.example.test/T1"}
  teams-de: {type: teams, url: "http://teams.example.test/wh"}
groups:
  field: [ana, bo, dee, ed]
rotations:
  primary: {tz: Europe/Stockholm, start: "2026-01-05T08:00", period_h: 168, users: [ana, bo, cy]}
preferences:
  bo: {severities: [critical, major], quiet_hours: "22:00-07:00", tz: Europe/Stockholm}
  cy: {channels: [slack]}
  fay: {email: fay@home.example.test}
rules:
  - name: majors
    when: {kind: alarm, severity_at_least: major}
    notify: [ops-mail]
  - name: criticals-too
    when: {kind: [alarm, control], severity_at_least: critical}
    notify: [ops-mail, hook]
  - name: sweden
    when: {regions: [SE3, SE4]}
    notify: [slack-se]
  - name: bavaria-site
    when: {sites: [bavaria], customers: [Bavaria Power]}
    notify: [teams-de]
  - name: field-team
    when: {kind: alarm}
    notify: [group:field, user:fay]
"""

USERS = {
    "ana": UserInfo("ana", "ana@example.test", "admin", ("*",), ("*",)),
    "bo": UserInfo("bo", "bo@example.test", "engineer", ("Nordvik Energi AB",), ("*",)),
    "cy": UserInfo("cy", "cy@example.test", "operator", ("Nordvik Energi AB",), ("SE3",)),
    "dee": UserInfo("dee", "dee@example.test", "viewer", ("Bavaria Power",), ("DE",)),
    "ed": UserInfo("ed", "ed@example.test", "viewer", ("*",), ("*",), disabled=True),
    "fay": UserInfo("fay", None, "viewer", ("*",), ("SE3",)),
}


def ms(text: str) -> int:
    """An ISO time with offset as epoch milliseconds."""
    return int(dt.datetime.fromisoformat(text).timestamp() * 1000)


NOON = ms("2026-06-01T10:00:00Z")  # a Monday, 12:00 in Stockholm


def event(site: tuple[str, str, str] | None = NORDVIK, *, kind: Any = "alarm",
          severity: Any = "major", transition: Any = "raised", event_id: str = "b-1",
          ts_ms: int = NOON) -> NotifyEvent:
    site_id, customer, region = site if site else (None, None, None)
    return NotifyEvent(event_id=event_id, kind=kind, transition=transition, severity=severity,
                       site_id=site_id, customer=customer, region=region, asset_id="u1",
                       title="cell temperature high", text="58 °C > 55 °C", ts_ms=ts_ms,
                       link="https://bessmon.example.test/alarms/b-1")


@pytest.fixture(scope="module")
def config() -> NotifyConfig:
    return parse_notify(CONFIG, "notify.yaml")


def targets(ds: list[Delivery]) -> list[tuple[str, str]]:
    return [(d.recipient, d.address) for d in ds]


# --- the file -------------------------------------------------------------------------------


def test_the_minimal_form_parses_with_defaults(tmp_path: Path) -> None:
    path = tmp_path / "notify.yaml"
    path.write_text(MINIMAL, encoding="utf-8")
    cfg = load_notify(path)
    assert cfg.channels["ops-mail"].to == ("ops@example.test",)
    (rule,) = cfg.rules
    assert (rule.name, rule.when.kind, rule.when.severity_at_least, rule.notify) == \
        ("majors", ("alarm",), "major", ("ops-mail",))
    assert rule.when.tz == "UTC" and rule.escalate == ()
    assert (cfg.digest.window_s, cfg.digest.max_per_window) == (60.0, 5)
    assert (cfg.flapping.window_s, cfg.flapping.max_transitions) == (600.0, 6)
    assert parse_notify("{}", "empty.yaml") == NotifyConfig()


def test_the_full_form_parses(config: NotifyConfig) -> None:
    assert config.channels["hook"].secret_env == "HOOK_SECRET"
    assert config.channels["teams-de"].addresses == ("http://teams.example.test/wh",)
    assert config.rules[1].when.kind == ("alarm", "control")
    assert config.groups["field"] == ("ana", "bo", "dee", "ed")
    assert config.preferences["bo"].quiet_hours == "22:00-07:00"
    assert config.rotations["primary"].start == dt.datetime(2026, 1, 5, 8, 0)


HEAD = """\
channels:
  mail: {type: email, to: [ops@example.test]}
  hook: {type: webhook, url: "https://h.example.test/x"}
"""
RULE = "rules:\n  - name: r\n    notify: [mail]\n"


@pytest.mark.parametrize(("text", "message"), [
    # channels
    ("channels:\n  mail: {type: email}\n",
     "n.yaml:2: channels.mail: an email channel needs 'to': the addresses to write to"),
    ("channels:\n  mail: {type: email, to: []}\n", "n.yaml:2: channels.mail.to: must not be empty"),
    ("channels:\n  mail: {type: email, to: [ops]}\n",
     "n.yaml:2: channels.mail.to[0]: 'ops' is not an email address"),
    ("channels:\n  mail: {type: email, to: [a@b.test], url: 'https://x.test'}\n",
     "n.yaml:2: channels.mail: an email channel takes 'to' only, no 'url' or 'secret_env'"),
    ("channels:\n  s: {type: slack, url: 'ftp://x.example.test/a'}\n",
     "n.yaml:2: channels.s.url: 'ftp://x.example.test/a' is not an http or https URL"),
    ("channels:\n  s: {type: teams, url: 'https:///path'}\n",
     "n.yaml:2: channels.s.url: 'https:///path' names no host"),
    ("channels:\n  s: {type: slack}\n", "n.yaml:2: channels.s: a slack channel needs 'url'"),
    ("channels:\n  s: {type: slack, url: 'https://x.test', secret_env: K}\n",
     "n.yaml:2: channels.s: 'secret_env' is for webhook channels only"),
    ("channels:\n  w: {type: webhook, url: 'https://x.test', secret_env: 'not a name'}\n",
     "n.yaml:2: channels.w.secret_env: 'not a name' is not an environment variable name"),
    ("channels:\n  w: {type: pager, url: 'https://x.test'}\n",
     "n.yaml:2: channels.w.type: must be 'email', 'webhook', 'slack' or 'teams' (got 'pager')"),
    ("channels:\n  bad name: {type: slack, url: 'https://x.test'}\n",
     "n.yaml:2: channels.bad name: must be 1-64 letters, digits, '.', '_' or '-', starting with "
     "a letter or digit (got 'bad name')"),
    # rules: references, with their key path
    (HEAD + "rules:\n  - name: r\n    notify: [mail, nope]\n",
     "n.yaml:6: rules[0].notify[1]: unknown channel 'nope' (channels: hook, mail)"),
    (HEAD + "groups: {ops: [ana]}\nrules:\n  - name: r\n    notify: [group:opz]\n",
     "n.yaml:7: rules[0].notify[0]: unknown group 'opz' (groups: ops)"),
    (HEAD + "rules:\n  - name: r\n    notify:\n      - mail\n      - rotation:night\n",
     "n.yaml:8: rules[0].notify[1]: unknown rotation 'night' (rotations: none)"),
    (HEAD + "rules:\n  - name: r\n    notify: ['user:no body']\n",
     "n.yaml:6: rules[0].notify[0]: 'no body' is not a username"),
    (HEAD + "rules:\n  - name: r\n    notify: ['pager:x']\n",
     "n.yaml:6: rules[0].notify[0]: unknown target 'pager:x': a channel name, user:<username>, "
     "group:<name> or rotation:<name>"),
    (HEAD + "rules:\n  - name: r\n    notify: [mail]\n    escalate:\n"
            "      - {after_s: 60, notify: [mail, group:x]}\n",
     "n.yaml:8: rules[0].escalate[0].notify[1]: unknown group 'x' (groups: none)"),
    (HEAD + "rules:\n  - name: r\n    notify: [mail]\n    escalate:\n"
            "      - {after_s: 600, notify: [mail]}\n      - {after_s: 300, notify: [hook]}\n",
     "n.yaml:9: rules[0].escalate[1].after_s: 300 is not later than the tier before (600): "
     "tiers escalate one after another"),
    (HEAD + "rules:\n  - name: r\n    notify: [mail]\n    escalate:\n"
            "      - {after_s: 0, notify: [mail]}\n",
     "n.yaml:8: rules[0].escalate[0].after_s: must be greater than 0 (got 0)"),
    # rules: duplicates, empty recipients, bad conditions
    (HEAD + RULE + "  - name: r\n    notify: [hook]\n",
     "n.yaml:7: rules[1].name: rule name 'r' is used twice (first by rules[0])"),
    (HEAD + "rules:\n  - name: r\n    notify: []\n",
     "n.yaml:6: rules[0].notify: must not be empty"),
    (HEAD + "rules:\n  - name: r\n", "n.yaml:5: rules[0].notify: required key is missing"),
    (HEAD + "rules:\n  - name: r\n    when: {hours: '22:00-7:00'}\n    notify: [mail]\n",
     "n.yaml:6: rules[0].when.hours: '22:00-7:00' is not a time window written HH:MM-HH:MM "
     "(24-hour clock, e.g. 22:00-07:00)"),
    (HEAD + "rules:\n  - name: r\n    when: {hours: '24:00-07:00'}\n    notify: [mail]\n",
     "n.yaml:6: rules[0].when.hours: '24:00-07:00' is not a time window written HH:MM-HH:MM "
     "(24-hour clock, e.g. 22:00-07:00)"),
    (HEAD + "rules:\n  - name: r\n    when: {hours: '08:00-08:00'}\n    notify: [mail]\n",
     "n.yaml:6: rules[0].when.hours: '08:00-08:00' starts where it ends: leave it out for all "
     "day"),
    (HEAD + "rules:\n  - name: r\n    when: {days: [mon, fry]}\n    notify: [mail]\n",
     "n.yaml:6: rules[0].when.days[1]: must be 'mon', 'tue', 'wed', 'thu', 'fri', 'sat' or "
     "'sun' (got 'fry')"),
    (HEAD + "rules:\n  - name: r\n    when: {tz: Europe/Stockholmm}\n    notify: [mail]\n",
     "n.yaml:6: rules[0].when.tz: unknown IANA time zone 'Europe/Stockholmm'"),
    (HEAD + "rules:\n  - name: r\n    when: {kind: [alarm, page]}\n    notify: [mail]\n",
     "n.yaml:6: rules[0].when.kind[1]: must be 'alarm', 'alert' or 'control' (got 'page')"),
    (HEAD + "rules:\n  - name: r\n    when: {severity_at_least: high}\n    notify: [mail]\n",
     "n.yaml:6: rules[0].when.severity_at_least: must be 'critical', 'major', 'minor' or "
     "'warning' (got 'high')"),
    (HEAD + "rules:\n  - name: r\n    when: {sites: []}\n    notify: [mail]\n",
     "n.yaml:6: rules[0].when.sites: must not be empty"),
    (HEAD + "rules:\n  - name: r\n    when: {severity: major}\n    notify: [mail]\n",
     "n.yaml:6: rules[0].when.severity: extra inputs are not permitted (got 'major')"),
    # groups, rotations, preferences, throttle
    (HEAD + "groups:\n  ops: []\n", "n.yaml:5: groups.ops: must not be empty"),
    (HEAD + "rotations:\n  p: {start: '2026-01-05', period_h: 24, users: [ana]}\n",
     "n.yaml:5: rotations.p.start: must be a date and time written YYYY-MM-DDTHH:MM "
     "(got '2026-01-05')"),
    (HEAD + "rotations:\n  p: {start: '2026-01-05T08:00', period_h: 0, users: [ana]}\n",
     "n.yaml:5: rotations.p.period_h: must be greater than 0 (got 0)"),
    (HEAD + "rotations:\n  p:\n    start: '2026-01-05T08:00'\n    period_h: 24\n    users: []\n",
     "n.yaml:8: rotations.p.users: must not be empty"),
    (HEAD + "preferences:\n  bo: {quiet_hours: '22-07'}\n",
     "n.yaml:5: preferences.bo.quiet_hours: '22-07' is not a time window written HH:MM-HH:MM "
     "(24-hour clock, e.g. 22:00-07:00)"),
    (HEAD + "preferences:\n  bo: {channels: [sms]}\n",
     "n.yaml:5: preferences.bo.channels[0]: must be 'email', 'webhook', 'slack' or 'teams' "
     "(got 'sms')"),
    (HEAD + "digest: {window_s: 60, max_per_window: 0}\n",
     "n.yaml:4: digest.max_per_window: must be greater than or equal to 1 (got 0)"),
    # the document itself
    ("- a\n", "n.yaml:1: must be a mapping with 'channels' and 'rules'"),
    ("rules: [\n", "n.yaml:2: not valid YAML: expected the node content, but found "
                   "'<stream end>'"),
])
def test_invalid_files_are_refused_with_path_and_line(text: str, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_notify(text, "n.yaml")
    assert str(caught.value) == message


@pytest.mark.parametrize(("extra", "message"), [
    ("rules:\n  - name: r\n    notify: [user:zed]\n",
     "n.yaml:6: rules[0].notify[0]: unknown user 'zed'"),
    ("groups:\n  ops: [ana, zed]\n", "n.yaml:5: groups.ops[1]: unknown user 'zed'"),
    ("rotations:\n  p: {start: '2026-01-05T08:00', period_h: 24, users: [zed]}\n",
     "n.yaml:5: rotations.p.users[0]: unknown user 'zed'"),
    ("preferences:\n  zed: {tz: UTC}\n", "n.yaml:5: preferences.zed: unknown user 'zed'"),
])
def test_unknown_users_are_refused_when_the_users_are_known(extra: str, message: str) -> None:
    parse_notify(HEAD + extra, "n.yaml")  # without the users file: only the form is checked
    with pytest.raises(InvalidInput) as caught:
        parse_notify(HEAD + extra, "n.yaml", usernames={"ana", "bo"})
    assert str(caught.value) == message


# --- routing --------------------------------------------------------------------------------


def test_a_major_alarm_reaches_the_rules_that_match_it(config: NotifyConfig) -> None:
    ds = route(config, event(), USERS, NOON)
    assert targets(ds) == [
        ("ops-mail", "ops@example.test"), ("ops-mail", "noc@example.test"),  # majors
        ("slack-se", "https://hooks.slack.example.test/T1"),  # sweden
        ("ana", "ana@example.test"), ("bo", "bo@example.test"),  # field team (in scope)
        ("fay", "fay@home.example.test"),  # her preferences' address
    ]
    assert ds[0] == Delivery("ops-mail", "email", "ops@example.test", "ops-mail",
                             "b-1:raised:email:ops@example.test")
    assert ds[2].channel_type == "slack" and ds[3].channel == "user:ana"


@pytest.mark.parametrize(("kwargs", "expected"), [
    # severity: `majors` takes major and worse, `criticals-too` critical only
    ({"severity": "minor"}, {"slack-se", "ana", "fay"}),  # bo takes critical and major only
    ({"severity": "warning"}, {"slack-se", "ana", "fay"}),
    ({"severity": "critical"}, {"ops-mail", "hook", "slack-se", "ana", "bo", "fay"}),
    # kind: one or a list; a rule without kind takes any
    ({"kind": "control", "severity": "critical"}, {"ops-mail", "hook", "slack-se"}),
    ({"kind": "alert", "severity": "critical"}, {"slack-se"}),
    # site, customer, region
    ({"site": BAVARIA, "kind": "alert"}, {"teams-de"}),
    ({"site": ("bavaria-2", "Bavaria Power", "DE"), "kind": "alert"}, set()),
    ({"site": ("nordvik-2", "Nordvik Energi AB", "SE4"), "kind": "alert"}, {"slack-se"}),
    ({"site": BAVARIA}, {"ops-mail", "teams-de", "ana", "dee"}),
])
def test_rules_match_by_kind_severity_and_site(config: NotifyConfig, kwargs: dict[str, Any],
                                                expected: set[str]) -> None:
    assert {d.recipient for d in route(config, event(**kwargs), USERS, NOON)} == expected


NIGHT = """\
channels:
  night: {type: webhook, url: "https://n.example.test/"}
rules:
  - name: nights
    when: {hours: "22:00-06:00", tz: Europe/Stockholm}
    notify: [night]
  - name: friday-nights
    when: {hours: "22:00-06:00", days: [fri], tz: America/New_York}
    notify: [night]
  - name: mondays
    when: {days: [mon], tz: Pacific/Auckland}
    notify: [night]
"""


@pytest.mark.parametrize(("at", "rules"), [
    # Stockholm in June is UTC+2: 22:00-06:00 local is 20:00-04:00 UTC, across midnight.
    ("2026-06-01T19:59:59Z", set()),
    ("2026-06-01T20:00:00Z", {"nights"}),
    ("2026-06-01T23:59:00Z", {"nights"}),
    ("2026-06-02T03:59:59Z", {"nights"}),
    ("2026-06-02T04:00:00Z", set()),
    # In January it is UTC+1: the same local window an hour later in UTC.
    ("2026-01-14T20:30:00Z", set()),
    ("2026-01-14T21:30:00Z", {"nights"}),
    ("2026-01-15T04:30:00Z", {"nights"}),
    # A wrapping window belongs to the day it starts: Friday 22:00 to Saturday 06:00 (NY).
    ("2026-06-05T22:00:00-04:00", {"friday-nights", "nights"}),  # 04:00 in Stockholm
    ("2026-06-06T05:59:00-04:00", {"friday-nights"}),
    ("2026-06-06T22:30:00-04:00", {"nights"}),  # Saturday night in New York
    ("2026-06-05T05:00:00-04:00", set()),  # Friday's early hours belong to Thursday
    # Days alone, in their own zone: Sunday 13:00 UTC is Monday 01:00 in Auckland (UTC+12).
    ("2026-06-07T13:00:00Z", {"mondays"}),
    ("2026-06-07T11:59:00Z", set()),
])
def test_hours_and_days_in_their_time_zone(at: str, rules: set[str]) -> None:
    cfg = parse_notify(NIGHT, "night.yaml")
    now = ms(at)
    matched = {r.name for r in cfg.rules if in_window(r.when.hours, r.when.days, now, r.when.tz)}
    assert matched == rules
    assert bool(route(cfg, event(), {}, now)) == bool(rules)


SCOPED = """\
channels: {}
groups:
  everyone: [ana, bo, cy, dee]
rules:
  - name: bavaria-people
    notify: [user:dee, group:everyone]
"""


def test_a_user_never_hears_of_a_site_outside_their_scope() -> None:
    cfg = parse_notify(SCOPED, "scoped.yaml")
    nordvik = {d.recipient for d in route(cfg, event(NORDVIK), USERS, NOON)}
    bavaria = {d.recipient for d in route(cfg, event(BAVARIA), USERS, NOON)}
    other_region = {d.recipient for d in
                    route(cfg, event(("n2", "Nordvik Energi AB", "SE4")), USERS, NOON)}
    assert nordvik == {"ana", "bo", "cy"}  # dee's rule names her; her scope wins
    assert bavaria == {"ana", "dee"}
    assert other_region == {"ana", "bo"}  # cy sees SE3 only
    # A fleet-wide event (no site): only users who see every customer and region.
    assert {d.recipient for d in route(cfg, event(None), USERS, NOON)} == {"ana"}
    # An empty scope sees nothing (as api/auth/principal.py's Scope).
    nobody = {"ana": UserInfo("ana", "ana@example.test", "admin", (), ())}
    assert route(cfg, event(NORDVIK), nobody, NOON) == []


def test_site_visibility_can_be_decided_by_the_caller() -> None:
    cfg = parse_notify(SCOPED, "scoped.yaml")
    seen: list[tuple[str, str]] = []

    def visible(user: UserInfo, site_id: str) -> bool:
        seen.append((user.username, site_id))
        return user.username == "dee"

    ds = route(cfg, event(NORDVIK), USERS, NOON, site_visible=visible)
    assert [d.recipient for d in ds] == ["dee"]
    assert ("ana", "nordvik") in seen


def test_disabled_unknown_and_addressless_users_get_nothing(config: NotifyConfig) -> None:
    users = {k: v for k, v in USERS.items() if k not in ("bo", "fay")}
    recipients = {d.recipient for d in route(config, event(), users, NOON)}
    assert not {"bo", "ed", "fay"} & recipients  # bo unknown now, ed disabled, fay no address
    assert "ana" in recipients


def test_preferences_severities_channels_and_quiet_hours(config: NotifyConfig) -> None:
    night = ms("2026-06-01T23:30:00+02:00")  # bo's quiet hours (Stockholm)
    morning = ms("2026-06-02T07:00:00+02:00")  # just after them

    def people(severity: Any, now: int) -> set[str]:
        return {d.recipient for d in route(config, event(severity=severity), USERS, now)} & \
            {"ana", "bo", "cy"}

    assert people("major", NOON) == {"ana", "bo"}  # cy takes slack only: no email to her
    assert people("minor", NOON) == {"ana"}  # bo takes critical and major only
    assert people("major", night) == {"ana"}  # quiet hours
    assert people("critical", night) == {"ana", "bo"}  # critical ignores quiet hours
    assert people("major", morning) == {"ana", "bo"}


@pytest.mark.parametrize(("at", "expected"), [
    ("2026-01-05T08:00:00+01:00", "ana"),  # start
    ("2026-01-12T07:59:00+01:00", "ana"),
    ("2026-01-12T08:00:00+01:00", "bo"),
    ("2026-01-19T08:00:00+01:00", "cy"),
    ("2026-01-26T08:00:00+01:00", "ana"),  # round again
    ("2026-01-04T12:00:00+01:00", "cy"),  # before the start: the turn before
    # After the switch to summer time the hand-over stays at 08:00 local (CEST, UTC+2).
    ("2026-04-06T07:59:00+02:00", "ana"),  # week 12 (mod 3 = 0)
    ("2026-04-06T08:00:00+02:00", "bo"),
])
def test_rotation_on_call_at_injected_times(config: NotifyConfig, at: str,
                                            expected: str) -> None:
    assert on_call(config.rotations["primary"], ms(at)) == expected
    ds = deliveries(config, event(severity="critical"), ["rotation:primary"], USERS, ms(at))
    assert [d.recipient for d in ds] == ([] if expected == "cy" else [expected])  # cy: slack


def test_groups_expand_to_their_users_in_scope(config: NotifyConfig) -> None:
    ds = deliveries(config, event(BAVARIA), ["group:field"], USERS, NOON)
    assert [d.recipient for d in ds] == ["ana", "dee"]  # bo: Nordvik only; ed: disabled


def test_one_message_per_transition_recipient_and_channel(config: NotifyConfig) -> None:
    critical = event(severity="critical")
    ds = route(config, critical, USERS, NOON)
    keys = [d.dedup_key for d in ds]
    assert len(keys) == len(set(keys))
    # ops-mail is named by two rules; ana by a group, a user target and a rule
    assert [d.address for d in ds].count("ops@example.test") == 1
    twice = deliveries(config, critical, ["group:field", "user:ana", "ops-mail", "ops-mail"],
                       USERS, NOON)
    assert [d.recipient for d in twice] == ["ana", "bo", "ops-mail", "ops-mail"]
    # stable: a replay gives the same keys; another transition other keys
    assert [d.dedup_key for d in route(config, critical, USERS, NOON + 5000)] == keys
    cleared = route(config, critical.model_copy(update={"transition": "cleared"}), USERS, NOON)
    assert {d.dedup_key for d in cleared}.isdisjoint(keys)
    assert "b-1:cleared:webhook:https://hooks.example.test/bess" in \
        {d.dedup_key for d in cleared}
    assert dedup_key(critical, "email", "a@b.test") == "b-1:raised:email:a@b.test"


def test_the_same_address_through_a_channel_and_a_user_is_one_message() -> None:
    cfg = parse_notify("channels:\n  m: {type: email, to: [ana@example.test]}\n"
                       "rules:\n  - name: r\n    notify: [m, user:ana]\n", "n.yaml")
    ds = route(cfg, event(), USERS, NOON)
    assert [(d.channel, d.address) for d in ds] == [("m", "ana@example.test")]


# --- throttle -------------------------------------------------------------------------------

MAIL = Delivery("ops-mail", "email", "ops@example.test", "ops-mail", "x")
HOOK = Delivery("hook", "webhook", "https://hooks.example.test/bess", "hook", "y")


def offer_all(t: Throttle, d: Delivery, events: list[NotifyEvent], now: int) -> list[Any]:
    out = []
    for e in events:
        out += t.offer(d, e, now)
    return out


def test_throttle_sends_a_few_then_one_digest_at_the_windows_end() -> None:
    cfg = parse_notify("digest: {window_s: 60, max_per_window: 2}\n", "n.yaml")
    t = Throttle.of(cfg)
    evs = [event(event_id=f"b-{i}") for i in range(5)]
    out = offer_all(t, MAIL, evs, NOON)
    assert [(o.kind, o.events[0].event_id) for o in out] == [("single", "b-0"),
                                                              ("single", "b-1")]
    assert [o.kind for o in t.offer(HOOK, evs[2], NOON + 1000)] == ["single"]  # another inbox
    assert t.next_due_ms() == NOON + 60_000
    assert t.flush(NOON + 59_999) == []
    (digest,) = t.flush(NOON + 60_000)
    assert digest.kind == "digest"
    assert [e.event_id for e in digest.events] == ["b-2", "b-3", "b-4"]
    assert digest.delivery.address == "ops@example.test"
    assert digest.delivery.dedup_key == f"digest.{NOON}:email:ops@example.test"
    assert t.flush(NOON + 120_000) == [] and t.next_due_ms() is None
    # a new window opens with the next message
    assert [o.kind for o in offer_all(t, MAIL, evs[:3], NOON + 200_000)] == ["single"] * 2


def test_a_late_offer_first_releases_the_ended_windows_digest() -> None:
    t = Throttle.of(parse_notify("digest: {window_s: 10, max_per_window: 1}\n", "n.yaml"))
    evs = [event(event_id=f"b-{i}") for i in range(3)]
    assert [o.kind for o in offer_all(t, MAIL, evs[:2], NOON)] == ["single"]
    out = t.offer(MAIL, evs[2], NOON + 10_000)
    assert [(o.kind, [e.event_id for e in o.events]) for o in out] == \
        [("digest", ["b-1"]), ("single", ["b-2"])]


def test_a_flapping_alarm_is_told_once_then_held_until_it_settles() -> None:
    cfg = parse_notify("flapping: {window_s: 600, max_transitions: 3}\n"
                       "digest: {max_per_window: 100}\n", "n.yaml")
    t = Throttle.of(cfg)
    out: list[Any] = []
    for i in range(6):
        e = event(transition="raised" if i % 2 == 0 else "cleared", ts_ms=NOON + i * 60_000)
        now = NOON + i * 60_000
        out += [(i, o.kind, o.delivery.address) for o in t.offer(MAIL, e, now)]
        out += [(i, o.kind, o.delivery.address) for o in t.offer(HOOK, e, now)]
    assert out == [
        (0, "single", MAIL.address), (0, "single", HOOK.address),
        (1, "single", MAIL.address), (1, "single", HOOK.address),
        (2, "single", MAIL.address), (2, "single", HOOK.address),
        # the 4th transition within 10 minutes: one notice per recipient, then nothing
        (3, "flapping", MAIL.address), (3, "flapping", HOOK.address),
    ]
    last = NOON + 5 * 60_000
    assert t.next_due_ms() == last + 600_000
    assert t.flush(last + 599_999) == []
    settled = t.flush(last + 600_000)
    assert [(o.kind, o.delivery.address, o.events[0].transition) for o in settled] == [
        ("settled", MAIL.address, "cleared"), ("settled", HOOK.address, "cleared")]
    assert settled[0].delivery.dedup_key == f"b-1:settled.{NOON + 180_000}:email:{MAIL.address}"
    # settled: the next transition goes out again
    again = t.offer(MAIL, event(ts_ms=last + 700_000), last + 700_000)
    assert [o.kind for o in again] == ["single"]


def test_slow_transitions_and_acknowledgements_do_not_flap() -> None:
    t = Throttle.of(parse_notify("flapping: {window_s: 600, max_transitions: 2}\n", "n.yaml"))
    kinds = []
    for i in range(6):  # one transition every 6 minutes: at most 2 in any 10 minutes
        now = NOON + i * 360_000
        kinds += [o.kind for o in t.offer(
            MAIL, event(transition="raised" if i % 2 == 0 else "cleared", ts_ms=now), now)]
        kinds += [o.kind for o in t.offer(MAIL, event(transition="acknowledged", ts_ms=now),
                                          now)]
    assert kinds == ["single"] * 12


def test_throttle_state_is_picklable_and_deterministic() -> None:
    cfg = parse_notify("digest: {window_s: 60, max_per_window: 1}\n"
                       "flapping: {window_s: 600, max_transitions: 2}\n", "n.yaml")
    a = Throttle.of(cfg)
    evs = [event(event_id=f"b-{i % 2}", transition="raised" if i % 4 < 2 else "cleared",
                 ts_ms=NOON + i) for i in range(8)]
    first = offer_all(a, MAIL, evs[:4], NOON)
    b = pickle.loads(pickle.dumps(a))
    rest_a = offer_all(a, MAIL, evs[4:], NOON + 1) + a.flush(NOON + 3_600_000)
    rest_b = offer_all(b, MAIL, evs[4:], NOON + 1) + b.flush(NOON + 3_600_000)
    assert rest_a == rest_b and first


# --- escalation -----------------------------------------------------------------------------

ESCALATE = """\
channels:
  ops-mail: {type: email, to: [ops@example.test]}
groups:
  field: [ana, bo]
rotations:
  primary: {start: "2026-06-01T00:00", period_h: 24, users: [cy, dee]}
rules:
  - name: criticals
    when: {kind: alarm, severity_at_least: critical}
    notify: [ops-mail]
    escalate:
      - {after_s: 300, notify: [group:field], repeat_s: 600}
      - {after_s: 900, notify: ["rotation:primary"]}
"""


def test_an_unacknowledged_critical_alarm_escalates_on_time() -> None:
    cfg = parse_notify(ESCALATE, "n.yaml")
    rule = cfg.rules[0]
    esc = Escalation()
    alarm = event(severity="critical")
    assert esc.raised(alarm, rule, NOON)
    assert esc.next_due_ms() == NOON + 300_000

    def at(seconds: int) -> list[tuple[int, str | None, tuple[str, ...]]]:
        return [(d.tier_index, d.event.step, d.targets) for d in esc.due(NOON + seconds * 1000)]

    assert at(299) == []
    assert at(300) == [(0, "criticals.0.0", ("group:field",))]
    assert at(301) == []
    assert esc.next_due_ms() == NOON + 900_000
    assert at(900) == [(0, "criticals.0.1", ("group:field",)),
                       (1, "criticals.1.0", ("rotation:primary",))]
    assert at(1499) == []
    assert at(5000) == [(0, "criticals.0.7", ("group:field",))]  # missed repeats: once
    esc.acknowledged("b-1")
    assert at(10_000) == [] and esc.next_due_ms() is None and esc.watching == set()


def test_escalated_deliveries_are_new_messages_per_step(config: NotifyConfig) -> None:
    cfg = parse_notify(ESCALATE, "n.yaml")
    esc = Escalation()
    esc.raised(event(severity="critical"), cfg.rules[0], NOON)
    due = esc.due(NOON + 300_000) + esc.due(NOON + 900_000)
    assert all(isinstance(d, Due) and d.event.transition == "escalated" for d in due)
    sent = [deliveries(cfg, d.event, d.targets, USERS, NOON + 900_000) for d in due]
    assert [[x.recipient for x in s] for s in sent] == [["ana", "bo"], ["ana", "bo"], ["cy"]]
    assert sent[0][0].dedup_key == "b-1:escalated.criticals.0.0:email:ana@example.test"
    assert sent[1][0].dedup_key == "b-1:escalated.criticals.0.1:email:ana@example.test"


def test_clearing_stops_escalation_and_only_critical_alarms_escalate() -> None:
    cfg = parse_notify(ESCALATE, "n.yaml")
    rule = cfg.rules[0]
    esc = Escalation()
    assert not esc.raised(event(severity="major", event_id="m"), rule, NOON)
    assert not esc.raised(event(severity="critical", kind="alert", event_id="a"), rule, NOON)
    assert not esc.raised(event(severity="critical", event_id="n"),
                          parse_notify(MINIMAL, "m.yaml").rules[0], NOON)  # no tiers
    assert esc.raised(event(severity="critical", event_id="c"), rule, NOON)
    # a replayed raise keeps the first time
    assert esc.raised(event(severity="critical", event_id="c"), rule, NOON + 200_000)
    assert [d.event.event_id for d in esc.due(NOON + 300_000)] == ["c"]
    clone = pickle.loads(pickle.dumps(esc))
    esc.cleared("c")
    assert esc.due(NOON + 900_000) == []
    assert [d.tier_index for d in clone.due(NOON + 900_000)] == [0, 1]


# --- the property ---------------------------------------------------------------------------

CUSTOMERS, REGIONS = ["Nordvik Energi AB", "Bavaria Power", "Iberia Sol"], ["SE3", "DE", "ES"]
scopes = st.lists(st.sampled_from([*CUSTOMERS, "*"]), max_size=3).map(tuple)
regions = st.lists(st.sampled_from([*REGIONS, "*"]), max_size=3).map(tuple)
user_infos = st.builds(lambda i, c, r, d: UserInfo(f"u{i}", f"u{i}@example.test", "viewer", c,
                                                  r, disabled=d),
                       st.integers(0, 5), scopes, regions, st.booleans())
PROPERTY = parse_notify("""\
channels:
  m: {type: email, to: [u0@example.test]}
groups:
  g: [u0, u1, u2, u3]
rotations:
  r: {start: "2026-06-01T00:00", period_h: 1, users: [u2, u3, u4, u5]}
rules:
  - name: all
    notify: [m, group:g, user:u4, user:u5, rotation:r]
  - name: nordvik
    when: {customers: [Nordvik Energi AB]}
    notify: [user:u0, user:u1, group:g]
""", "property.yaml")


@settings(max_examples=200, deadline=None)
@given(users=st.lists(user_infos, max_size=6),
       customer=st.sampled_from(CUSTOMERS), region=st.sampled_from(REGIONS),
       severity=st.sampled_from(SEVERITIES), fleet_wide=st.booleans(),
       hour=st.integers(0, 48))
def test_route_never_tells_a_user_of_a_site_outside_their_scope(
        users: list[UserInfo], customer: str, region: str, severity: Any, fleet_wide: bool,
        hour: int) -> None:
    directory = {u.username: u for u in users}
    e = event(None if fleet_wide else ("s1", customer, region), severity=severity)
    for d in route(PROPERTY, e, directory, NOON + hour * 3_600_000):
        if d.recipient in directory:
            user = directory[d.recipient]
            assert not user.disabled
            assert ("*" in user.customers and "*" in user.regions) if fleet_wide else \
                (("*" in user.customers or customer in user.customers)
                 and ("*" in user.regions or region in user.regions))
        else:
            assert d.recipient == "m" and d.channel == "m"


# --- users' own preferences -----------------------------------------------------------------

OWN = """\
preferences:
  bo: {severities: [critical], channels: [email]}
  fay: {quiet_hours: "08:00-18:00", tz: Europe/Stockholm}
"""


def test_own_preferences_parse_and_round_trip(tmp_path: Path) -> None:
    from contracts.notify import dump_preferences, load_preferences, parse_preferences

    own = parse_preferences(OWN, "p.yaml")
    assert sorted(own) == ["bo", "fay"]
    assert own["bo"].severities == ("critical",) and own["bo"].quiet_hours is None
    assert own["fay"].severities == tuple(SEVERITIES)  # left out: the default, everything
    path = tmp_path / "p.yaml"
    path.write_text(dump_preferences(own), encoding="utf-8")
    assert load_preferences(path) == own
    assert parse_preferences("", "p.yaml") == {}  # an empty file holds none
    assert parse_preferences("# nobody yet\n", "p.yaml") == {}
    assert parse_preferences("preferences: {}\n", "p.yaml") == {}


@pytest.mark.parametrize(("text", "message"), [
    ("preferences:\n  bo:\n    severities: [loud]\n",
     "p.yaml:3: preferences.bo.severities[0]: must be 'critical', 'major', 'minor' or "
     "'warning' (got 'loud')"),
    ("preferences:\n  bo: {severities: []}\n",
     "p.yaml:2: preferences.bo.severities: must not be empty"),
    ("preferences:\n  bo: {channels: []}\n",
     "p.yaml:2: preferences.bo.channels: must not be empty"),
    ("preferences:\n  ana: {}\n  bo:\n    tz: Mars/Olympus\n",
     "p.yaml:4: preferences.bo.tz: unknown IANA time zone 'Mars/Olympus'"),
    ("preferences:\n  bo: {tz: Etc}\n", "p.yaml:2: preferences.bo.tz: unknown IANA time zone "
                                         "'Etc'"),
    ("preferences:\n  bo: {quiet_hours: '22-07'}\n",
     "p.yaml:2: preferences.bo.quiet_hours: '22-07' is not a time window written HH:MM-HH:MM "
     "(24-hour clock, e.g. 22:00-07:00)"),
    ("preferences:\n  bo: {email: bo-at-home}\n",
     "p.yaml:2: preferences.bo.email: 'bo-at-home' is not an email address"),
    ("preferences:\n  bo: {pager: yes}\n",
     "p.yaml:2: preferences.bo.pager: extra inputs are not permitted (got True)"),
    ("preferences:\n  'bad name': {}\n",
     "p.yaml:2: preferences.bad name: must be 1-64 letters, digits, '.', '_' or '-', starting "
     "with a letter or digit (got 'bad name')"),
    ("users: {}\n", "p.yaml:1: users: extra inputs are not permitted"),
    ("- bo\n", "p.yaml:1: must be a mapping with 'preferences'"),
    ("preferences: {bo: [\n", "p.yaml:2: not valid YAML: expected the node content, but found "
                              "'<stream end>'"),
])
def test_broken_own_preferences_are_refused_with_line_and_key(text: str, message: str) -> None:
    from contracts.notify import parse_preferences

    with pytest.raises(InvalidInput) as caught:
        parse_preferences(text, "p.yaml")
    assert str(caught.value).startswith(message), str(caught.value)


def test_a_users_own_preferences_replace_the_rules_entry_whole(config: NotifyConfig) -> None:
    from contracts.notify import Preferences, merged, parse_preferences

    own = parse_preferences(OWN, "p.yaml")
    both = merged(config, own)
    # bo's own entry replaces the rules file's whole: no quiet hours any more, no major.
    assert both.preferences["bo"] == own["bo"]
    assert both.preferences["bo"].quiet_hours is None
    # fay's own entry gives no address: the rules file's stays; the rest is hers.
    assert both.preferences["fay"] == own["fay"].model_copy(
        update={"email": "fay@home.example.test"})
    # cy has no entry of her own: the rules file's, untouched; nothing else changed.
    assert both.preferences["cy"] == config.preferences["cy"]
    assert both.model_dump(exclude={"preferences"}) == config.model_dump(
        exclude={"preferences"})
    assert config.preferences["bo"].quiet_hours == "22:00-07:00"  # the input is not changed
    assert merged(config, {}) == config
    # An own address wins over the rules file's.
    mine = merged(config, {"fay": Preferences(email="fay@work.example.test")})
    assert mine.preferences["fay"].email == "fay@work.example.test"


def test_own_preferences_decide_the_routing(config: NotifyConfig) -> None:
    from contracts.notify import merged, parse_preferences

    both = merged(config, parse_preferences(OWN, "p.yaml"))
    # bo takes critical only now: a major no longer reaches him, a critical still does.
    assert "bo" in {d.recipient for d in route(config, event(), USERS, NOON)}
    assert "bo" not in {d.recipient for d in route(both, event(), USERS, NOON)}
    assert "bo" in {d.recipient for d in route(both, event(severity="critical"), USERS, NOON)}
    # fay's quiet hours (08-18 Stockholm, noon is inside): a major is held, a critical not.
    assert "fay" not in {d.recipient for d in route(both, event(), USERS, NOON)}
    critical = route(both, event(severity="critical"), USERS, NOON)
    assert ("fay", "fay@home.example.test") in targets(critical)
    night = ms("2026-06-01T22:00:00Z")
    assert "fay" in {d.recipient for d in route(both, event(ts_ms=night), USERS, night)}
