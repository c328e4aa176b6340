"""The sink's consumer loop: Kafka (read_committed) → PostgreSQL, offsets after the commit."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from prometheus_client import CollectorRegistry

from producers.producer import EventProducer
from schemas.codec import MAX_DEAD_LETTER_BYTES, MAX_EVENT_BYTES, dead_letter, decode
from schemas.envelope import Envelope
from schemas.exceptions import DecodeError
from sinks.base import Sink
from sinks.exceptions import SinkConsumerError
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


def consumer_config(kafka: KafkaSettings, settings: SinkSettings, *, eof: bool) -> dict:
    """The sink's consumer: read_committed, manual synchronous commits, from the earliest."""
    return kafka.to_librdkafka(**{
        "group.id": settings.group_id,
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": eof,
    })


def next_offsets(messages: Sequence[Message]) -> list[TopicPartition]:
    """The offsets to commit after ``messages``: one past the last of each partition."""
    last: dict[tuple[str, int], int] = {}
    for msg in messages:
        if msg.error() is None:
            key = (msg.topic(), msg.partition())
            last[key] = max(last.get(key, -1), msg.offset())
    return [TopicPartition(t, p, o + 1) for (t, p), o in sorted(last.items())]


def run_sink(
    kafka: KafkaSettings,
    database: DatabaseSettings,
    settings: SinkSettings,
    *,
    stop: threading.Event,
    metrics: SinkMetrics | None = None,
    until_caught_up: bool = False,
    sink: Sink | None = None,
) -> int:
    """Consume and write batches until ``stop`` is set (or, if asked, the topics are drained).

    Returns the number of events written. Per batch: decode once, send what cannot be decoded
    to the dead-letter topic, write the rest in one database transaction, flush the
    dead-letter producer, and only then commit the consumed offsets synchronously, so a
    crash replays at most the last batch (idempotently).
    """
    metrics = metrics or SinkMetrics.create(CollectorRegistry())
    if settings.metrics_port:
        metrics.serve(settings.metrics_port)
    sink = sink or PostgresSink(database.conninfo)
    consumer = Consumer(consumer_config(kafka, settings, eof=until_caught_up))
    dlq = EventProducer(kafka).start()
    written = 0
    try:
        sink.setup()
        consumer.subscribe(sink_topics(kafka))
        eof: set[tuple[str, int]] = set()
        while not stop.is_set():
            messages = consumer.consume(settings.batch_size, settings.batch_timeout_s)
            batch: list[Envelope] = []
            letters = 0
            for msg in messages:
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        eof.add((msg.topic(), msg.partition()))
                        continue
                    raise SinkConsumerError(f"consume failed: {err.str()}") from KafkaException(err)
                eof.discard((msg.topic(), msg.partition()))
                envelope = _decode(msg, kafka, dlq)
                if envelope is None:
                    letters += 1
                else:
                    batch.append(envelope)
            offsets = next_offsets(messages)
            if not offsets:
                if until_caught_up and _drained(consumer, eof):
                    break
                continue
            started = time.perf_counter()
            rows = sink.write_batch(batch)
            if letters:
                dlq.flush()
                metrics.dead_letters.inc(letters)
            try:
                consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as exc:
                # The batch is durable; it is replayed (idempotently) after a rebalance.
                raise SinkConsumerError(f"offset commit failed: {exc}") from exc
            metrics.batch_seconds.observe(time.perf_counter() - started)
            for table, n in rows.items():
                metrics.rows.labels(table).inc(n)
            written += len(batch)
    finally:
        dlq.close()
        consumer.close()
        sink.close()
    return written


def _decode(msg: Message, kafka: KafkaSettings, dlq: EventProducer) -> Envelope | None:
    """The record's envelope, or None after sending it to the dead-letter topic."""
    on_dlq = msg.topic() == kafka.topics.deadletter
    try:
        return decode(
            msg.value(), topic=msg.topic(), partition=msg.partition(), offset=msg.offset(),
            max_bytes=MAX_DEAD_LETTER_BYTES if on_dlq else MAX_EVENT_BYTES,
        )
    except DecodeError as exc:
        if on_dlq:
            # Already in the dead-letter log: never dead-letter a dead letter.
            log.error("undecodable dead letter %s@%s left in place: %s",
                      msg.partition(), msg.offset(), exc.reason)
            return None
        log.warning("dead letter %s/%s@%s: %s", msg.topic(), msg.partition(), msg.offset(),
                    exc.reason)
        dlq.send(kafka.topics.deadletter, dead_letter(exc, consumer=CONSUMER_NAME))
        return None


def _drained(consumer: Consumer, eof: set[tuple[str, int]]) -> bool:
    assignment = consumer.assignment()
    return bool(assignment) and all((tp.topic, tp.partition) in eof for tp in assignment)
