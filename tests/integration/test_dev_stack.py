"""The session's broker and database, the topic admin, and `speechstream dev` on a real stack."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from cli.main import main
from devstack.kafka import KAFKA_VERSION, broker_answers
from producers.trust import read_trusted
from schemas.topics import ALL_TOPICS, MINERS, changelog_specs
from speechstream.kafka.admin import create_topics, describe_topics
from speechstream.settings import KafkaSettings
from speechstream.signer import Signer
from streams.settings import StreamsSettings
from tests.conftest import Infrastructure

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("error")]


def test_broker_answers_metadata_requests(bootstrap_servers: str) -> None:
    assert broker_answers(bootstrap_servers)
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    cluster = admin.describe_cluster(request_timeout=10).result(timeout=15)
    assert cluster.cluster_id
    assert len(cluster.nodes) >= 1


def test_topic_creation_is_idempotent_and_matches_registry(kafka_settings: KafkaSettings) -> None:
    # The fixture created them already: a second and third call create nothing.
    assert create_topics(kafka_settings) == []
    assert create_topics(kafka_settings) == []
    infos = {info.name: info for info in describe_topics(kafka_settings)}
    assert set(infos) == {kafka_settings.topics.name(spec) for spec in ALL_TOPICS}
    for spec in ALL_TOPICS:
        info = infos[kafka_settings.topics.name(spec)]
        assert info.partitions == spec.partitions
        assert info.matches_registry


def test_topic_configs_come_from_the_registry(kafka_settings: KafkaSettings) -> None:
    admin = AdminClient(kafka_settings.to_librdkafka())
    miners = ConfigResource(ResourceType.TOPIC, kafka_settings.topics.miners)
    scores = ConfigResource(ResourceType.TOPIC, kafka_settings.topics.scores)
    result = admin.describe_configs([miners, scores], request_timeout=10)
    miners_cfg = result[miners].result(timeout=15)
    scores_cfg = result[scores].result(timeout=15)
    assert MINERS.cleanup_policy == "compact"
    assert miners_cfg["cleanup.policy"].value == "compact"
    assert scores_cfg["cleanup.policy"].value == "delete"
    assert scores_cfg["retention.ms"].value == "-1"


def test_each_test_gets_its_own_prefix(kafka_settings: KafkaSettings) -> None:
    assert kafka_settings.topic_prefix.startswith("t")
    assert kafka_settings.topics.scores.startswith(kafka_settings.topic_prefix)


def test_database_is_reachable(database_url: str) -> None:
    with psycopg.connect(database_url, connect_timeout=5) as conn:
        row = conn.execute("SELECT current_database(), 1 + 1").fetchone()
    assert row is not None and row[1] == 2


def test_each_test_gets_its_own_database(database_url: str, db_conninfo: str) -> None:
    with psycopg.connect(db_conninfo, autocommit=True) as conn:
        conn.execute("CREATE TABLE only_here (x int)")
        own = conn.execute("SELECT current_database()").fetchone()
    with psycopg.connect(database_url) as conn:
        shared = conn.execute("SELECT current_database()").fetchone()
        missing = conn.execute("SELECT to_regclass('only_here')").fetchone()
    assert own != shared
    assert missing == (None,)


@pytest.fixture
def local_stack_env(
    infrastructure: Infrastructure, monkeypatch: pytest.MonkeyPatch
) -> Infrastructure:
    """Environment that points ``speechstream dev`` at the session's local stack."""
    if infrastructure.stack is None:
        pytest.skip(f"the session uses {infrastructure.source}, not the local stack")
    s = infrastructure.stack.settings
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("SPEECHSTREAM_TOPIC_PREFIX", "speechstream.")
    monkeypatch.setenv("SPEECHSTREAM_DEV_STATE_DIR", str(s.state_dir))
    monkeypatch.setenv("SPEECHSTREAM_DEV_CACHE_DIR", str(s.cache_dir))
    monkeypatch.setenv("SPEECHSTREAM_DEV_KAFKA_PORT", str(s.kafka_port))
    monkeypatch.setenv("SPEECHSTREAM_DEV_KAFKA_CONTROLLER_PORT", str(s.kafka_controller_port))
    monkeypatch.setenv("SPEECHSTREAM_DEV_POSTGRES_PORT", str(s.postgres_port))
    return infrastructure


def test_dev_up_again_starts_nothing(
    local_stack_env: Infrastructure, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = local_stack_env.stack
    assert stack is not None
    pids = (stack.kafka.running_pid(), stack.postgres().running_pid())
    assert main(["dev", "up", "--no-install"]) == 0
    out = capsys.readouterr().out
    assert "kafka: already running" in out
    assert "postgres: already running" in out
    assert "topics: 0 created" in out
    env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    assert list(env)[:2] == ["KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL"]
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == local_stack_env.bootstrap_servers
    assert env["DATABASE_URL"] == local_stack_env.database_url
    assert (stack.kafka.running_pid(), stack.postgres().running_pid()) == pids
    # The stack's root of trust: every service's key is in the trusted set on its topic, and
    # a second `dev up` publishes nothing new.
    kafka = KafkaSettings(KAFKA_BOOTSTRAP_SERVERS=env["KAFKA_BOOTSTRAP_SERVERS"],
                          SPEECHSTREAM_TOPIC_PREFIX="speechstream.")
    trusted = read_trusted(kafka, env["SPEECHSTREAM_TRUST_OPERATOR_KEY"])
    for variable, role in (("SPEECHSTREAM_STREAMS_KEY_FILE", "intake"),
                           ("SPEECHSTREAM_EVALUATOR_KEY_FILE", "evaluator"),
                           ("SPEECHSTREAM_VALIDATOR_KEY_FILE", "validator"),
                           ("SPEECHSTREAM_CHAIN_KEY_FILE", "chain")):
        key = Signer.from_key_file(Path(env[variable])).public_key
        assert trusted.keys[key].role == role
    assert main(["dev", "up", "--no-install"]) == 0
    assert f"trusted set version {trusted.version}\n" in capsys.readouterr().out


def test_dev_status_reports_version_topics_and_database(
    local_stack_env: Infrastructure, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["dev", "status"]) == 0
    out = capsys.readouterr().out
    assert f"Apache Kafka {KAFKA_VERSION}" in out
    partitions = {
        words[0]: int(words[1])
        for line in out.splitlines()
        if (words := line.split()) and words[0].startswith("speechstream.")
    }
    assert partitions == {f"speechstream.{spec.name}": spec.partitions for spec in ALL_TOPICS}
    assert "postgres: up (local" in out
    assert "PostgreSQL 1" in out


def test_topics_create_command_is_idempotent(
    kafka_settings: KafkaSettings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_settings.bootstrap_servers)
    monkeypatch.setenv("SPEECHSTREAM_TOPIC_PREFIX", kafka_settings.topic_prefix)
    changelogs = {kafka_settings.topics.name(s) for s in changelog_specs(StreamsSettings().app_id)}
    # The fixture created the registry's topics; the worker's changelogs are new.
    assert main(["topics", "create"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(ALL_TOPICS) + len(changelogs)
    assert {line.split()[1] for line in lines if line.startswith("created")} == changelogs
    assert main(["topics", "create"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(ALL_TOPICS) + len(changelogs)
    assert all(line.startswith("exists") for line in lines)
