"""The demo twice in a row on one stack (the session's broker and database): each run has a
topic prefix and a database of its own, so the second ends exactly like the first. And once on
a broker with SASL over TLS and ACLs, each service its own principal."""

from __future__ import annotations

import time
import uuid
from dataclasses import replace
from pathlib import Path

import httpx
import psycopg
import pytest

from cli.demo import MINERS, DemoOptions, DemoResult, remove_earlier_runs, run_demo
from devstack import dashboard
from devstack.prometheus import SCRAPE_INTERVAL_S
from devstack.stack import DevStack
from speechstream.kafka.admin import delete_topics, describe_topics
from speechstream.settings import DatabaseSettings, DevSettings, KafkaSettings
from tests.conftest import Infrastructure, pick_ports
from tests.integration.browser import check_pages, served
from tests.integration.databases import drop_database

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]


def _databases(database_url: str) -> set[str]:
    with psycopg.connect(database_url) as conn:
        return {row[0] for row in conn.execute("SELECT datname FROM pg_database").fetchall()}


def _recorder(lines: list[str]):  # noqa: ANN202 - a say() callback
    def say(line: str) -> None:
        lines.append(line)
        print(line)  # shown by pytest when the test fails

    return say


def _statuses(result: DemoResult) -> dict[str | None, str]:
    return {row.repo: row.status for row in result.leaderboard}


def _check_dashboard_queries(url: str, start: float, end: float) -> None:
    """Every query of the Grafana dashboard returns data from the Prometheus that scraped the
    demo's services (Grafana's rate window read as 1m), and the alert rules are loaded."""
    with httpx.Client(base_url=url, timeout=30) as client:
        targets = client.get("/api/v1/targets").json()["data"]["activeTargets"]
        assert {t["labels"]["job"] for t in targets} == {
            "streams", "evaluator", "sink", "validator", "api"}
        empty = []
        for title, expr in dashboard.queries():
            answer = client.get("/api/v1/query_range", params={
                "query": expr.replace(dashboard.RATE, "1m"), "start": start, "end": end,
                "step": SCRAPE_INTERVAL_S}).json()
            assert answer["status"] == "success", (title, answer)
            values = [v for series in answer["data"]["result"] for _, v in series["values"]
                      if v not in ("NaN", "+Inf", "-Inf")]
            if not values:
                empty.append(f"{title}: {expr}")
        assert empty == [], "panels without data: " + "; ".join(empty)
        groups = client.get("/api/v1/rules").json()["data"]["groups"]
        assert sum(len(g["rules"]) for g in groups) == 7


