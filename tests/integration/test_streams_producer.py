"""The intake worker's producer (librdkafka under Faust) on a real broker: keys land where
aiokafka's partitioner put them, flush waits for delivery, a failed delivery fails the flush."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka.partitioner import DefaultPartitioner
from confluent_kafka import Consumer, TopicPartition
from faust.exceptions import ProducerSendError

from speechstream.settings import KafkaSettings
from streams.app import create_app
from streams.settings import StreamsSettings
from streams.transport import LibrdkafkaProducer

pytestmark = pytest.mark.integration


def _app(kafka: KafkaSettings, tmp_path, **config: object):
    app = create_app(kafka, StreamsSettings(data_dir=str(tmp_path)))
    app.librdkafka_producer_config = {**app.librdkafka_producer_config, **config}
    return app


async def _started(app) -> LibrdkafkaProducer:
    """The app's producer, created in the running loop (as in the worker) and started."""
    producer = app.producer
    assert isinstance(producer, LibrdkafkaProducer)
    await producer.start()
    return producer


def test_sends_land_on_aiokafkas_partitions_and_flush_waits_for_them(kafka_settings,
                                                                     tmp_path) -> None:
    topic = kafka_settings.topics.evaluation_requests
    app = _app(kafka_settings, tmp_path)
    keys = [f"hash-{i}".encode() for i in range(200)]

    async def send_all() -> list:
        producer = await _started(app)
        try:
            futures = [await producer.send(topic, k, b"v" + k, None, None, None) for k in keys]
            await producer.flush()
            assert all(f.done() for f in futures)  # flush returned: every one delivered
            return [f.result() for f in futures]
        finally:
            await producer.stop()

    delivered = asyncio.run(send_all())
    partitions = sorted({m.partition for m in delivered})
    assert len(partitions) > 1
    n = len(Consumer(kafka_settings.to_librdkafka(**{"group.id": "x"})).list_topics(
        topic, timeout=10).topics[topic].partitions)
    aiokafka_partition = DefaultPartitioner()
    everything = list(range(n))
    for key, meta in zip(keys, delivered, strict=True):
        assert meta.partition == aiokafka_partition(key, everything, everything)
    # What was delivered is on the broker, where the metadata says.
    consumer = Consumer(kafka_settings.to_librdkafka(**{"group.id": f"g{uuid.uuid4().hex}",
                                                        "enable.auto.commit": False}))
    first = delivered[0]
    consumer.assign([TopicPartition(topic, first.partition, first.offset)])
    record = consumer.poll(10)
    consumer.close()
    assert record is not None and record.error() is None
    assert (record.key(), record.value()) == (keys[0], b"v" + keys[0])


def test_a_failed_delivery_fails_the_flush(kafka_settings, tmp_path) -> None:
    app = _app(kafka_settings, tmp_path, **{"allow.auto.create.topics": False,
                                            "message.timeout.ms": 2000})
    missing = f"{kafka_settings.topic_prefix}missing-{uuid.uuid4().hex[:8]}"

    async def send_to_nowhere() -> None:
        producer = await _started(app)
        try:
            future = await producer.send(missing, b"k", b"v", None, None, None)
            with pytest.raises(ProducerSendError, match="not delivered"):
                await producer.flush()
            assert isinstance(future.exception(), ProducerSendError)
            await producer.flush()  # reported once: the next flush has nothing to report
        finally:
            await producer.stop()

    asyncio.run(send_to_nowhere())
