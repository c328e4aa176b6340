"""The local stack as one unit: ``up`` (idempotent), ``down`` (what ``up`` started), ``status``."""

from __future__ import annotations

import fcntl
import logging
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import psycopg
from confluent_kafka import KafkaException
from pydantic import SecretStr

from devstack.exceptions import MissingToolError
from devstack.host import LOOPBACK
from devstack.kafka import KAFKA_VERSION, BrokerSecurity, KafkaNode, broker_answers, load_security
from devstack.postgres import PostgresNode, database_info, find_bin_dir, require_bin_dir
from devstack.prometheus import PrometheusNode
from devstack.tls import generate_tls
from schemas.topics import ROLES
from sinks.migrate import applied_migrations, apply_migrations
from speechstream.exceptions import TopicAdminError
from speechstream.kafka.admin import TopicInfo, admin_client, create_topics, describe_topics
from speechstream.settings import DevSettings, KafkaSettings

log = logging.getLogger(__name__)

State = Literal["started", "running", "external", "stopped", "not running"]


@dataclass(frozen=True)
class ServiceState:
    """What ``up`` or ``down`` did with one service."""

    name: str
    state: State
    address: str
    pid: int | None = None
    log_file: Path | None = None

    def describe(self) -> str:
        """One human line, e.g. ``kafka: started (pid 42) on 127.0.0.1:39092``."""
        words = {
            "started": "started",
            "running": "already running, nothing started",
            "external": "using the configured external service, nothing started",
            "stopped": "stopped",
            "not running": "not running, nothing to stop",
        }[self.state]
        pid = f" (pid {self.pid})" if self.pid else ""
        logs = f", log {self.log_file}" if self.log_file and self.state == "started" else ""
        return f"{self.name}: {words}{pid} at {self.address}{logs}"


@dataclass(frozen=True)
class UpResult:
    """Where the stack is and what ``up`` did."""

    bootstrap_servers: str
    database_url: str
    services: tuple[ServiceState, ...]
    topics_created: tuple[str, ...] = ()
    migrations_applied: tuple[str, ...] = ()
    client_env: tuple[tuple[str, str], ...] = ()
    """The admin's credentials on a broker with SASL (``kafka_sasl``); none otherwise."""

    def env_lines(self) -> list[str]:
        """``KAFKA_BOOTSTRAP_SERVERS=…`` and ``DATABASE_URL=…`` (and, on a broker with SASL,
        the admin's ``KAFKA_SASL_*``), shell-quoted for ``eval``."""
        return [
            f"KAFKA_BOOTSTRAP_SERVERS={shlex.quote(self.bootstrap_servers)}",
            f"DATABASE_URL={shlex.quote(self.database_url)}",
        ] + [f"{key}={shlex.quote(value)}" for key, value in self.client_env]


