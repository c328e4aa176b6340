"""Ceilings measured beside the pipeline: a raw confluent-kafka consume→produce passthrough, and
Faust's own (a trivial agent, ``bench.pipeline.faust_ceiling``, in a process of its own)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

from confluent_kafka import Consumer, Producer

from speechstream.settings import KafkaSettings


def passthrough_per_s(kafka: KafkaSettings, source: str, sink_topic: str, expected: int) -> float:
    """Messages/s a single Python process moves from ``source`` to ``sink_topic`` (no parsing)."""
    consumer = Consumer(
        kafka.to_librdkafka(
            **{
                "group.id": f"bench-passthrough-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
    )
    producer = Producer(kafka.producer_config(**{"linger.ms": 5, "enable.idempotence": True}))
    consumer.subscribe([source])
    moved = 0
    started: float | None = None
    try:
        while moved < expected:
            batch = consumer.consume(1000, timeout=1.0)
            if batch and started is None:
                started = time.perf_counter()
            for msg in batch:
                if msg.error():
                    continue
                while True:
                    try:
                        producer.produce(sink_topic, msg.value(), msg.key())
                        break
                    except BufferError:
                        producer.poll(0.01)
                moved += 1
            producer.poll(0)
        producer.flush(60)
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    assert started is not None
    return moved / (time.perf_counter() - started)


def faust_ceilings(env: dict[str, str], source: str, n: int) -> dict[str, int | None]:
    """Records/s of a trivial Faust agent over the first ``n`` records of ``source``: consume
    only, consume and ``await`` each send, ``take(500)`` and send each batch, and two agents
    in a row each consuming and sending (``bench.pipeline.faust_ceiling``)."""
    from bench.pipeline.faust_ceiling import MODES

    rates: dict[str, int | None] = {}
    for mode in MODES:
        done = subprocess.run(
            [sys.executable, "-m", "bench.pipeline.faust_ceiling", mode, source, str(n)],
            env={**os.environ, **env}, capture_output=True, text=True, timeout=600, check=True,
        )
        # The line may follow a terminal's cursor codes (Faust's spinner).
        last = done.stdout[done.stdout.rindex('{"mode"'):].splitlines()[0]
        rates[mode] = json.loads(last)["per_s"]
    return rates
