"""A consumer on a backlog holds what it fetched ahead: 64 MiB by default, 2 MiB with
``SMALL_PREFETCH`` (the evaluators', auditors' and log readers' consumers)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from confluent_kafka import Producer

from speechstream.settings import KafkaSettings

pytestmark = pytest.mark.integration

RECORDS = 24_000
RECORD_BYTES = 2048  # 47 MiB of backlog, a score's size

HOLD = """
import json, sys, time
from confluent_kafka import Consumer
from speechstream.kafka.consumer import SMALL_PREFETCH
from speechstream.settings import KafkaSettings

def rss_kib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))

kafka = KafkaSettings()
extra = dict(SMALL_PREFETCH) if sys.argv[1] == "small" else {}
consumer = Consumer(kafka.to_librdkafka(**{"group.id": sys.argv[2], "enable.auto.commit": False,
                                           "auto.offset.reset": "earliest"}, **extra))
consumer.subscribe([sys.argv[3]])
before = rss_kib()
while (msg := consumer.poll(1.0)) is None or msg.error():
    pass
time.sleep(4)  # long work on the first record; librdkafka fetches meanwhile
print(json.dumps({"grew_mib": (rss_kib() - before) / 1024}))
consumer.close()
"""


def _held_mib(kafka: KafkaSettings, prefetch: str, topic: str, group: str) -> float:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers}
    out = subprocess.run([sys.executable, "-c", HOLD, prefetch, group, topic], env=env,
                         capture_output=True, text=True, timeout=120, check=True)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["grew_mib"])


def test_a_consumer_on_a_backlog_holds_2_mib_of_it_not_64(
        kafka_settings: KafkaSettings, group_id: str) -> None:
    topic = kafka_settings.topics.scores
    producer = Producer(kafka_settings.producer_config(**{"linger.ms": 50}))
    value = b"x" * RECORD_BYTES
    for i in range(RECORDS):
        while True:
            try:
                producer.produce(topic, value, str(i).encode())
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(60) == 0
    default = _held_mib(kafka_settings, "default", topic, f"{group_id}-default")
    small = _held_mib(kafka_settings, "small", topic, f"{group_id}-small")
    print(f"held: default {default:.1f} MiB, small {small:.1f} MiB")
    assert default > 30, f"the default prefetch held only {default:.1f} MiB"
    assert small < 8, f"SMALL_PREFETCH held {small:.1f} MiB (the default: {default:.1f})"
