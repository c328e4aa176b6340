"""The broker's produce quotas per user, set with Kafka's own ``ConfigCommand`` from the jars
the dev stack fetches (librdkafka's Admin API has no call for client quotas)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from devstack.host import JAVA, require_tool, run_command
from devstack.kafka import fetch_jars
from speechstream.settings import KafkaSettings


def _properties(kafka: KafkaSettings) -> str:
    """The Java client's settings to log in as ``kafka``'s user."""
    lines = [f"security.protocol={kafka.security_protocol}"]
    if kafka.sasl_mechanism:
        password = kafka.sasl_password.get_secret_value() if kafka.sasl_password else ""
        module = ("org.apache.kafka.common.security.plain.PlainLoginModule"
                  if kafka.sasl_mechanism == "PLAIN"
                  else "org.apache.kafka.common.security.scram.ScramLoginModule")
        lines += [f"sasl.mechanism={kafka.sasl_mechanism}",
                  f'sasl.jaas.config={module} required username="{kafka.sasl_username}" '
                  f'password="{password}";']
    if kafka.ssl_ca_location is not None:
        lines += ["ssl.truststore.type=PEM", f"ssl.truststore.location={kafka.ssl_ca_location}"]
    return "\n".join(lines) + "\n"


def set_producer_quota(kafka: KafkaSettings, user: str, bytes_per_s: int | None, *,
                       cache_dir: Path, install: bool = True) -> None:
    """Limit what ``user`` may produce to ``bytes_per_s`` (the broker delays its produce
    requests past it); None removes the limit. ``kafka`` logs in as an admin."""
    libs = fetch_jars(cache_dir, install=install)
    java = require_tool(JAVA, install=install)
    change = (["--add-config", f"producer_byte_rate={bytes_per_s}"] if bytes_per_s is not None
              else ["--delete-config", "producer_byte_rate"])
    fd, path = tempfile.mkstemp(prefix="speechstream-quota-", suffix=".properties")
    try:
        os.write(fd, _properties(kafka).encode())
        os.close(fd)
        run_command([java, "-cp", f"{libs}/*", "kafka.admin.ConfigCommand",
                     "--bootstrap-server", kafka.bootstrap_servers, "--command-config", path,
                     "--alter", "--entity-type", "users", "--entity-name", user, *change],
                    what=f"setting the produce quota of {user}", timeout=120)
    finally:
        Path(path).unlink(missing_ok=True)
