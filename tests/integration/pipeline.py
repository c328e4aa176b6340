"""Test support: run speechstream services against the test's topics and database."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka import Consumer, TopicPartition

from devstack.processes import ServiceProcess
from schemas.codec import MAX_DEAD_LETTER_BYTES, decode, encode
from schemas.envelope import Envelope
from speechstream.kafka.producer import EventProducer
from speechstream.settings import KafkaSettings

REPO_ROOT = Path(__file__).resolve().parents[2]


class Pipeline:
    """Services, CLI calls, topic reads and database queries for one test."""

    def __init__(self, kafka: KafkaSettings, conninfo: str, workdir: Path) -> None:
        self.kafka = kafka
        self.conninfo = conninfo
        self.workdir = workdir
        self.env = {
            "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "SPEECHSTREAM_TOPIC_PREFIX": kafka.topic_prefix,
            "DATABASE_URL": conninfo,
            "SPEECHSTREAM_STREAMS_WEB_ENABLED": "false",
            "SPEECHSTREAM_STREAMS_DATA_DIR": str(workdir / "streams"),
            "SPEECHSTREAM_SINK_BATCH_TIMEOUT_S": "0.1",
            # Groups and transactional ids of their own: tests share one broker.
            "SPEECHSTREAM_SINK_GROUP_ID": f"{kafka.topic_prefix}sink",
            "SPEECHSTREAM_EVALUATOR_GROUP_ID": f"{kafka.topic_prefix}evaluators",
            "PYTHONPATH": str(REPO_ROOT),
        }
        self.services: list[ServiceProcess] = []

    def start(self, name: str, args: list[str], **extra_env: str) -> ServiceProcess:
        """Start ``speechstream <args>`` as a child process."""
        log = self.workdir / "logs" / f"{name}-{len(self.services)}.log"
        service = ServiceProcess(name, args, log, {**self.env, **extra_env}).start()
        self.services.append(service)
        return service

    def cli(self, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        """Run one ``speechstream`` command and return its result."""
        return subprocess.run(
            [sys.executable, "-m", "cli", *args], capture_output=True, text=True,
            env={**os.environ, **self.env, **extra_env}, cwd=REPO_ROOT, timeout=120,
            check=False,
        )

    def send(self, topic: str, *envelopes: Envelope) -> None:
        """Publish envelopes and wait for the broker."""
        with EventProducer(self.kafka) as producer:
            for env in envelopes:
                producer.send(topic, env)
            producer.flush()

    def send_raw(self, topic: str, value: bytes, key: str | None = None) -> None:
        """Publish bytes no schema allows."""
        with EventProducer(self.kafka) as producer:
            producer.send_raw(topic, value, key=key)
            producer.flush()

    def ids_by_hash(self, topic: str, n: int, *, status: str | None = None
                    ) -> dict[str, set[str]]:
        """hash → the event ids of the first ``n`` events of ``topic`` about it (of evaluation
        statuses: only those with ``status``)."""
        ids: dict[str, set[str]] = defaultdict(set)
        for env in self.read(topic, n):
            if status is None or env.payload.status == status:
                ids[env.payload.hash].add(env.event_id)
        return dict(ids)

    def read(
        self, topic: str, n: int, *, timeout_s: float = 60.0, committed: bool = True
    ) -> list[Envelope]:
        """At least ``n`` envelopes of ``topic`` from its start (or fail after ``timeout_s``)."""
        consumer = Consumer(self.kafka.to_librdkafka(**{
            "group.id": f"reader-{uuid.uuid4().hex[:8]}", "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed" if committed else "read_uncommitted",
        }))
        consumer.subscribe([topic])
        found: list[Envelope] = []
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                for msg in consumer.consume(500, timeout=0.5):
                    if msg.error():
                        continue
                    try:
                        found.append(decode(msg.value(), max_bytes=MAX_DEAD_LETTER_BYTES))
                    except ValueError:
                        continue
                if len(found) >= n:
                    # Drain what else is there, so tests can assert on exact counts.
                    for msg in consumer.consume(500, timeout=1.0):
                        if not msg.error():
                            found.append(decode(msg.value(), max_bytes=MAX_DEAD_LETTER_BYTES))
                    return found
                self.check()
        finally:
            consumer.close()
        raise AssertionError(f"{topic}: {len(found)} < {n} events after {timeout_s}s")

    def count(self, topic: str) -> int:
        """Records in ``topic`` (sum of the partitions' high watermarks)."""
        consumer = Consumer(self.kafka.to_librdkafka(**{"group.id": "counter"}))
        try:
            meta = consumer.list_topics(topic, timeout=10).topics[topic]
            return sum(
                consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in meta.partitions
            )
        finally:
            consumer.close()

    def query(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of one SQL query on the test's database."""
        with psycopg.connect(self.conninfo) as conn:
            return conn.execute(statement, params).fetchall()

    def wait(self, condition: Callable[[], bool], what: str, timeout_s: float = 90.0) -> None:
        """Poll ``condition`` until it holds; fail with the service logs otherwise."""
        deadline = time.monotonic() + timeout_s
        while not condition():
            self.check()
            if time.monotonic() > deadline:
                logs = "\n".join(
                    f"--- {s.log_path}\n{s.log_path.read_text(errors='replace')[-1500:]}"
                    for s in self.services
                )
                raise AssertionError(f"timed out waiting for {what}\n{logs}")
            time.sleep(0.3)

    def check(self) -> None:
        """Fail at once if a service died."""
        for service in self.services:
            if service.process is not None and service.process.returncode is None:
                service.check()

    def stop(self) -> None:
        """Stop every service."""
        for service in reversed(self.services):
            service.stop()


def raw_envelope(env: Envelope) -> bytes:
    """The wire bytes of an envelope (for tests that then break them)."""
    return encode(env)
