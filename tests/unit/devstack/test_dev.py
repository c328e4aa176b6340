"""The dev stack's pure parts: configuration rendering, pid-file safety, output lines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cli.commands.dev import format_status
from devstack import exceptions
from devstack.host import port_open, process_alive, read_pid
from devstack.kafka import (
    KAFKA_VERSION,
    BrokerSecurity,
    KafkaNode,
    SaslUser,
    jar_version,
    new_cluster_id,
    render_pom,
    render_server_properties,
)
from devstack.postgres import conninfo, render_conf
from devstack.prometheus import PrometheusNode
from devstack.stack import (
    DevStack,
    KafkaStatus,
    PostgresStatus,
    PrometheusStatus,
    ServiceState,
    StackStatus,
    UpResult,
    _redact,
)
from speechstream.exceptions import SpeechstreamError
from speechstream.settings import DevSettings, KafkaSettings

pytestmark = pytest.mark.filterwarnings("error")


def _props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line)


def test_server_properties_are_a_loopback_kraft_combined_node(tmp_path: Path) -> None:
    props = _props(render_server_properties(port=41001, controller_port=41002, data_dir=tmp_path))
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:41002"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:41001,CONTROLLER://127.0.0.1:41002"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:41001"
    assert props["log.dirs"] == str(tmp_path)
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.replication.factor"] == "1"
    assert props["transaction.state.log.min.isr"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert "authorizer.class.name" not in props  # plaintext, no ACLs: the default


def test_a_secure_node_authenticates_with_scram_and_denies_what_no_acl_allows(
    tmp_path: Path,
) -> None:
    security = BrokerSecurity(SaslUser("admin", "adminpw"), (SaslUser("miner", "minerpw"),))
    props = _props(render_server_properties(port=41001, controller_port=41002,
                                            data_dir=tmp_path, security=security))
    assert props["listeners"] == ("SASL_PLAINTEXT://127.0.0.1:41001,"
                                  "CONTROLLER://127.0.0.1:41002")
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["authorizer.class.name"] == (
        "org.apache.kafka.metadata.authorizer.StandardAuthorizer")
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["super.users"] == "User:admin"
    assert security.format_arguments() == [
        "--add-scram", "SCRAM-SHA-512=[name=admin,password=adminpw]",
        "--add-scram", "SCRAM-SHA-512=[name=miner,password=minerpw]",
    ]
    assert security.client_environment(security.user("miner"))["KAFKA_SASL_USERNAME"] == "miner"
    assert "minerpw" not in repr(security)
    with pytest.raises(ValueError):
        SaslUser("a,b")
    node = KafkaNode(tmp_path / "k", tmp_path / "c", 41001, 41002, security=security)
    assert node.security is security


def test_pom_pins_the_kafka_release() -> None:
    pom = render_pom()
    assert f"<artifactId>kafka_2.13</artifactId><version>{KAFKA_VERSION}</version>" in pom
    assert "<packaging>pom</packaging>" in pom
    assert KAFKA_VERSION == "4.1.1"


def test_cluster_ids_are_kafka_uuids() -> None:
    ids = {new_cluster_id() for _ in range(50)}
    assert len(ids) == 50
    for cid in ids:
        assert len(cid) == 22 and not cid.startswith("-")


def test_jar_version_reads_the_broker_jar(tmp_path: Path) -> None:
    assert jar_version(tmp_path) is None
    (tmp_path / "kafka_2.13-4.1.1.jar").touch()
    (tmp_path / "kafka-clients-4.1.1.jar").touch()
    assert jar_version(tmp_path) == "4.1.1"


def test_postgres_listens_on_loopback_tcp_only() -> None:
    conf = render_conf(41003)
    assert "listen_addresses = '127.0.0.1'" in conf
    assert "port = 41003" in conf
    assert "unix_socket_directories = ''" in conf
    assert conninfo(41003) == "postgresql://speechstream@127.0.0.1:41003/speechstream"


def test_a_foreign_pid_in_the_pid_file_is_never_stopped(tmp_path: Path) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        node = KafkaNode(tmp_path / "kafka", tmp_path / "cache", 41004, 41005)
        node.base_dir.mkdir(parents=True)
        node.pid_file.write_text(f"{sleeper.pid}\n")
        assert read_pid(node.pid_file) == sleeper.pid
        assert node.running_pid() is None  # alive, but not this node's broker
        stack = DevStack(DevSettings(state_dir=tmp_path, kafka_port=41004, postgres_port=41006))
        kafka, postgres = stack.down()
        assert (kafka.state, postgres.state) == ("not running", "not running")
        assert process_alive(sleeper.pid)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert not process_alive(sleeper.pid)


def test_down_on_an_empty_state_dir_stops_nothing(tmp_path: Path) -> None:
    stack = DevStack(DevSettings(state_dir=tmp_path / "none", kafka_port=41007))
    assert [s.state for s in stack.down()] == ["not running", "not running"]


def test_up_prints_two_evaluable_lines() -> None:
    result = UpResult("127.0.0.1:1", "postgresql://u@h:2/d?sslmode=require&x=1", ())
    assert result.env_lines() == [
        "KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:1",
        "DATABASE_URL='postgresql://u@h:2/d?sslmode=require&x=1'",
    ]


def test_service_lines_carry_no_equals_sign() -> None:
    for state in ("started", "running", "external", "stopped", "not running"):
        line = ServiceState("kafka", state, "127.0.0.1:39092", 42).describe()  # type: ignore[arg-type]
        assert "=" not in line and line.startswith("kafka: ")


def test_passwords_are_redacted_for_display() -> None:
    assert _redact("postgresql://u:secret@h:5432/d") == "postgresql://u:***@h:5432/d"
    assert _redact("postgresql://u@h:5432/d") == "postgresql://u@h:5432/d"


def test_dev_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPEECHSTREAM_DEV_KAFKA_PORT", "41010")
    monkeypatch.setenv("SPEECHSTREAM_DEV_STATE_DIR", "/tmp/x")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker:9092")
    settings = DevSettings()
    assert settings.kafka_port == 41010
    assert settings.state_dir == Path("/tmp/x")
    assert settings.external_bootstrap_servers == "broker:9092"
    assert DevSettings(external_bootstrap_servers=None).external_bootstrap_servers is None


def test_every_dev_error_is_a_speechstream_error() -> None:
    classes = [
        obj for obj in vars(exceptions).values()
        if isinstance(obj, type) and obj.__module__ == exceptions.__name__
    ]
    assert len(classes) >= 5
    for cls in classes:
        assert issubclass(cls, SpeechstreamError)
        assert cls.__doc__


def test_port_open_sees_a_listener() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        assert port_open(sock.getsockname()[1])


def test_the_sasl_stack_keeps_its_users_and_prints_the_admins_credentials(
    tmp_path: Path,
) -> None:
    plain = DevStack(DevSettings(state_dir=tmp_path, external_bootstrap_servers=None))
    assert plain.kafka.security is None
    assert plain.kafka.base_dir == tmp_path.resolve() / "kafka"
    assert not (tmp_path / "kafka-sasl").exists()

    stack = DevStack(DevSettings(state_dir=tmp_path, kafka_sasl=True,
                                 external_bootstrap_servers=None))
    node = stack.kafka
    assert node.base_dir == tmp_path.resolve() / "kafka-sasl"
    assert node.security is not None
    assert {u.name for u in node.security.users} == {
        "miner", "intake", "evaluator", "auditor", "sink", "validator", "api", "operator",
        "chain"}
    credentials = tmp_path / "kafka-sasl" / "credentials.json"
    assert credentials.stat().st_mode & 0o777 == 0o600
    assert stack.kafka.security == node.security  # read back: the formatted broker's users
    settings = stack._admin_settings(KafkaSettings(), node.bootstrap_servers)
    assert settings.sasl_username == "admin"
    assert settings.to_librdkafka()["security.protocol"] == "SASL_SSL"
    assert settings.ssl_context() is not None  # Faust trusts the local CA too

    result = UpResult("127.0.0.1:1", "postgresql://u@h:2/d", (),
                      client_env=tuple(node.security.client_environment().items()))
    lines = result.env_lines()
    assert "KAFKA_SECURITY_PROTOCOL=SASL_SSL" in lines
    assert any(line.startswith("KAFKA_SSL_CA_LOCATION=") for line in lines)
    assert "KAFKA_SASL_USERNAME=admin" in lines
    assert UpResult("127.0.0.1:1", "postgresql://u@h:2/d", ()).env_lines() == [
        "KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:1", "DATABASE_URL=postgresql://u@h:2/d"]


def test_the_local_ca_signs_a_broker_certificate_for_the_loopback_address(
    tmp_path: Path,
) -> None:
    import ipaddress

    from cryptography import x509

    from devstack.tls import generate_tls

    files = generate_tls(tmp_path / "tls")
    assert files.keystore.stat().st_mode & 0o777 == 0o600
    keystore = files.keystore.read_text()
    assert keystore.startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8, as Kafka's PEM wants
    chain = x509.load_pem_x509_certificates(keystore.encode())
    ca = x509.load_pem_x509_certificate(files.ca.read_bytes())
    assert chain[1] == ca
    chain[0].verify_directly_issued_by(ca)
    names = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)
    assert generate_tls(tmp_path / "tls") == files
    assert x509.load_pem_x509_certificate(files.ca.read_bytes()) == ca  # kept, not made again

    security = BrokerSecurity(SaslUser("admin", "pw"), tls=files)
    props = _props(render_server_properties(port=41001, controller_port=41002,
                                            data_dir=tmp_path, security=security))
    assert props["listeners"].startswith("SASL_SSL://127.0.0.1:41001,")
    assert props["ssl.keystore.type"] == "PEM"
    assert props["ssl.keystore.location"] == str(files.keystore)
    assert security.client_config()["ssl.ca.location"] == str(files.ca)


def test_a_daemon_is_known_by_its_pid_file_and_command_line_and_stopped(tmp_path: Path) -> None:
    node = PrometheusNode(tmp_path / "prometheus", 41007)
    node.base_dir.mkdir(parents=True)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                                f"--config.file={node.config_file}"])
    try:
        assert node.running_pid() is None  # no pid file yet
        node.pid_file.write_text(f"{sleeper.pid}\n")
        assert node.running_pid() == sleeper.pid
        assert node.stop(timeout_s=5)
        sleeper.wait(5)
        assert not node.pid_file.exists() and node.running_pid() is None
        assert not node.stop()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_status_reports_prometheus_when_it_runs() -> None:
    kafka = KafkaStatus("127.0.0.1:1", "local", False, error="no answer")
    postgres = PostgresStatus("postgresql://x@127.0.0.1:1/x", "local", False, error="refused")
    assert format_status(StackStatus(kafka, postgres)).splitlines()[-1] == (
        "prometheus: not running (dev up --prometheus starts it)")
    up = PrometheusStatus("http://127.0.0.1:39090", 42, True, ("demo.json",))
    assert format_status(StackStatus(kafka, postgres, up)).splitlines()[-1] == (
        "prometheus: up (local, pid 42) at http://127.0.0.1:39090, target files: demo.json")


def test_a_free_port_is_picked_below_the_ephemeral_range() -> None:
    """Outgoing connections take ports of the ephemeral range: one handed out from there was
    once taken before the demo's evaluator could bind it."""
    from devstack.host import LOWEST_PICKED_PORT, ephemeral_low, free_port

    low = ephemeral_low()
    ports = {free_port() for _ in range(20)}
    assert all(LOWEST_PICKED_PORT <= port < low for port in ports), (low, ports)
    assert len(ports) > 1
