"""The operator's trusted keys: read the current set from the ``trust`` topic, and publish the
next version, signed with the operator's root key (``speechstream trust``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from schemas.envelope import Envelope, new_envelope
from schemas.events import KeysTrusted, TrustedKey
from schemas.trust import TrustSet, root_refusal
from speechstream.exceptions import ConsumeError, TrustError
from speechstream.kafka.producer import EventProducer
from speechstream.kafka.reader import read_log
from speechstream.keys import Hotkey, create_key_file, load_key_file
from speechstream.settings import KafkaSettings
from speechstream.signer import Signer
from speechstream.trust import TRUST_READER

PRODUCER_NAME = "speechstream-trust"
KEY_FILE_SETTINGS = {
    "intake": "SPEECHSTREAM_STREAMS_KEY_FILE",
    "evaluator": "SPEECHSTREAM_EVALUATOR_KEY_FILE",
    "auditor": "SPEECHSTREAM_AUDIT_KEY_FILE",
    "sink": "SPEECHSTREAM_SINK_KEY_FILE",
    "validator": "SPEECHSTREAM_VALIDATOR_KEY_FILE",
    "api": "SPEECHSTREAM_API_KEY_FILE",
    "chain": "SPEECHSTREAM_CHAIN_KEY_FILE",
}
"""The setting that gives each signing role's service its key file."""


@dataclass(frozen=True)
class ServiceKeys:
    """An operator root and one key per service role, as key files in one directory."""

    directory: Path
    operator: Hotkey
    entries: list[TrustedKey]

    @property
    def operator_file(self) -> Path:
        """The operator's key file."""
        return self.directory / "operator.json"

    def key_file(self, role: str) -> Path:
        """The key file of ``role``'s service."""
        return self.directory / f"{role}.json"

    def environment(self) -> dict[str, str]:
        """The root every service checks against, and each service's key file setting."""
        env = {"SPEECHSTREAM_TRUST_OPERATOR_KEY": self.operator.hotkey}
        env.update({KEY_FILE_SETTINGS[k.role]: str(self.key_file(k.role)) for k in self.entries})
        return env


def service_keys(directory: Path, names: Mapping[str, str], *, fresh: bool) -> ServiceKeys:
    """``operator.json`` and ``<role>.json`` for each role of ``names`` (a role of
    :data:`KEY_FILE_SETTINGS`), each trusted under ``names[role]``. ``fresh`` makes new keys
    over any there (one run's keys); otherwise keys already there are kept (a stack's, across
    restarts). Files are written 0600."""
    directory.mkdir(parents=True, exist_ok=True)

    def key(path: Path) -> Hotkey:
        if fresh or not path.exists():
            return create_key_file(path, force=True)
        return load_key_file(path)

    keys = ServiceKeys(directory, key(directory / "operator.json"), [])
    for role, name in names.items():
        if role not in KEY_FILE_SETTINGS:
            raise ValueError(f"no service signs as {role!r}")
        keys.entries.append(TrustedKey(key=key(keys.key_file(role)).hotkey,  # type: ignore[arg-type]
                                       role=role, name=name))
    return keys


def read_trusted(kafka: KafkaSettings, root: str, *, limit_s: float = 30.0) -> TrustSet:
    """The highest version of the trusted set signed by ``root`` on the ``trust`` topic
    (version 0, no keys, before the first); :class:`TrustError` when the topic cannot be read
    to its end within ``limit_s`` (the next version must follow the last one, or readers
    ignore it)."""
    current = [TrustSet()]

    def take(envelope: Envelope) -> None:
        event = envelope.payload
        if isinstance(event, KeysTrusted) and event.version > current[0].version:
            current[0] = TrustSet.of(event)

    try:
        read_log(kafka, [kafka.topics.trust], take, name=TRUST_READER, expected=KeysTrusted,
                 limit_s=limit_s, verify=lambda env, raw, _topic: root_refusal(env, raw, root))
    except ConsumeError as exc:
        raise TrustError(f"cannot read the trusted keys: {exc}") from exc
    return current[0]


def trusted_set(operator: Hotkey, keys: list[TrustedKey], *, version: int,
                reason: str | None = None) -> Envelope:
    """The ``keys.trusted`` envelope of ``keys`` at ``version``, signed with the operator's
    root key."""
    event = KeysTrusted(version=version, keys=keys, reason=reason)
    envelope = new_envelope(event, key="keys", producer=PRODUCER_NAME)
    return Signer(operator.private_key, operator.hotkey).sign(envelope)


def publish_trusted(kafka: KafkaSettings, operator: Hotkey, keys: list[TrustedKey], *,
                    version: int, reason: str | None = None) -> KeysTrusted:
    """Publish ``keys`` as the trusted set ``version`` and wait for the broker."""
    envelope = trusted_set(operator, keys, version=version, reason=reason)
    with EventProducer(kafka) as producer:
        producer.send(kafka.topics.trust, envelope)
        producer.flush()
    assert isinstance(envelope.payload, KeysTrusted)
    return envelope.payload


def add_key(kafka: KafkaSettings, operator: Hotkey, *, key: str, role: str, name: str,
            reason: str | None = None) -> KeysTrusted:
    """Trust ``key`` for ``role`` as ``name`` from the next version on (a key already trusted
    is given the new role and name). A name may hold several keys: adding a second one and
    then removing the first rotates it."""
    current = read_trusted(kafka, operator.hotkey)
    if key == operator.hotkey:
        raise TrustError("the operator's root key is trusted already; give each service a key "
                         "of its own (`speechstream trust keygen`)")
    keys = [k for k in current.keys.values() if k.key != key]
    keys.append(TrustedKey(key=key, role=role, name=name))  # type: ignore[arg-type]
    return publish_trusted(kafka, operator, keys, version=current.version + 1,
                           reason=reason or f"add {role} {name}")


def remove_keys(kafka: KafkaSettings, operator: Hotkey, *, key: str | None = None,
                name: str | None = None, reason: str | None = None) -> KeysTrusted:
    """Stop trusting ``key`` (or every key of ``name``) from the next version on: readers
    refuse what it signs from then on, including, on a rebuild, what it signed before."""
    current = read_trusted(kafka, operator.hotkey)
    keys = [k for k in current.keys.values()
            if not (k.key == key or (name is not None and k.name == name))]
    if len(keys) == len(current.keys):
        raise TrustError(f"version {current.version} of the trusted keys has no key "
                         f"{key or ''}{name or ''}: nothing to remove")
    return publish_trusted(kafka, operator, keys, version=current.version + 1,
                           reason=reason or f"remove {key or name}")
