"""The dev stack's Prometheus configuration and the Grafana dashboard, checked with promtool:
the configuration is valid and reads the demo's target file as jobs, the committed dashboard
is what devstack/dashboard.py builds, and every panel's query is valid PromQL over metrics the
services export."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from prometheus_client import CollectorRegistry

from devstack import dashboard
from devstack.prometheus import RULES, render_config, write_targets
from speechstream.metrics import MetricsBundle
from tests.unit.test_alert_rules import BUNDLES


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is missing: bash scripts/setup.sh installs it"
    return subprocess.run([promtool, *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120, check=False)


def test_the_dev_prometheus_configuration_is_valid_with_the_rules(tmp_path: Path) -> None:
    targets = tmp_path / "targets"
    written = write_targets(targets, "demo", {"sink": "127.0.0.1:9101",
                                              "streams": "127.0.0.1:9102"})
    assert json.loads(written.read_text()) == [
        {"targets": ["127.0.0.1:9101"], "labels": {"service": "sink"}},
        {"targets": ["127.0.0.1:9102"], "labels": {"service": "streams"}}]
    assert not list(targets.glob("*.partial"))
    config = tmp_path / "prometheus.yml"
    config.write_text(render_config(targets, RULES))
    result = _promtool("check", "config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 7 rules found" in result.stdout


def test_the_committed_dashboard_is_the_one_built() -> None:
    assert dashboard.OUTPUT.read_text() == dashboard.render(), \
        "run `speechstream dev dashboard` and commit docker/grafana/speechstream.json"
    model = json.loads(dashboard.render())
    targets = [t for p in model["panels"] if p["type"] != "row" for t in p["targets"]]
    assert [t["expr"] for t in targets] == [expr for _, expr in dashboard.queries()]
    assert all(t["datasource"]["uid"] == "${datasource}" for t in targets)


def test_every_panel_query_is_valid_promql_over_exported_metrics(tmp_path: Path) -> None:
    queries = dashboard.queries()
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": expr.replace(dashboard.RATE, "1m")}
        for i, (_, expr) in enumerate(queries)]}]}
    (tmp_path / "queries.yml").write_text(json.dumps(rules))
    result = _promtool("check", "rules", "queries.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    exported = {name for bundle in BUNDLES for name in _names(bundle)} | {
        "speechstream_healthy", "speechstream_consumer_lag",
        "speechstream_consumed_record_age_seconds", "up"}
    for title, expr in queries:
        named = set(re.findall(r"\b(speechstream_[a-z_]+|up)\b", expr))
        named = {re.sub(r"_(bucket|count|sum)$", "", n) for n in named}
        named.discard("speechstream_")  # a pattern: speechstream_.*dead_letters_total
        assert named <= exported, f"{title}: {named - exported} is exported by no service"


def _names(bundle: type[MetricsBundle]) -> set[str]:
    registry = CollectorRegistry()
    bundle.create(registry)
    return {metric.name.removesuffix("_total") + ("_total" if metric.type == "counter" else "")
            for metric in registry.collect()}
