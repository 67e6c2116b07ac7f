"""The shipped Grafana dashboard and Prometheus alert rules (infra/monitoring/) only name
metrics the code defines: a renamed metric breaks this test, not an operator's night.

The names are taken from every PromQL expression — the dashboard's panel targets, the
rules' `expr` — as the tokens that start with `bessmon_` or `bytewax_`; each must be a sample
name the default registry exposes (connectors/metrics.py `metric_names`: a counter's
`_total`, a histogram's `_bucket`, `_sum`, `_count` — as prometheus_client writes them)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import REGISTRY, Counter, Histogram

import flows.telemetry_flow  # noqa: F401  (registers Bytewax's Kafka lag gauge)
from connectors import metrics
from connectors.settings import REPO_ROOT

MONITORING = REPO_ROOT / "infra" / "monitoring"
NAME = re.compile(r"\b(?:bessmon|bytewax)_[a-z0-9_]+")


def dashboard_exprs() -> list[str]:
    def walk(panels: list[dict[str, Any]]) -> Iterator[str]:
        for panel in panels:
            yield from (t["expr"] for t in panel.get("targets", []))
            yield from walk(panel.get("panels", []))

    data = json.loads((MONITORING / "grafana-dashboard.json").read_text(encoding="utf-8"))
    return list(walk(data["panels"]))


def alert_exprs() -> list[str]:
    data = yaml.safe_load((MONITORING / "prometheus-alerts.yaml").read_text(encoding="utf-8"))
    return [str(rule["expr"]) for group in data["groups"] for rule in group["rules"]]


def used(exprs: list[str]) -> set[str]:
    return {name for expr in exprs for name in NAME.findall(expr)}


def test_every_metric_the_dashboard_and_alerts_use_exists() -> None:
    exposed = metrics.metric_names()
    for what, exprs in (("grafana-dashboard.json", dashboard_exprs()),
                        ("prometheus-alerts.yaml", alert_exprs())):
        names = used(exprs)
        assert len(names) >= 10, (what, names)  # the expressions were found at all
        missing = sorted(names - exposed)
        assert not missing, f"{what} uses metrics no part defines: {missing}"


def test_the_name_check_knows_how_prometheus_client_names_samples() -> None:
    """The suffix rules the check relies on: a counter is exposed as `<name>_total`, a
    histogram as `_bucket`/`_sum`/`_count` — never the bare histogram name, and not a
    counter's name without `_total` in a query."""
    exposed = metrics.metric_names()
    assert isinstance(metrics.CONNECTOR_POLLS, Counter)
    assert "bessmon_connector_polls_total" in exposed
    assert isinstance(metrics.HISTORY_WRITE_SECONDS, Histogram)
    for suffix in ("_bucket", "_sum", "_count"):
        assert f"bessmon_history_write_duration_seconds{suffix}" in exposed
    assert "bessmon_history_write_duration_seconds_total" not in exposed
    assert used(["rate(bessmon_nonexistent_total[5m])"]) - exposed == {
        "bessmon_nonexistent_total"}


def test_every_bessmon_metric_is_on_the_dashboard_or_in_an_alert_and_documented() -> None:
    """Nothing defined goes unwatched, and docs/metrics.md describes each metric."""
    ours = {m.name for m in REGISTRY.collect() if m.name.startswith("bessmon_")}
    shown = used(dashboard_exprs() + alert_exprs())
    stems = {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in shown}
    assert not sorted(ours - stems), "neither charted nor alerted on"
    doc = (REPO_ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")
    undocumented = sorted(n for n in ours if n not in doc)
    assert not undocumented, f"docs/metrics.md does not describe {undocumented}"


def test_the_example_scrape_config_uses_the_token_file() -> None:
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text(encoding="utf-8"))
    jobs = config["scrape_configs"]
    assert jobs and all(j["authorization"]["credentials_file"] for j in jobs)
    assert any("file_sd_configs" in j for j in jobs)
    assert Path(config["rule_files"][0]).name.startswith("bessmon")
