"""The demo's security: each service's broker principal (on a dev stack with SASL) and its
signing key, trusted by the run's own operator root key."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cli.commands.acl import context as acl_context
from consumers.settings import EvaluatorSettings, ValidatorSettings
from devstack.kafka import BrokerSecurity
from producers.trust import publish_trusted, service_keys
from sinks.settings import SinkSettings
from speechstream.kafka.acl import apply_acls, default_principals, derive_acls
from speechstream.settings import KafkaSettings
from speechstream.signer import Signer

SERVICE_ROLES = {"streams": "intake", "evaluator": "evaluator", "sink": "sink",
                 "validator": "validator", "api": "api"}
"""The demo's services and the role each logs in and signs as."""


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
    names = {"intake": "intake", "evaluator": evaluator, "sink": "sink",
             "validator": validator, "api": "api", "chain": "chain"}
    keys = service_keys(directory, names, fresh=True)
    env = {**keys.environment(), "SPEECHSTREAM_TRUST_INSECURE": "false"}
    trusted = publish_trusted(operator_kafka, keys.operator, keys.entries, version=1,
                              reason="demo run")
    say(f"   trust: operator root {keys.operator.hotkey[:16]}…, {len(trusted.keys)} service keys "
        f"trusted (version {trusted.version}); every reader checks every signature")
    return env, Signer.from_key_file(keys.key_file("chain"))
