"""Session fixtures: one real Kafka broker and one real PostgreSQL server for the whole run.

Where they come from, in this order:

1. ``KAFKA_BOOTSTRAP_SERVERS`` and ``DATABASE_URL`` both set → those (nothing is started);
2. ``SPEECHSTREAM_TEST_INFRASTRUCTURE=testcontainers`` → containers on the Docker engine, from
   ``SPEECHSTREAM_TEST_KAFKA_IMAGE`` (default ``apache/kafka:4.1.1``, KRaft) and
   ``SPEECHSTREAM_TEST_POSTGRES_IMAGE`` (default ``postgres:15``); where no registry is
   reachable, the project's own images (``speechstream dev images``) take their place;
3. otherwise (``local``, the default) → the project's own local stack (``speechstream.dev``:
   Kafka from Maven Central's jars, Debian's PostgreSQL) in a temporary directory on free
   ports, stopped at session end. A Docker engine that merely runs changes nothing.

Nothing starts until a test asks for ``infrastructure`` (unit tests never do).
"""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from devstack.host import free_port
from devstack.stack import DevStack
from sinks.migrate import apply_migrations
from speechstream.settings import DevSettings, KafkaSettings

# Tests of everything but trust run with signatures unchecked, as a development log does; the
# trust tests (tests/unit/test_trust*.py, tests/integration/test_signed_log.py) set a root
# key, which takes precedence.
os.environ.setdefault("SPEECHSTREAM_TRUST_INSECURE", "true")
# Evaluators keep uncommitted results under a state directory: the tests', not the user's.
os.environ.setdefault("SPEECHSTREAM_EVALUATOR_STATE_DIR",
                      tempfile.mkdtemp(prefix="speechstream-test-evaluators-"))
# And reference audio under a cache of the session's.
os.environ.setdefault("SPEECHSTREAM_SCORING_REFERENCE_CACHE_DIR",
                      tempfile.mkdtemp(prefix="speechstream-test-references-"))

INFRASTRUCTURE_ENV = "SPEECHSTREAM_TEST_INFRASTRUCTURE"
KAFKA_IMAGE = os.environ.get("SPEECHSTREAM_TEST_KAFKA_IMAGE", "apache/kafka:4.1.1")
POSTGRES_IMAGE = os.environ.get("SPEECHSTREAM_TEST_POSTGRES_IMAGE", "postgres:15")
# Ports other processes on a shared machine use; never pick them for a test stack.
RESERVED_PORTS = frozenset({19092, 19093, 39092, 39093, 55432, 55499})

Source = Literal["environment", "testcontainers", "local stack"]


@dataclass(frozen=True)
class Infrastructure:
    """A broker and a database for the session, and where they came from."""

    bootstrap_servers: str
    database_url: str
    source: Source
    stack: DevStack | None = None


def pick_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports that no shared service of this machine uses."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in RESERVED_PORTS and port not in ports:
            ports.append(port)
    return ports


def _docker_answers() -> bool:
    # The Docker SDK leaves its socket unclosed when no engine answers: silence that one warning.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        answers = _ping_docker()
        gc.collect()
    return answers


def _ping_docker() -> bool:
    try:
        import docker

        client = docker.from_env()
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # no SDK, no socket, no engine: all mean "no Docker here"
        return False


def _from_environment() -> Infrastructure | None:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    database = os.environ.get("DATABASE_URL")
    if bootstrap and database:
        return Infrastructure(bootstrap, database, "environment")
    return None


def _testcontainers() -> Iterator[Infrastructure]:
    from testcontainers.community.postgres import PostgresContainer
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.docker_client import DockerClient
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy

    host = DockerClient().host()
    (port,) = pick_ports(1)  # same port inside and outside, so the advertised listener is right
    kafka = (
        DockerContainer(KAFKA_IMAGE)
        .with_bind_ports(port, port)
        .with_envs(
            KAFKA_NODE_ID="1",
            KAFKA_PROCESS_ROLES="broker,controller",
            KAFKA_LISTENERS=f"PLAINTEXT://0.0.0.0:{port},CONTROLLER://0.0.0.0:9093",
            KAFKA_ADVERTISED_LISTENERS=f"PLAINTEXT://{host}:{port}",
            KAFKA_CONTROLLER_LISTENER_NAMES="CONTROLLER",
            KAFKA_LISTENER_SECURITY_PROTOCOL_MAP="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            KAFKA_CONTROLLER_QUORUM_VOTERS="1@localhost:9093",
            KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR="1",
            KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR="1",
            KAFKA_TRANSACTION_STATE_LOG_MIN_ISR="1",
            KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS="0",
        )
        .waiting_for(LogMessageWaitStrategy("Kafka Server started"))
    )
    postgres = PostgresContainer(
        POSTGRES_IMAGE, username="speechstream", password="speechstream",
        dbname="speechstream", driver=None,
    )
    with kafka, postgres:
        yield Infrastructure(
            f"{host}:{port}", postgres.get_connection_url(), "testcontainers"
        )


def _local_stack() -> Iterator[Infrastructure]:
    base = Path(tempfile.mkdtemp(prefix="speechstream-test-"))
    base.chmod(0o755)  # PostgreSQL runs as the postgres user, which must reach its data dir
    kafka_port, controller_port, pg_port = pick_ports(3)
    settings = DevSettings(
        state_dir=base,
        kafka_port=kafka_port,
        kafka_controller_port=controller_port,
        postgres_port=pg_port,
        kafka_heap="512m",
        external_bootstrap_servers=None,
        external_database_url=None,
    )
    stack = DevStack(settings)
    try:
        result = stack.up(KafkaSettings(SPEECHSTREAM_TOPIC_PREFIX="speechstream."))
        yield Infrastructure(result.bootstrap_servers, result.database_url, "local stack", stack)
    finally:
        stack.down()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def infrastructure() -> Iterator[Infrastructure]:
    """The session's broker and database (environment → testcontainers if asked → local
    stack)."""
    wanted = os.environ.get(INFRASTRUCTURE_ENV, "local")
    if wanted not in ("local", "testcontainers"):
        raise pytest.UsageError(f"{INFRASTRUCTURE_ENV}={wanted!r}: local or testcontainers")
    if (found := _from_environment()) is not None:
        yield found
    elif wanted == "testcontainers":
        if not _docker_answers():
            raise pytest.UsageError(f"{INFRASTRUCTURE_ENV}=testcontainers, and no Docker "
                                    "engine answers")
        yield from _testcontainers()
    else:
        yield from _local_stack()


@pytest.fixture(scope="session")
def bootstrap_servers(infrastructure: Infrastructure) -> str:
    """``host:port`` of the session's Kafka broker."""
    return infrastructure.bootstrap_servers


@pytest.fixture(scope="session")
def database_url(infrastructure: Infrastructure) -> str:
    """The session's database (shared by every test), with the migrations applied."""
    apply_migrations(infrastructure.database_url)
    return infrastructure.database_url
