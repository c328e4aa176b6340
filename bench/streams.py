"""Validation throughput of one Faust worker: submissions/s turned into evaluation requests.

Run: ``.venv/bin/python -m bench.streams [--miners N] [--submissions N]`` against
``KAFKA_BOOTSTRAP_SERVERS`` (default: the local stack of ``speechstream dev up``). It creates
topics under a fresh prefix, starts ``speechstream streams worker`` as a child process, loads
the registry, then produces a backlog of valid submissions and reports the rate from the
broker timestamps of the routed requests (first to last).
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from bench.pipeline import data
from speechstream.services import Service
from speechstream.settings import KafkaSettings
from speechstream.topics_admin import create_topics, delete_topics


def _produce(kafka: KafkaSettings, topic: str, records: Iterable[tuple[str, bytes]]) -> None:
    producer = Producer(kafka.producer_config(**{
        "linger.ms": 20, "enable.idempotence": True, "batch.size": 1_000_000}))
    for key, value in records:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.01)
    if producer.flush(120):
        raise TimeoutError(f"{topic}: records still unsent after 120 s")


def _count(kafka: KafkaSettings, topic: str) -> int:
    consumer = Consumer(kafka.to_librdkafka(**{"group.id": "bench-streams-count"}))
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                   for p in meta.partitions)
    finally:
        consumer.close()


def _wait(kafka: KafkaSettings, topic: str, n: int, worker: Service, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while (have := _count(kafka, topic)) < n:
        worker.check()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{topic}: {have} < {n} records after {timeout_s} s")
        time.sleep(0.5)


def _rate(kafka: KafkaSettings, topic: str, n: int) -> float:
    consumer = Consumer(kafka.to_librdkafka(**{
        "group.id": f"bench-streams-{uuid.uuid4().hex[:6]}", "auto.offset.reset": "earliest",
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


def validated_per_s(kafka: KafkaSettings, n_miners: int, n_submissions: int) -> float:
    """Submissions/s one worker validates and routes, on fresh topics under ``kafka``'s broker.

    ``kafka``'s topic prefix is replaced by a fresh one; those topics are deleted afterwards.
    """
    prefix = f"{kafka.topic_prefix}bench{uuid.uuid4().hex[:6]}."
    run = kafka.model_copy(update={"topic_prefix": prefix})
    create_topics(run)
    t = run.topics
    env = {"KAFKA_BOOTSTRAP_SERVERS": run.bootstrap_servers, "SPEECHSTREAM_TOPIC_PREFIX": prefix,
           "SPEECHSTREAM_STREAMS_WEB_ENABLED": "false",
           "SPEECHSTREAM_STREAMS_DATA_DIR": f"/tmp/{prefix}streams"}
    worker = Service("streams", ["streams", "worker"], Path(f"/tmp/{prefix}streams.log"), env)
    worker.start()
    try:
        keys = data.miners(n_miners)
        _produce(run, t.registrations, data.registrations(keys))
        _wait(run, t.miners, n_miners, worker, 300)
        time.sleep(3)  # the miners agent updates its table just after the topic
        per_miner = max(1, n_submissions // n_miners)
        subs = [(k, v) for k, v, _ in data.submissions(keys, per_miner)]
        _produce(run, t.submissions, subs)
        _wait(run, t.evaluation_requests, len(subs), worker, 900)
        return _rate(run, t.evaluation_requests, len(subs))
    finally:
        worker.stop()
        delete_topics(run, [name for name, _ in t.all()])


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run the benchmark and print its figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--miners", type=int, default=5_000)
    parser.add_argument("--submissions", type=int, default=50_000)
    args = parser.parse_args(argv)
    rate = validated_per_s(KafkaSettings(), args.miners, args.submissions)
    result = {"miners": args.miners, "submissions": args.submissions,
              "validated_per_s": round(rate)}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
