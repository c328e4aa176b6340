"""Test support: an operator root key, a key per service, and their trusted set published on a
test's ``trust`` topic, with the environment each service needs to check and sign."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from producers.trust import publish_trusted
from schemas.events import TrustedKey
from schemas.trust import TrustSet
from speechstream.keys import Hotkey, create_key_file
from speechstream.settings import KafkaSettings
from speechstream.signer import Signer
from speechstream.trust import TrustStore

SERVICE_VARIABLES = {
    "intake": "SPEECHSTREAM_STREAMS_KEY_FILE",
    "evaluator": "SPEECHSTREAM_EVALUATOR_KEY_FILE",
    "auditor": "SPEECHSTREAM_AUDIT_KEY_FILE",
    "sink": "SPEECHSTREAM_SINK_KEY_FILE",
    "validator": "SPEECHSTREAM_VALIDATOR_KEY_FILE",
    "api": "SPEECHSTREAM_API_KEY_FILE",
    "chain": "SPEECHSTREAM_CHAIN_KEY_FILE",
}
"""The key-file setting of each role's service."""


@dataclass
class Keys:
    """Key files under one directory: the operator's root and one per (role, name)."""

    directory: Path
    operator: Hotkey
    files: dict[tuple[str, str], Path] = field(default_factory=dict)

    @classmethod
    def create(cls, directory: Path) -> Keys:
        """A fresh operator key in ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        return cls(directory, create_key_file(directory / "operator.json"))

    def add(self, role: str, name: str) -> Signer:
        """A fresh key for ``role`` as ``name`` (its file under the directory)."""
        path = self.directory / f"{role}-{name}.json"
        create_key_file(path, force=True)
        self.files[role, name] = path
        return Signer.from_key_file(path)

    def signer(self, role: str, name: str) -> Signer:
        """The key of ``role`` as ``name``."""
        return Signer.from_key_file(self.files[role, name])

    def entries(self) -> list[TrustedKey]:
        """Every key but the operator's, as trusted-set entries."""
        return [TrustedKey(key=Signer.from_key_file(path).public_key, role=role, name=name)
                for (role, name), path in self.files.items()]  # type: ignore[arg-type]

    def publish(self, kafka: KafkaSettings, version: int = 1) -> None:
        """Publish every key as the trusted set ``version``."""
        publish_trusted(kafka, self.operator, self.entries(), version=version)

    def store(self) -> TrustStore:
        """A store that trusts these keys, without Kafka."""
        return TrustStore.fixed(self.operator.hotkey,
                                TrustSet(1, {k.key: k for k in self.entries()}))

    def env(self, role: str, name: str) -> dict[str, str]:
        """The environment of the service ``role`` as ``name``: the root and its key file."""
        return {"SPEECHSTREAM_TRUST_OPERATOR_KEY": self.operator.hotkey,
                "SPEECHSTREAM_TRUST_INSECURE": "false",
                SERVICE_VARIABLES[role]: str(self.files[role, name])}
