"""The miner's side: build signed registration and submission events and publish them."""

from __future__ import annotations

from schemas.envelope import Envelope
from schemas.events import MinerRegistered, SubmissionPublished
from schemas.signed import signed_envelope, submission_fields
from speechstream.kafka.producer import EventProducer
from speechstream.keys import Hotkey
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
    return signed_envelope(MinerRegistered, fields, key.private_key, key=str(uid),
                           producer=PRODUCER_NAME, signer="miner")


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
    fields = submission_fields(
        "submission.published", repo_namespace=repo_namespace, repo_name=repo_name,
        hotkey=key.hotkey, block=block, revision=revision, config_template=config_template,
        competition_id=competition_id, hash_override=hash_override,
    )
    return signed_envelope(SubmissionPublished, fields, key.private_key, key=key.hotkey,
                           producer=PRODUCER_NAME, signer="miner")


def publish(settings: KafkaSettings, topic: str, envelopes: list[Envelope]) -> None:
    """Send envelopes and wait for the broker; raises ``DeliveryError`` with its reason."""
    with EventProducer(settings) as producer:
        for envelope in envelopes:
            producer.send(topic, envelope)
        producer.flush()
