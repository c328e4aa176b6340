"""The sink's consumer loop: Kafka (read_committed) → PostgreSQL, offsets after the commit."""

from __future__ import annotations

import logging
import threading
import time

from confluent_kafka import Consumer, KafkaException
from prometheus_client import CollectorRegistry, start_http_server

from producers.producer import EventProducer
from schemas.codec import MAX_DEAD_LETTER_BYTES, MAX_EVENT_BYTES, dead_letter, decode
from schemas.envelope import Envelope
from schemas.exceptions import DecodeError
from sinks.metrics import SinkMetrics
from sinks.postgres import PostgresSink
from speechstream.settings import DatabaseSettings, KafkaSettings, SinkSettings

log = logging.getLogger(__name__)
CONSUMER_NAME = "speechstream-sink"


def sink_topics(kafka: KafkaSettings) -> list[str]:
    """Every topic the sink materializes."""
    t = kafka.topics
    return [t.miners, t.rejected, t.evaluation_requests, t.evaluation_status, t.scores,
            t.deadletter]


def run_sink(
    kafka: KafkaSettings,
    database: DatabaseSettings,
    settings: SinkSettings,
    *,
    stop: threading.Event,
    metrics: SinkMetrics | None = None,
    until_caught_up: bool = False,
) -> int:
    """Consume and write batches until ``stop`` is set (or, if asked, the topics are drained).

    Returns the number of events written. Offsets are committed synchronously after each
    database transaction, so a crash replays at most the last batch (idempotently).
    """
    registry = CollectorRegistry()
    metrics = metrics or SinkMetrics.create(registry)
    if settings.metrics_port:
        start_http_server(settings.metrics_port, registry=registry)
    consumer = Consumer(kafka.to_librdkafka(**{
        "group.id": settings.group_id,
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": until_caught_up,
    }))
    sink = PostgresSink(database.conninfo)
    dlq = EventProducer(kafka).start()
    written = 0
    try:
        sink.setup()
        consumer.subscribe(sink_topics(kafka))
        eof: set[tuple[str, int]] = set()
        deadletter_topic = kafka.topics.deadletter
        while not stop.is_set():
            messages = consumer.consume(settings.batch_size, settings.batch_timeout_s)
            batch: list[Envelope] = []
            letters = 0
            for msg in messages:
                if error := msg.error():
                    if until_caught_up and error.code() == -191:  # _PARTITION_EOF
                        eof.add((msg.topic(), msg.partition()))
                        continue
                    raise KafkaException(error)
                topic = msg.topic()
                if until_caught_up:  # eof is only read when draining
                    eof.discard((topic, msg.partition()))
                on_dlq = topic == deadletter_topic
                try:
                    batch.append(decode(
                        msg.value(), topic=topic, partition=msg.partition(),
                        offset=msg.offset(),
                        max_bytes=MAX_DEAD_LETTER_BYTES if on_dlq else MAX_EVENT_BYTES,
                    ))
                except DecodeError as exc:
                    if on_dlq:
                        # Already in the dead-letter log: never dead-letter a dead letter.
                        log.error("undecodable dead letter %s@%s kept in place: %s",
                                  msg.partition(), msg.offset(), exc.reason)
                        metrics.dead_letters.inc()
                        continue
                    log.warning("dead letter %s/%s@%s: %s", topic, msg.partition(),
                                msg.offset(), exc.reason)
                    dlq.send(deadletter_topic, dead_letter(exc, consumer=CONSUMER_NAME))
                    letters += 1
            if not batch and not letters:
                if until_caught_up and _drained(consumer, eof):
                    break
                continue
            started = time.perf_counter()
            rows = sink.write_batch(batch)
            if letters:
                dlq.flush()
                metrics.dead_letters.inc(letters)
            consumer.commit(asynchronous=False)
            metrics.batch_seconds.observe(time.perf_counter() - started)
            for table, n in rows.items():
                metrics.rows.labels(table).inc(n)
            written += len(batch)
    finally:
        dlq.close()
        consumer.close()
        sink.close()
    return written


def _drained(consumer: Consumer, eof: set[tuple[str, int]]) -> bool:
    assignment = consumer.assignment()
    return bool(assignment) and all((tp.topic, tp.partition) in eof for tp in assignment)
