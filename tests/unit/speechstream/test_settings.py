"""Kafka security settings reach every client: librdkafka's configuration and Faust's
credentials come from the same fields."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import faust
import pytest

from speechstream.settings import KafkaSettings
from streams.app import credentials


def _settings(**env: str) -> KafkaSettings:
    return KafkaSettings(**{"KAFKA_BOOTSTRAP_SERVERS": "broker:9093", **env})


def test_plaintext_needs_nothing() -> None:
    settings = _settings()
    assert settings.to_librdkafka()["security.protocol"] == "PLAINTEXT"
    assert settings.ssl_context() is None and credentials(settings) is None


def test_sasl_scram_reaches_librdkafka_and_faust() -> None:
    settings = _settings(KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
                         KAFKA_SASL_MECHANISM="SCRAM-SHA-512", KAFKA_SASL_USERNAME="validator-a",
                         KAFKA_SASL_PASSWORD="pw")
    cfg = settings.producer_config()
    assert (cfg["security.protocol"], cfg["sasl.mechanism"], cfg["sasl.username"],
            cfg["sasl.password"]) == ("SASL_PLAINTEXT", "SCRAM-SHA-512", "validator-a", "pw")
    creds = credentials(settings)
    assert isinstance(creds, faust.SASLCredentials)
    assert (creds.protocol.value, creds.mechanism.value, creds.username) == (
        "SASL_PLAINTEXT", "SCRAM-SHA-512", "validator-a")
    assert "pw" not in repr(settings)  # the password is a secret


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls_files_reach_librdkafka_and_faust(tmp_path: Path) -> None:
    key, cert = tmp_path / "client.key", tmp_path / "client.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=validator-a", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    settings = _settings(KAFKA_SECURITY_PROTOCOL="SASL_SSL", KAFKA_SASL_MECHANISM="PLAIN",
                         KAFKA_SASL_USERNAME="validator-a", KAFKA_SASL_PASSWORD="pw",
                         KAFKA_SSL_CA_LOCATION=str(cert), KAFKA_SSL_CERTIFICATE_LOCATION=str(cert),
                         KAFKA_SSL_KEY_LOCATION=str(key))
    cfg = settings.to_librdkafka()
    assert (cfg["ssl.ca.location"], cfg["ssl.certificate.location"], cfg["ssl.key.location"]) == (
        str(cert), str(cert), str(key))
    context = settings.ssl_context()
    assert isinstance(context, ssl.SSLContext) and context.verify_mode == ssl.CERT_REQUIRED
    creds = credentials(settings)
    assert creds is not None and creds.protocol.value == "SASL_SSL" and creds.ssl_context
    tls_only = credentials(_settings(KAFKA_SECURITY_PROTOCOL="SSL",
                                     KAFKA_SSL_CA_LOCATION=str(cert)))
    assert isinstance(tls_only, faust.SSLCredentials)
