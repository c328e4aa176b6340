"""A single-node Apache Kafka broker in KRaft combined mode, run from Maven Central's jars."""

from __future__ import annotations

import base64
import fcntl
import json
import logging
import os
import re
import secrets
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from devstack.exceptions import CommandFailedError, StartupError
from devstack.host import (
    JAVA,
    LOOPBACK,
    MAVEN,
    daemon_pid,
    log_tail,
    port_open,
    require_port_free,
    require_tool,
    run_command,
    spawn_daemon,
    stop_daemon,
)
from devstack.tls import TlsFiles

log = logging.getLogger(__name__)

KAFKA_VERSION = "4.1.1"
SCALA_VERSION = "2.13"
LOG4J_VERSION = "2.24.3"
SLF4J_VERSION = "2.0.16"
KAFKA_MAIN_CLASS = "kafka.Kafka"
SCRAM = "SCRAM-SHA-512"
STANDARD_AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
_SAFE_CREDENTIAL = re.compile(r"^[A-Za-z0-9_.-]+$")


def new_password() -> str:
    """A random password of letters and digits (it travels in JAAS and ``--add-scram``)."""
    return secrets.token_hex(16)


@dataclass(frozen=True)
class SaslUser:
    """A SCRAM user of the broker; its principal is ``User:<name>``."""

    name: str
    password: str = field(default_factory=new_password, repr=False)

    def __post_init__(self) -> None:
        for value in (self.name, self.password):
            if not _SAFE_CREDENTIAL.match(value):
                raise ValueError(f"SCRAM user {self.name!r}: names and passwords are letters, "
                                 "digits, '_', '.' and '-'")

    @property
    def principal(self) -> str:
        return f"User:{self.name}"


@dataclass(frozen=True)
class BrokerSecurity:
    """An authenticating, authorizing broker (opt-in): clients log in with SCRAM-SHA-512 over
    SASL_PLAINTEXT, or SASL_SSL with ``tls`` (a local CA's certificate, ``devstack.tls``);
    KRaft's StandardAuthorizer denies what no ACL allows, and ``admin`` is the only super user
    (it also logs the node into its own listeners). ``users`` are created at format time, with
    the admin."""

    admin: SaslUser = field(default_factory=lambda: SaslUser("admin"))
    users: tuple[SaslUser, ...] = ()
    tls: TlsFiles | None = None

    @property
    def protocol(self) -> str:
        """The clients' ``security.protocol``."""
        return "SASL_SSL" if self.tls is not None else "SASL_PLAINTEXT"

    def user(self, name: str) -> SaslUser:
        """The user called ``name``."""
        for user in (self.admin, *self.users):
            if user.name == name:
                return user
        raise KeyError(name)

    def client_config(self, user: SaslUser | None = None) -> dict[str, str]:
        """librdkafka's settings to log in as ``user`` (the admin by default)."""
        user = user or self.admin
        config = {"security.protocol": self.protocol, "sasl.mechanism": SCRAM,
                  "sasl.username": user.name, "sasl.password": user.password}
        if self.tls is not None:
            config["ssl.ca.location"] = str(self.tls.ca)
        return config

    def client_environment(self, user: SaslUser | None = None) -> dict[str, str]:
        """The same as ``KafkaSettings``' environment variables (``security.protocol`` is
        ``KAFKA_SECURITY_PROTOCOL``, and so on)."""
        return {"KAFKA_" + key.upper().replace(".", "_"): value
                for key, value in self.client_config(user).items()}

    def format_arguments(self) -> list[str]:
        """``kafka-storage format`` arguments that create every SCRAM user."""
        args: list[str] = []
        for user in (self.admin, *self.users):
            args += ["--add-scram", f"{SCRAM}=[name={user.name},password={user.password}]"]
        return args

    def properties(self, *, port: int, controller_port: int) -> dict[str, str]:
        """The ``server.properties`` entries of the SASL listener and the authorizer."""
        admin = self.admin
        listener = self.protocol
        tls: dict[str, str] = {}
        if self.tls is not None:
            tls = {"ssl.keystore.type": "PEM", "ssl.keystore.location": str(self.tls.keystore),
                   "ssl.truststore.type": "PEM", "ssl.truststore.location": str(self.tls.ca)}
        return {
            "listeners": f"{listener}://{LOOPBACK}:{port},"
                         f"CONTROLLER://{LOOPBACK}:{controller_port}",
            "advertised.listeners": f"{listener}://{LOOPBACK}:{port}",
            "inter.broker.listener.name": listener,
            "listener.security.protocol.map":
                f"{listener}:{listener},CONTROLLER:SASL_PLAINTEXT",
            "sasl.enabled.mechanisms": SCRAM,
            "sasl.mechanism.inter.broker.protocol": SCRAM,
            **tls,
            f"listener.name.{listener.lower()}.{SCRAM.lower()}.sasl.jaas.config":
                "org.apache.kafka.common.security.scram.ScramLoginModule required "
                f'username="{admin.name}" password="{admin.password}";',
            # The controller listener cannot take SCRAM (its users live in the metadata the
            # controller serves): PLAIN, with the admin alone, on the loopback interface.
            "sasl.mechanism.controller.protocol": "PLAIN",
            "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
            "listener.name.controller.plain.sasl.jaas.config":
                "org.apache.kafka.common.security.plain.PlainLoginModule required "
                f'username="{admin.name}" password="{admin.password}" '
                f'user_{admin.name}="{admin.password}";',
            "authorizer.class.name": STANDARD_AUTHORIZER,
            "allow.everyone.if.no.acl.found": "false",
            "super.users": admin.principal,
        }


