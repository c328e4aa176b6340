"""The demo's security: each service's broker principal (on a dev stack with SASL) and its
signing key, trusted by the run's own operator root key."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cli.commands.acl import context as acl_context
from consumers.settings import EvaluatorSettings, ValidatorSettings
from devstack.kafka import BrokerSecurity
from producers.trust import publish_trusted
from schemas.events import TrustedKey
from sinks.settings import SinkSettings
from speechstream.kafka.acl import apply_acls, default_principals, derive_acls
from speechstream.keys import create_key_file
from speechstream.settings import KafkaSettings
from speechstream.signer import Signer

SERVICE_ROLES = {"streams": "intake", "evaluator": "evaluator", "sink": "sink",
                 "validator": "validator", "api": "api"}
"""The demo's services and the role each logs in and signs as."""
SERVICE_KEYS = (
    ("intake", "SPEECHSTREAM_STREAMS_KEY_FILE"),
    ("evaluator", "SPEECHSTREAM_EVALUATOR_KEY_FILE"),
    ("sink", "SPEECHSTREAM_SINK_KEY_FILE"),
    ("validator", "SPEECHSTREAM_VALIDATOR_KEY_FILE"),
    ("api", "SPEECHSTREAM_API_KEY_FILE"),
    ("chain", "SPEECHSTREAM_CHAIN_KEY_FILE"),
)
"""Each role that signs in the demo, and the setting of its key file."""


class Principals:
    """Who the demo's clients log in as: on a broker with SASL, the dev stack's user of each
    role (``User:<role>``, allowed only what the role's ACLs allow); otherwise nobody."""

    def __init__(self, admin: KafkaSettings, security: BrokerSecurity | None) -> None:
        self.admin = admin
        self.security = security

    def environment(self, service: str) -> dict[str, str]:
        """The broker settings of ``service`` (a role, or a demo service's name)."""
        if self.security is None:
            return {}
        role = SERVICE_ROLES.get(service, service)
        return self.security.client_environment(self.security.user(role))

    def of(self, role: str) -> KafkaSettings:
        """The admin's settings logged in as ``role`` instead."""
        env = self.environment(role)
        if not env:
            return self.admin
        return KafkaSettings(**{"KAFKA_BOOTSTRAP_SERVERS": self.admin.bootstrap_servers,
                                "SPEECHSTREAM_TOPIC_PREFIX": self.admin.topic_prefix, **env})

    def allow(self, evaluator: EvaluatorSettings, sink: SinkSettings,
              validator: ValidatorSettings) -> int:
        """Create the ACLs each role needs under the run's prefix and groups; how many."""
        if self.security is None:
            return 0
        context = acl_context(self.admin, evaluator=evaluator, sink=sink, validator=validator)
        return len(apply_acls(self.admin, derive_acls(default_principals(), context)))


def demo_trust(directory: Path, operator_kafka: KafkaSettings, evaluator: str,
               validator: str, say: Callable[[str], None]) -> tuple[dict[str, str], Signer]:
    """The run's root of trust: an operator key, a key per service, their trusted set
    published on the run's ``trust`` topic; the services' environment and the chain's key."""
    directory.mkdir(parents=True, exist_ok=True)
    operator = create_key_file(directory / "operator.json", force=True)
    names = {"intake": "intake", "evaluator": evaluator, "sink": "sink",
             "validator": validator, "api": "api", "chain": "chain"}
    env = {"SPEECHSTREAM_TRUST_OPERATOR_KEY": operator.hotkey,
           "SPEECHSTREAM_TRUST_INSECURE": "false"}
    keys: list[TrustedKey] = []
    for role, variable in SERVICE_KEYS:
        path = directory / f"{role}.json"
        key = create_key_file(path, force=True)
        keys.append(TrustedKey(key=key.hotkey, role=role, name=names[role]))  # type: ignore[arg-type]
        env[variable] = str(path)
    trusted = publish_trusted(operator_kafka, operator, keys, version=1, reason="demo run")
    say(f"   trust: operator root {operator.hotkey[:16]}…, {len(trusted.keys)} service keys "
        f"trusted (version {trusted.version}); every reader checks every signature")
    return env, Signer.from_key_file(directory / "chain.json")
