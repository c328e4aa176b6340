"""Kafka helpers the benchmarks share: produce a backlog, count records, rate from timestamps."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from devstack.processes import ServiceProcess
from speechstream.settings import KafkaSettings


def produce(kafka: KafkaSettings, topic: str, records: Iterable[Sequence[Any]]) -> float:
    """Publish ``(key, value, …)`` records as fast as the producer takes them; records/s."""
    producer = Producer(kafka.producer_config(**{
        "linger.ms": 20, "enable.idempotence": True, "batch.size": 1_000_000}))
    start = time.perf_counter()
    n = 0
    for key, value, *_ in records:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.01)
        n += 1
    if producer.flush(120):
        raise TimeoutError(f"{topic}: records still unsent after 120 s")
    return n / (time.perf_counter() - start)


def produce_paced(
    kafka: KafkaSettings, topic: str, records: Sequence[tuple[str, bytes, str]], rate: float
) -> dict[str, float]:
    """Publish ``(key, value, hash)`` records at ``rate``/s; hash → when each was handed over.

    The producer is warm before the clock starts (connected, the topic's metadata known, no
    producer id to wait for): a cold idempotent producer held its first records ~0.5 s, which
    is the bench's, not the pipeline's (docs/latency.md).
    """
    producer = Producer(kafka.producer_config(**{"linger.ms": 0, "enable.idempotence": False,
                                                 "acks": "all"}))
    producer.list_topics(topic, timeout=10)
    sent: dict[str, float] = {}
    start = time.time()
    for i, (key, value, hash_) in enumerate(records):
        target = start + i / rate
        while (now := time.time()) < target:
            producer.poll(0)
            time.sleep(min(0.001, target - now))
        producer.produce(topic, value, key)
        sent[hash_] = time.time()
    if producer.flush(60):
        raise TimeoutError(f"{topic}: paced records still unsent after 60 s")
    return sent


def count(kafka: KafkaSettings, topic: str) -> int:
    """Records in ``topic`` (high minus low watermark, summed over its partitions)."""
    consumer = Consumer(kafka.to_librdkafka(**{"group.id": "bench-count"}))
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        total = 0
        for p in meta.partitions:
            lo, hi = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total += hi - lo
        return total
    finally:
        consumer.close()


def wait_count(
    kafka: KafkaSettings, topic: str, n: int, timeout_s: float, services: Iterable[ServiceProcess]
) -> None:
    """Wait until ``topic`` holds ``n`` records; fail early when one of ``services`` died."""
    services = list(services)
    deadline = time.monotonic() + timeout_s
    while (have := count(kafka, topic)) < n:
        for service in services:
            service.check()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{topic}: {have} < {n} records after {timeout_s} s")
        time.sleep(0.5)


def rate_from_timestamps(kafka: KafkaSettings, topic: str, n: int) -> float:
    """Records/s of the first ``n`` records of ``topic``, from their broker timestamps."""
    consumer = Consumer(kafka.to_librdkafka(**{
        "group.id": f"bench-ts-{uuid.uuid4().hex[:6]}", "auto.offset.reset": "earliest",
        "enable.auto.commit": False}))
    consumer.subscribe([topic])
    stamps: list[int] = []
    try:
        while len(stamps) < n:
            stamps += [m.timestamp()[1] for m in consumer.consume(5000, timeout=2.0)
                       if not m.error()]
    finally:
        consumer.close()
    return (len(stamps) - 1) / max((max(stamps) - min(stamps)) / 1000, 1e-9)