def render_pom() -> str:
    """A ``pom`` project whose runtime dependencies are exactly the broker's classpath."""
    deps = [
        ("org.apache.kafka", f"kafka_{SCALA_VERSION}", KAFKA_VERSION),
        ("org.apache.logging.log4j", "log4j-slf4j2-impl", LOG4J_VERSION),
        ("org.apache.logging.log4j", "log4j-core", LOG4J_VERSION),
        ("org.slf4j", "slf4j-api", SLF4J_VERSION),
    ]
    body = "\n".join(
        f"    <dependency><groupId>{g}</groupId><artifactId>{a}</artifactId>"
        f"<version>{v}</version></dependency>"
        for g, a, v in deps
    )
    return (
        '<project xmlns="http://maven.apache.org/POM/4.0.0">\n'
        "  <modelVersion>4.0.0</modelVersion>\n"
        "  <groupId>speechstream.dev</groupId>\n"
        f"  <artifactId>kafka-runtime</artifactId><version>{KAFKA_VERSION}</version>\n"
        "  <packaging>pom</packaging>\n"
        f"  <dependencies>\n{body}\n  </dependencies>\n"
        "</project>\n"
    )


def load_security(path: Path, user_names: tuple[str, ...]) -> BrokerSecurity:
    """The broker's SCRAM users kept in ``path`` (JSON, mode 0600): read when it exists (a
    formatted broker knows only those), else created with new passwords and written."""
    if path.exists():
        data = json.loads(path.read_text())
        users = tuple(SaslUser(name, password) for name, password in data["users"].items())
        return BrokerSecurity(SaslUser(data["admin"]["name"], data["admin"]["password"]),
                              users)
    security = BrokerSecurity(users=tuple(SaslUser(name) for name in user_names))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"admin": {"name": security.admin.name, "password": security.admin.password},
                   "users": {u.name: u.password for u in security.users}}, out, indent=2)
    return security


def render_server_properties(
    *, port: int, controller_port: int, data_dir: Path, security: BrokerSecurity | None = None,
) -> str:
    """``server.properties`` of a combined broker+controller node on the loopback interface;
    with ``security``, SASL/SCRAM listeners and ACLs (``BrokerSecurity``)."""
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{LOOPBACK}:{controller_port}",
        "listeners": f"PLAINTEXT://{LOOPBACK}:{port},CONTROLLER://{LOOPBACK}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{LOOPBACK}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "10",
        "group.initial.rebalance.delay.ms": "0",
    }
    if security is not None:
        props.update(security.properties(port=port, controller_port=controller_port))
    return "".join(f"{k}={v}\n" for k, v in props.items())


def render_log4j2() -> str:
    """A log4j2 configuration: warnings and errors, plus the broker's start/stop lines."""
    return (
        "Configuration:\n"
        "  Appenders:\n"
        "    Console:\n"
        "      name: STDOUT\n"
        "      PatternLayout:\n"
        '        pattern: "[%d] %p %m (%c)%n"\n'
        "  Loggers:\n"
        "    Root:\n"
        "      level: WARN\n"
        "      AppenderRef:\n"
        "        - ref: STDOUT\n"
        "    Logger:\n"
        "      - name: kafka.server.KafkaRaftServer\n"
        "        level: INFO\n"
    )


def new_cluster_id() -> str:
    """A random cluster id in Kafka's form (base64url of 16 bytes, no padding)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


def kafka_home(cache_dir: Path) -> Path:
    """Where this release's jars are cached."""
    return cache_dir / f"kafka-{KAFKA_VERSION}"


def jar_version(libs: Path) -> str | None:
    """The Kafka version of the ``kafka_<scala>-<version>.jar`` in ``libs``, if any."""
    for jar in sorted(libs.glob(f"kafka_{SCALA_VERSION}-*.jar")):
        version = jar.name.removeprefix(f"kafka_{SCALA_VERSION}-").removesuffix(".jar")
        if version and version[0].isdigit() and not version.endswith(("-test", "-sources")):
            return version
    return None


