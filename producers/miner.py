"""The miner's side: build signed registration and submission events and publish them."""

from __future__ import annotations

from producers.keys import Hotkey
from schemas.envelope import Envelope, derived_event_id, new_envelope
from schemas.events import MinerRegistered, SubmissionPublished
from schemas.hashing import submission_hash
from schemas.signing import sign
from speechstream.kafka.producer import EventProducer
from speechstream.settings import KafkaSettings

PRODUCER_NAME = "speechstream-miner"


def registration(key: Hotkey, *, uid: int, block: int, coldkey: str | None = None) -> Envelope:
    """A signed ``miner.registered`` event, keyed by uid."""
    fields = {
        "type": "miner.registered",
        "hotkey": key.hotkey,
        "uid": uid,
        "coldkey": coldkey,
        "block": block,
    }
    event = MinerRegistered(**fields, signature=sign(key.private_key, fields))
    return new_envelope(
        event, key=str(uid), producer=PRODUCER_NAME, event_id=_event_id(event.signature)
    )


def submission(
    key: Hotkey,
    *,
    repo_namespace: str,
    repo_name: str,
    block: int,
    revision: str | None = None,
    config_template: str = "default",
    competition_id: str = "d1",
    hash_override: str | None = None,
) -> Envelope:
    """A signed ``submission.published`` event with the SPEC §3 hash, keyed by hotkey.

    ``hash_override`` publishes a different hash on purpose (to see the validator reject it).
    """
    fields = {
        "type": "submission.published",
        "repo_namespace": repo_namespace,
        "repo_name": repo_name,
        "revision": revision,
        "config_template": config_template,
        "competition_id": competition_id,
        "hotkey": key.hotkey,
        "block": block,
        "hash": hash_override
        or submission_hash(repo_namespace, repo_name, config_template, key.hotkey),
    }
    event = SubmissionPublished(**fields, signature=sign(key.private_key, fields))
    return new_envelope(
        event, key=key.hotkey, producer=PRODUCER_NAME, event_id=_event_id(event.signature)
    )


def _event_id(signature: str) -> str:
    """Ed25519 signatures are deterministic, so the same signed event always has the same id.

    Publishing the same registration or submission twice is then a no-op downstream.
    """
    return derived_event_id(signature, "miner")


def publish(settings: KafkaSettings, topic: str, envelopes: list[Envelope]) -> None:
    """Send envelopes and wait for the broker; raises ``DeliveryError`` with its reason."""
    with EventProducer(settings) as producer:
        for envelope in envelopes:
            producer.send(topic, envelope)
        producer.flush()