@dataclass(frozen=True)
class KafkaStatus:
    """The broker as ``status`` sees it."""

    bootstrap_servers: str
    source: Literal["local", "external"]
    reachable: bool
    pid: int | None = None
    version: str | None = None
    cluster_id: str | None = None
    brokers: int = 0
    topics: tuple[TopicInfo, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class PostgresStatus:
    """The database as ``status`` sees it."""

    database_url: str
    source: Literal["local", "external"]
    reachable: bool
    pid: int | None = None
    server_version: str | None = None
    migrations: tuple[str, ...] | None = None
    error: str | None = None


@dataclass(frozen=True)
class PrometheusStatus:
    """The dev stack's Prometheus as ``status`` sees it (optional: not part of ``healthy``)."""

    url: str
    pid: int | None
    ready: bool
    target_files: tuple[str, ...] = ()


@dataclass(frozen=True)
class StackStatus:
    """Both services, and the optional Prometheus."""

    kafka: KafkaStatus
    postgres: PostgresStatus
    prometheus: PrometheusStatus | None = None

    @property
    def healthy(self) -> bool:
        return self.kafka.reachable and self.postgres.reachable


@dataclass
class DevStack:
    """Kafka + PostgreSQL for development and tests, their files under ``settings.state_dir``."""

    settings: DevSettings
    install: bool = True
    state_dir: Path = field(init=False)

    def __post_init__(self) -> None:
        self.state_dir = self.settings.state_dir.expanduser().resolve()

    @property
    def kafka(self) -> KafkaNode:
        """The local broker: PLAINTEXT, or with ``kafka_sasl`` SASL/SCRAM and ACLs (its own
        files, so the two never share a data directory)."""
        return self._node(sasl=self.settings.kafka_sasl)

    def _node(self, *, sasl: bool) -> KafkaNode:
        s = self.settings
        base_dir = self.state_dir / ("kafka-sasl" if sasl else "kafka")
        security = self._security(base_dir) if sasl else None
        return KafkaNode(
            base_dir=base_dir,
            cache_dir=s.cache_dir.expanduser(),
            port=s.kafka_port,
            controller_port=s.kafka_controller_port,
            heap=s.kafka_heap,
            security=security,
        )

    @staticmethod
    def _security(base_dir: Path) -> BrokerSecurity:
        """The admin and one SCRAM user a role (``User:<role>``, the principals of
        ``speechstream acl plan`` without a principals file), over TLS with a local CA."""
        security = load_security(base_dir / "credentials.json", ROLES)
        return replace(security, tls=generate_tls(base_dir / "tls"))

    def _admin_settings(self, kafka_settings: KafkaSettings, bootstrap: str) -> KafkaSettings:
        """``kafka_settings`` on ``bootstrap``, logged in as the local broker's admin when it
        runs with SASL."""
        update: dict[str, object] = {"bootstrap_servers": bootstrap}
        security = self.kafka.security
        if security is not None and self.external_bootstrap is None:
            update.update(security_protocol=security.protocol, sasl_mechanism="SCRAM-SHA-512",
                          sasl_username=security.admin.name,
                          sasl_password=SecretStr(security.admin.password),
                          ssl_ca_location=security.tls.ca if security.tls else None)
        return kafka_settings.model_copy(update=update)

    def postgres(self, *, install: bool = False) -> PostgresNode:
        """The cluster node; finds (or, with ``install``, installs) the server binaries."""
        configured = self.settings.postgres_bin_dir
        bin_dir = require_bin_dir(configured, install=install and self.install)
        return PostgresNode(self.state_dir / "postgres", bin_dir, self.settings.postgres_port)

    @property
    def prometheus(self) -> PrometheusNode:
        """The local Prometheus (started by ``up`` with ``settings.prometheus``)."""
        return PrometheusNode(self.state_dir / "prometheus", self.settings.prometheus_port)

    @property
    def external_bootstrap(self) -> str | None:
        return self.settings.external_bootstrap_servers or None

    @property
    def external_database(self) -> str | None:
        url = self.settings.external_database_url
        return url.get_secret_value() if url and url.get_secret_value() else None

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with (self.state_dir / "stack.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def up(self, kafka_settings: KafkaSettings) -> UpResult:
        """Start what is not running, create the topics, apply migrations; idempotent."""
        timeout = self.settings.start_timeout_s
        with self._locked():
            services: list[ServiceState] = []
            kafka_wait = False
            if (bootstrap := self.external_bootstrap) is not None:
                services.append(ServiceState("kafka", "external", bootstrap))
            else:
                node = self.kafka
                bootstrap = node.bootstrap_servers
                if (pid := node.running_pid()) is not None:
                    services.append(ServiceState("kafka", "running", bootstrap, pid))
                else:
                    pid = node.start(install=self.install)
                    kafka_wait = True
                    services.append(
                        ServiceState("kafka", "started", bootstrap, pid, node.log_file)
                    )

            if (database_url := self.external_database) is not None:
                services.append(ServiceState("postgres", "external", _redact(database_url)))
            else:
                pg = self.postgres(install=True)
                pg.init()
                database_url = pg.database_url
                if (pid := pg.running_pid()) is not None:
                    services.append(ServiceState("postgres", "running", database_url, pid))
                else:
                    pg.start(timeout)
                    services.append(
                        ServiceState(
                            "postgres", "started", database_url, pg.running_pid(), pg.log_file
                        )
                    )
                pg.wait_ready(timeout)
                pg.ensure_app_database()

            if self.settings.prometheus:
                services.append(self._prometheus_up())

            if kafka_wait or self.external_bootstrap is None:
                self.kafka.wait_ready(timeout if kafka_wait else 15.0)
            migrations = apply_migrations(database_url)
            kafka = self._admin_settings(kafka_settings, bootstrap)
            created = create_topics(kafka)
            security = self.kafka.security if self.external_bootstrap is None else None
            client_env = tuple(security.client_environment().items()) if security else ()
        return UpResult(bootstrap, database_url, tuple(services), tuple(created),
                        tuple(migrations), client_env)

    def _prometheus_up(self) -> ServiceState:
        node = self.prometheus
        if (pid := node.running_pid()) is not None:
            return ServiceState("prometheus", "running", node.url, pid)
        pid = node.start(install=self.install, timeout_s=self.settings.start_timeout_s)
        return ServiceState("prometheus", "started", node.url, pid, node.log_file)

    def down(self) -> tuple[ServiceState, ...]:
        """Stop the broker, the cluster and the Prometheus this state dir's ``up`` started;
        nothing else."""
        with self._locked():
            node = self.kafka
            pid = node.running_pid()
            node.stop()
            other_sasl = not self.settings.kafka_sasl
            if pid is None and (not other_sasl or (self.state_dir / "kafka-sasl").exists()):
                other = self._node(sasl=other_sasl)  # the other kind, if that one runs
                pid = other.running_pid()
                other.stop()
            kafka = ServiceState(
                "kafka", "stopped" if pid else "not running", node.bootstrap_servers, pid
            )
            port = self.settings.postgres_port
            pg_state = ServiceState("postgres", "not running", f"{LOOPBACK}:{port}")
            bin_dir = find_bin_dir(self.settings.postgres_bin_dir)
            pg_dir = self.state_dir / "postgres"
            if (pg_dir / "data" / "postmaster.pid").exists():
                if bin_dir is None:
                    raise MissingToolError("pg_ctl not found: cannot stop the local PostgreSQL")
                pg = PostgresNode(pg_dir, bin_dir, self.settings.postgres_port)
                pid = pg.running_pid()
                if pg.stop():
                    pg_state = ServiceState("postgres", "stopped", pg.database_url, pid)
            prometheus = self.prometheus
            if (pid := prometheus.running_pid()) is not None:
                prometheus.stop()
                return kafka, pg_state, ServiceState("prometheus", "stopped", prometheus.url,
                                                     pid)
        return kafka, pg_state

    def status(self, kafka_settings: KafkaSettings) -> StackStatus:
        """The broker's version, topics with partitions; the database's reachability; the
        Prometheus, when it runs."""
        return StackStatus(self._kafka_status(kafka_settings), self._postgres_status(),
                           self._prometheus_status())

    def _prometheus_status(self) -> PrometheusStatus | None:
        node = self.prometheus
        pid = node.running_pid()
        if pid is None:
            return None
        files = tuple(sorted(p.name for p in node.targets_dir.glob("*.json")))
        return PrometheusStatus(node.url, pid, node.ready(), files)

    def _kafka_status(self, kafka_settings: KafkaSettings) -> KafkaStatus:
        if (bootstrap := self.external_bootstrap) is not None:
            source: Literal["local", "external"] = "external"
            pid, version = None, None
        else:
            node = self.kafka
            source, bootstrap, pid = "local", node.bootstrap_servers, node.running_pid()
            version = node.running_version() or (KAFKA_VERSION if pid else None)
        settings = self._admin_settings(kafka_settings, bootstrap)
        if not broker_answers(bootstrap, timeout_s=3.0,
                              config=settings.to_librdkafka() if settings.sasl_mechanism
                              else None):
            return KafkaStatus(bootstrap, source, False, pid, version, error="no answer")
        try:
            admin = admin_client(settings)  # keep a reference until the future resolves
            cluster = admin.describe_cluster(request_timeout=5).result(timeout=10)
            topics = describe_topics(settings, prefix="")
        except (KafkaException, TopicAdminError, TimeoutError) as exc:
            return KafkaStatus(bootstrap, source, True, pid, version, error=str(exc))
        return KafkaStatus(
            bootstrap, source, True, pid, version,
            cluster_id=cluster.cluster_id, brokers=len(cluster.nodes), topics=tuple(topics),
        )

    def _postgres_status(self) -> PostgresStatus:
        if (url := self.external_database) is not None:
            source: Literal["local", "external"] = "external"
            pid = None
        else:
            source = "local"
            bin_dir = find_bin_dir(self.settings.postgres_bin_dir)
            node = PostgresNode(
                self.state_dir / "postgres", bin_dir or Path("."), self.settings.postgres_port
            )
            url, pid = node.database_url, node.running_pid()
        version, error = database_info(url)
        shown = _redact(url)
        if version is None:
            return PostgresStatus(shown, source, False, pid, error=error)
        try:
            migrations: tuple[str, ...] | None = tuple(applied_migrations(url))
        except psycopg.Error:
            migrations = None
        return PostgresStatus(shown, source, True, pid, version, migrations)


def _redact(url: str) -> str:
    """``url`` without its password, for display."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in creds:
        return url
    return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