def fetch_jars(cache_dir: Path, *, install: bool = True) -> Path:
    """The directory of the broker's jars, fetched from Maven Central with ``mvn`` once."""
    home = kafka_home(cache_dir)
    libs = home / "libs"
    marker = home / ".complete"
    if marker.exists() and jar_version(libs) == KAFKA_VERSION:
        return libs
    home.mkdir(parents=True, exist_ok=True)
    with (home / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists() and jar_version(libs) == KAFKA_VERSION:
            return libs
        mvn = require_tool(MAVEN, install=install)
        (home / "pom.xml").write_text(render_pom())
        staging = home / "libs.partial"
        shutil.rmtree(staging, ignore_errors=True)
        log.info("fetching Apache Kafka %s jars with mvn into %s", KAFKA_VERSION, libs)
        run_command(
            [mvn, "-q", "-B", "dependency:copy-dependencies",
             f"-DoutputDirectory={staging}", "-DincludeScope=runtime"],
            what=f"fetching Apache Kafka {KAFKA_VERSION} from Maven Central",
            cwd=home,
            timeout=1800,
        )
        if jar_version(staging) != KAFKA_VERSION:
            raise CommandFailedError(f"mvn finished but {staging} holds no Kafka {KAFKA_VERSION}")
        shutil.rmtree(libs, ignore_errors=True)
        staging.rename(libs)
        marker.write_text(KAFKA_VERSION + "\n")
    return libs


@dataclass(frozen=True)
class KafkaNode:
    """One broker: its files live under ``base_dir``, its jars under ``cache_dir``."""

    base_dir: Path
    cache_dir: Path
    port: int
    controller_port: int
    heap: str = "1g"
    security: BrokerSecurity | None = None
    """None: PLAINTEXT, no authorizer (the default); else SASL/SCRAM and ACLs."""

    @property
    def bootstrap_servers(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def properties_file(self) -> Path:
        return self.base_dir / "server.properties"

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "kafka.log"

    @property
    def pid_file(self) -> Path:
        return self.base_dir / "kafka.pid"

    @property
    def version_file(self) -> Path:
        return self.base_dir / "version"

    def running_pid(self) -> int | None:
        """The pid of this node's broker when it runs (checked against its command line)."""
        return daemon_pid(self.pid_file, KAFKA_MAIN_CLASS, str(self.properties_file))

    def running_version(self) -> str | None:
        """The Kafka version the running broker was started from."""
        try:
            return self.version_file.read_text().strip() or None
        except FileNotFoundError:
            return None

    def prepare(self, *, install: bool = True) -> Path:
        """Fetch the jars, write the configuration and format the data dir (once)."""
        libs = fetch_jars(self.cache_dir, install=install)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        properties = render_server_properties(
            port=self.port, controller_port=self.controller_port, data_dir=self.data_dir,
            security=self.security,
        )
        if self.security is not None:  # it holds the admin's password
            fd = os.open(self.properties_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(properties)
        else:
            self.properties_file.write_text(properties)
        (self.base_dir / "log4j2.yaml").write_text(render_log4j2())
        if not (self.data_dir / "meta.properties").exists():
            java = require_tool(JAVA, install=install)
            run_command(
                [java, "-cp", f"{libs}/*", "kafka.tools.StorageTool", "format",
                 "-t", new_cluster_id(), "-c", str(self.properties_file),
                 *(self.security.format_arguments() if self.security else [])],
                what="formatting the Kafka data directory",
                timeout=180,
            )
        return libs

    def start(self, *, install: bool = True) -> int:
        """Start the broker detached and return its pid (does not wait; see ``wait_ready``)."""
        require_port_free(self.port, "kafka", "SPEECHSTREAM_DEV_KAFKA_PORT")
        require_port_free(
            self.controller_port, "kafka controller", "SPEECHSTREAM_DEV_KAFKA_CONTROLLER_PORT"
        )
        libs = self.prepare(install=install)
        java = require_tool(JAVA, install=install)
        argv = [
            java, f"-Xmx{self.heap}", "-Xms128m", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.base_dir / 'log4j2.yaml'}",
            "-cp", f"{libs}/*", KAFKA_MAIN_CLASS, str(self.properties_file),
        ]
        pid = spawn_daemon(argv, log_file=self.log_file, cwd=self.base_dir)
        self.pid_file.write_text(f"{pid}\n")
        self.version_file.write_text(f"{jar_version(libs)}\n")
        return pid

    def wait_ready(self, timeout_s: float) -> None:
        """Block until the broker answers a metadata request; raise ``StartupError`` otherwise."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.running_pid() is None:
                raise StartupError(
                    f"kafka exited during startup; see {self.log_file}:\n{log_tail(self.log_file)}"
                )
            if port_open(self.port) and broker_answers(
                self.bootstrap_servers, timeout_s=2.0,
                config=self.security.client_config() if self.security else None,
            ):
                return
            time.sleep(0.3)
        raise StartupError(
            f"kafka did not answer on {self.bootstrap_servers} within {timeout_s:.0f}s; "
            f"see {self.log_file}:\n{log_tail(self.log_file)}"
        )

    def stop(self, timeout_s: float = 60.0) -> bool:
        """Stop the broker this node started; False when it was not running."""
        return stop_daemon(self.pid_file, KAFKA_MAIN_CLASS, str(self.properties_file),
                           timeout=timeout_s)


def broker_answers(
    bootstrap_servers: str, *, timeout_s: float = 5.0, config: dict[str, Any] | None = None,
) -> bool:
    """Whether a broker at ``bootstrap_servers`` answers a metadata request (``config``: a
    client's credentials)."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers, "log_level": 0,
                         **(config or {})})
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException:
        return False
    return bool(metadata.brokers)
