"""The sink as a service: Kafka (read_committed) → PostgreSQL, offsets after the database commit.

``speechstream sink run`` runs it until stopped; ``speechstream sink rebuild`` runs it with a
fresh group until every partition is drained.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from confluent_kafka import Consumer

from sinks.base import Sink
from sinks.metrics import SinkMetrics
from speechstream.kafka.consumer import Batch, EventConsumer
from speechstream.kafka.producer import EventProducer
from speechstream.monitoring import Health
from speechstream.settings import KafkaSettings, SinkSettings

log = logging.getLogger(__name__)
CONSUMER_NAME = "speechstream-sink"


def sink_topics(kafka: KafkaSettings) -> list[str]:
    """Every topic the sink materializes."""
    t = kafka.topics
    return [t.miners, t.rejected, t.evaluation_requests, t.evaluation_status, t.scores,
            t.audits, t.weights, t.minerboard, t.deadletter]


def consumer_overrides(settings: SinkSettings, *, until_caught_up: bool) -> dict[str, Any]:
    """The sink consumer's configuration: read_committed, offsets committed by hand."""
    return {
        "group.id": settings.group_id,
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": until_caught_up,
    }


class SinkService:
    """Consumes the registry's topics and writes them through ``writer`` in batches.

    Each batch is one database transaction; dead letters of undecodable records are delivered
    before it commits, and the offsets are committed synchronously after it, so a crash
    replays at most the last batch (idempotently). With ``until_caught_up`` it stops by itself
    once every assigned partition is drained (a rebuild). ``consumer`` and ``dead_letters``
    replace the confluent consumer and the dead-letter producer (tests).
    """

    name = "sink"

    def __init__(
        self,
        kafka: KafkaSettings,
        settings: SinkSettings,
        writer: Sink,
        *,
        metrics: SinkMetrics,
        until_caught_up: bool = False,
        consumer: Consumer | None = None,
        dead_letters: EventProducer | None = None,
    ) -> None:
        self._kafka = kafka
        self._settings = settings
        self._writer = writer
        self._metrics = metrics
        self._until_caught_up = until_caught_up
        self._consumer = EventConsumer(
            kafka, name=CONSUMER_NAME, topics=sink_topics(kafka),
            config=consumer_overrides(settings, until_caught_up=until_caught_up),
            client=consumer, logger=log,
        )
        self._dead_letters = dead_letters or EventProducer(kafka)
        self._last_batch: float | None = None
        self._started = False
        self.written = 0
        """Events written so far."""

    def start(self) -> None:
        """Set the writer up (connect, check the schema), then subscribe."""
        self._writer.setup()
        self._dead_letters.start()
        self._consumer.start()
        self._started = True

    def run(self, stop: threading.Event) -> None:
        """Consume and write batches until ``stop`` is set (or the topics are drained)."""
        size, timeout = self._settings.batch_size, self._settings.batch_timeout_s
        while not stop.is_set():
            # No local holds a batch across polls: a poll decodes a whole new batch, and the
            # last one kept alive meanwhile would double what each full GC pass walks.
            if not self._write(self._consumer.poll(size, timeout)) and self._until_caught_up \
                    and self._consumer.drained():
                return

    def _write(self, batch: Batch) -> bool:
        """Write one batch and commit its offsets; False when there was nothing to write."""
        self._last_batch = time.monotonic()
        for msg, letter in batch.dead_letters:
            self._dead_letters.send(self._kafka.topics.deadletter, letter, key=msg.key())
        if batch.kept:  # undecodable dead letters, kept in place
            self._metrics.dead_letters.inc(batch.kept)
        letters = len(batch.dead_letters)
        if not batch.envelopes and not letters:
            return False
        started = time.perf_counter()
        rows = self._writer.write_batch(batch.envelopes)
        if letters:
            self._dead_letters.flush()
            self._metrics.dead_letters.inc(letters)
        self._consumer.commit()
        self._metrics.batch_seconds.observe(time.perf_counter() - started)
        for table, n in rows.items():
            self._metrics.rows.labels(table).inc(n)
        self.written += len(batch.envelopes)
        return True

    def close(self) -> None:
        """Close the producer, the consumer and the writer."""
        try:
            self._dead_letters.close()
        finally:
            try:
                self._consumer.close()
            finally:
                self._writer.close()

    def health(self) -> Health:
        """Healthy while it polls: an empty poll returns within the batch timeout."""
        if not self._started or self._last_batch is None:
            return Health(False, "starting")
        age = time.monotonic() - self._last_batch
        healthy = age < max(30.0, 10 * self._settings.batch_timeout_s)
        return Health(healthy, "ok" if healthy else "stalled",
                      {"last_poll_age_s": round(age, 3), "written": self.written})
