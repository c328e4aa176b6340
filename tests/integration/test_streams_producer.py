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


def test_flush_empties_fausts_buffer_before_it_returns(kafka_settings, tmp_path,
                                                      monkeypatch) -> None:
    # Faust's ProducerBuffer.flush gives up after 0.1 s without a send, and Faust then commits
    # offsets: the changelog records still buffered were lost to a kill after the commit.
    from faust.transport.producer import ProducerBuffer

    topic = kafka_settings.topics.evaluation_requests
    app = _app(kafka_settings, tmp_path)
    sent: list = []

    async def slow_send(buffer: ProducerBuffer, fut: object) -> None:
        # What the buffer's task does with a record a table write queued, on a busy event
        # loop: one every 0.3 s.
        await asyncio.sleep(0.3)
        sent.append(await app.producer.send(topic, f"k{len(sent)}".encode(), b"v", None,
                                            None, None))

    monkeypatch.setattr(ProducerBuffer, "_send_pending", slow_send)

    async def buffered_then_flushed() -> tuple[int, int]:
        producer = await _started(app)  # created now, over the slow send
        try:
            for i in range(5):
                producer.buffer.put(i)  # type: ignore[arg-type]
            await producer.buffer.flush()  # Faust's own: returns with records waiting
            left_by_faust = producer.buffer.size
            await producer.flush()
            return left_by_faust, producer.buffer.size
        finally:
            await producer.stop()

    left_by_faust, left = asyncio.run(buffered_then_flushed())
    assert left_by_faust > 0  # what this flush works around
    assert left == 0 and len(sent) == 5
    assert all(f.done() and f.exception() is None for f in sent)  # and delivered
