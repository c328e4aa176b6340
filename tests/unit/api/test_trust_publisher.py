"""The API signs what it publishes: its minerboard entries count for the sink, an unsigned
API's do not."""

from __future__ import annotations

from typing import Any

from api.models import MinerboardRequest
from api.publisher import KafkaPublisher
from schemas.codec import decode
from schemas.topics import TopicRegistry
from speechstream.kafka.producer import EventProducer
from speechstream.settings import KafkaSettings
from speechstream.trust import TrustStore
from tests.trust_support import Keys


class Recording:
    """A stand-in for the confluent producer: keeps what is produced."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes]] = []

    def produce(self, topic: str, *, value: bytes, key: Any, on_delivery: Any) -> None:
        self.records.append((topic, value))

    def poll(self, _timeout: float) -> int:
        return 0

    def flush(self, _timeout: float) -> int:
        return 0


def _publish(keys: Keys, signed: bool) -> tuple[str, bytes]:
    kafka = KafkaSettings(SPEECHSTREAM_TOPIC_PREFIX="p.")
    client = Recording()
    signer = keys.signer("api", "api") if signed else None
    producer = EventProducer(kafka, client=client, signer=signer)  # type: ignore[arg-type]
    publisher = KafkaPublisher(kafka, None, producer=producer)
    publisher.minerboard(MinerboardRequest(hash="123", uid=4, hotkey="a" * 64, block=77))
    assert len(client.records) == 1
    return client.records[0]


def test_the_apis_minerboard_entries_are_signed_and_count(tmp_path) -> None:  # noqa: ANN001
    keys = Keys.create(tmp_path)
    keys.add("api", "api")
    store = TrustStore.fixed(keys.operator.hotkey, keys.store().current,
                             registry=TopicRegistry("p."))
    topic, raw = _publish(keys, signed=True)
    assert topic == "p.minerboard"
    assert store.verify(decode(raw), raw, topic) is None
    topic, raw = _publish(keys, signed=False)
    assert store.verify(decode(raw), raw, topic) == (
        "unsigned minerboard.updated on minerboard: only a key of api or validator may say it")