def test_the_demo_twice_in_a_row_on_one_stack(
    infrastructure: Infrastructure, database_url: str, tmp_path: Path
) -> None:
    # The demo's stack is the session's: DevStack.up starts nothing for an external broker
    # and database, and the demo's runs live beside the other tests' topics and databases.
    # The first run under the dev stack's Prometheus: the dashboard's queries read its data.
    dev = DevSettings(
        state_dir=tmp_path / "dev",
        external_bootstrap_servers=infrastructure.bootstrap_servers,
        external_database_url=database_url,
        prometheus=True, prometheus_port=pick_ports(1)[0],
    )
    kafka = KafkaSettings().model_copy(update={
        "bootstrap_servers": infrastructure.bootstrap_servers,
        "topic_prefix": f"t{uuid.uuid4().hex[:12]}.",
    })
    options = DemoOptions(state_dir=tmp_path / "demo", samples=2, timeout_s=600.0)
    said: list[list[str]] = [[], []]
    try:
        started = time.time()
        first = run_demo(replace(options, linger_s=2.5 * SCRAPE_INTERVAL_S), kafka,
                         DatabaseSettings(), dev, say=_recorder(said[0]))
        ended = time.time()
        prometheus = DevStack(dev).prometheus
        assert any(line.startswith("   prometheus: started") for line in said[0])
        _check_dashboard_queries(prometheus.url, started, ended)
        prometheus.stop()
        dev = dev.model_copy(update={"prometheus": False})
        second = run_demo(options, kafka, DatabaseSettings(), dev, say=_recorder(said[1]))

        # Each run on its own prefix and database, both named in what it said.
        assert first.run.topic_prefix != second.run.topic_prefix
        assert first.run.database != second.run.database
        for run, lines in ((first.run, said[0]), (second.run, said[1])):
            assert run.topic_prefix.startswith(f"{kafka.topic_prefix}demo-")
            assert any(run.topic_prefix in line and run.database in line for line in lines)
            assert any("api: ready" in line for line in lines)
        # The second removed the first (nobody was connected to it any more), kept its own.
        assert any(f"removed 1 earlier run(s) (topics, database, files): {first.run.run_id}"
                   in line for line in said[1])
        databases = _databases(database_url)
        assert first.run.database not in databases
        assert second.run.database in databases
        assert describe_topics(kafka, prefix=first.run.topic_prefix) == []
        assert describe_topics(kafka, prefix=second.run.topic_prefix) != []
        assert not (options.state_dir / "runs" / first.run.run_id).exists()

        # The same kind of result: statuses per miner, the epoch's weights, the API's answer.
        statuses = _statuses(first)
        assert statuses == _statuses(second)
        assert statuses == {
            f"{m.name}/{m.repo_name}": "REJECTED" if m.bad_hash else "COMPLETED"
            for m in MINERS
        }
        for result in (first, second):
            assert result.weights.epoch == 51
            assert [e.uid for e in result.weights.entries] == [m.uid for m in MINERS]
            assert sum(e.weight for e in result.weights.entries) == pytest.approx(1.0)
            assert result.api_answer is not None
            assert result.api_answer["status"] == "COMPLETED"
        # Same keys, same models, deterministic scoring: the very same numbers.
        assert [e.weight for e in first.weights.entries] == pytest.approx(
            [e.weight for e in second.weights.entries])
        assert first.api_answer["score"] == second.api_answer["score"]

        # The leaderboard pages in a real browser, over what the second run wrote: every
        # scored sample's clips play with their duration, the marked words are jiwer's.
        with psycopg.connect(second.database_url) as conn:
            clips = conn.execute("SELECT count(*) FROM sample_audio WHERE opus IS NOT NULL"
                                 ).fetchone()[0]
        completed = sum(1 for m in MINERS if not m.bad_hash)
        assert clips == completed * options.samples * 2  # generated and reference
        with served(second.database_url) as base:
            shots = check_pages(base, "demo")
        assert set(shots) == {"leaderboard", "submission", "weights", "phone"}
    finally:
        DevStack(dev).prometheus.stop()
        remove_earlier_runs(database_url, kafka, options.state_dir)
        delete_topics(kafka, [t.name for t in describe_topics(kafka, prefix=kafka.topic_prefix)])


def test_the_demo_on_a_broker_with_sasl_tls_and_acls(database_url: str, tmp_path: Path) -> None:
    # A broker of its own (SASL/SCRAM over TLS, ACLs), the session's database server: every
    # service logs in as its role's user and may do only what that role's ACLs allow.
    kafka_port, controller_port = pick_ports(2)
    dev = DevSettings(state_dir=tmp_path / "dev", kafka_sasl=True, kafka_port=kafka_port,
                      kafka_controller_port=controller_port, kafka_heap="512m",
                      external_database_url=database_url)
    kafka = KafkaSettings().model_copy(update={"topic_prefix": "sasl."})
    options = DemoOptions(state_dir=tmp_path / "demo", samples=2, timeout_s=600.0)
    said: list[str] = []
    before = _databases(database_url)
    try:
        result = run_demo(options, kafka, DatabaseSettings(), dev, say=_recorder(said))
        assert any(line.startswith("   broker: SASL over TLS, each service its own principal")
                   for line in said)
        assert _statuses(result) == {
            f"{m.name}/{m.repo_name}": "REJECTED" if m.bad_hash else "COMPLETED"
            for m in MINERS
        }
        assert result.weights.epoch == 51
        assert result.api_answer is not None and result.api_answer["status"] == "COMPLETED"
        logs = options.state_dir / "runs" / result.run.run_id / "logs"
        for log in logs.glob("*.log"):
            assert "AUTHORIZATION_FAILED" not in log.read_text(), log.name
        with psycopg.connect(result.database_url) as conn:  # the clips, under the ACLs too
            assert conn.execute("SELECT count(*) FROM sample_audio").fetchone()[0] > 0
    finally:
        DevStack(dev).down()
        for name in _databases(database_url) - before:
            drop_database(database_url, name)
