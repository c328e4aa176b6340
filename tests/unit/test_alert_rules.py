"""The alert rules and the services' metrics, checked with Prometheus's own promtool: the rules
pass their unit tests (each alert fires on the series that should fire it), every alert has
such a test, the scrape configuration is valid, and every service's /metrics passes
``promtool check metrics``."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from api.metrics import ApiMetrics
from consumers.metrics import AuditMetrics, EvaluatorMetrics, ValidatorMetrics
from sinks.metrics import SinkMetrics
from speechstream.kafka.lag import AGE_BUCKETS, AGE_METRIC, ConsumerLag
from speechstream.metrics import MetricsBundle
from speechstream.monitoring import Health, HealthGauge
from streams.metrics import StreamsMetrics

RULES = Path(__file__).resolve().parents[2] / "docker" / "prometheus"
BUNDLES: list[type[MetricsBundle]] = [SinkMetrics, EvaluatorMetrics, ValidatorMetrics,
                                      AuditMetrics, ApiMetrics, StreamsMetrics]


def _promtool(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is missing: bash scripts/setup.sh installs it"
    return subprocess.run([promtool, *args], input=stdin, capture_output=True, cwd=RULES,
                          timeout=120, check=False)


def test_the_alert_rules_pass_their_unit_tests() -> None:
    result = _promtool("test", "rules", "rules_test.yml")
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def test_every_alert_has_a_test_that_fires_it() -> None:
    rules = yaml.safe_load((RULES / "rules.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    tests = yaml.safe_load((RULES / "rules_test.yml").read_text())["tests"]
    fired = {case["alertname"] for t in tests for case in t.get("alert_rule_test", [])
             if case.get("exp_alerts")}
    assert alerts and alerts == fired


def test_the_scrape_configuration_and_its_rules_are_valid() -> None:
    result = _promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda b: b.__name__)
def test_each_services_metrics_pass_promtools_lint(bundle: type[MetricsBundle]) -> None:
    registry = CollectorRegistry()
    metrics = bundle.create(registry)
    # One sample of every metric, as a service that has done some work exposes them.
    for name in vars(metrics):
        family = getattr(metrics, name)
        labelled = family.labels(*("x" for _ in family._labelnames)) \
            if family._labelnames else family
        if hasattr(labelled, "inc"):
            labelled.inc()
        else:
            labelled.observe(0.1)
    registry.register(HealthGauge("sink", lambda: Health(False, "degraded")))
    registry.register(ConsumerLag(lambda: [("speechstream-sink", "sink", "t.scores", 0, 4)]))
    ages = Histogram(AGE_METRIC, "record ages", ["consumer", "topic"], buckets=AGE_BUCKETS,
                     registry=registry)
    ages.labels("speechstream-sink", "t.scores").observe(0.2)
    exposition = generate_latest(registry)
    assert b'speechstream_consumer_lag{consumer="speechstream-sink"' in exposition
    assert b'speechstream_healthy{service="sink",status="degraded"} 0.0' in exposition
    result = _promtool("check", "metrics", stdin=exposition)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
