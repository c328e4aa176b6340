"""Moving the intake worker's state to another Faust app id (``speechstream streams move-state``).

The app id names the worker's consumer group (``<prefix><app id>``) and its tables' changelog
topics; a worker under a new id would start with empty tables and re-read its inputs from the
start. Moving copies, with both workers stopped, every changelog record to the same partition
(same key, value and headers) of the new changelog, and the old group's committed offsets to
the new group: the new worker restores the tables and resumes where the old one stopped.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from schemas.topics import INTAKE_TABLES, changelog_specs
from speechstream.kafka.admin import admin_client, create_topics
from speechstream.settings import KafkaSettings
from streams.exceptions import StateMoveError

log = logging.getLogger(__name__)
TIMEOUT_S = 30.0
WATERMARK_TRIES = 10
WATERMARK_RETRY_S = 0.5
# A topic created a moment ago: its partitions' leaders are not known everywhere yet.
_NOT_READY = frozenset({KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                        KafkaError.UNKNOWN_TOPIC_OR_PART})
_IDLE = (ConsumerGroupState.EMPTY, ConsumerGroupState.DEAD)


@dataclass(frozen=True)
class MoveReport:
    """What a move copied: records per changelog topic (new names), and group offsets."""

    records: dict[str, int]
    offsets: int


def group_of(kafka: KafkaSettings, app_id: str) -> str:
    """The consumer group of the worker ``app_id`` (Faust uses the prefixed app id)."""
    return f"{kafka.topic_prefix}{app_id}"


def move_state(kafka: KafkaSettings, old_app: str, new_app: str) -> MoveReport:
    """Copy the changelogs and committed offsets of ``old_app`` to ``new_app``.

    Refuses (:class:`StateMoveError`) while a worker of either id is running, when the new id
    already has committed offsets or changelog records, and when the old id has neither.
    """
    if old_app == new_app:
        raise StateMoveError(f"--from and the configured app id are both {old_app!r}")
    old_group, new_group = group_of(kafka, old_app), group_of(kafka, new_app)
    admin = admin_client(kafka)
    for group in (old_group, new_group):
        state = _group_state(admin, group)
        if state not in _IDLE:
            raise StateMoveError(
                f"consumer group {group} is {state.name}: stop every intake worker of it first"
            )
    if _committed(admin, new_group):
        raise StateMoveError(f"consumer group {new_group} already has committed offsets; "
                             "the new app id is in use, nothing was moved")
    names = {t: (kafka.topics.changelog(old_app, t), kafka.topics.changelog(new_app, t))
             for t in INTAKE_TABLES}
    create_topics(kafka, changelog_specs(new_app))
    if any(_record_count(kafka, new) for _, new in names.values()):
        raise StateMoveError(f"the changelogs of {new_app} already hold records; "
                             "nothing was moved")
    offsets = _committed(admin, old_group)
    if not offsets and not any(_record_count(kafka, old) for old, _ in names.values()):
        raise StateMoveError(f"{old_app} has no committed offsets and no changelog records "
                             f"under the prefix {kafka.topic_prefix!r}: nothing to move")
    records = {new: _copy_topic(kafka, old, new) for old, new in names.values()}
    renamed = {old: new for old, new in names.values()}
    moved = [TopicPartition(renamed.get(tp.topic, tp.topic), tp.partition, tp.offset)
             for tp in offsets]
    if moved:
        request = [ConsumerGroupTopicPartitions(new_group, moved)]
        try:
            admin.alter_consumer_group_offsets(request)[new_group].result(timeout=TIMEOUT_S)
        except KafkaException as exc:
            raise StateMoveError(f"committing the offsets of {new_group} failed: "
                                 f"{exc.args[0]}") from exc
    log.info("moved %s → %s: %s records, %d offsets", old_app, new_app,
             sum(records.values()), len(moved))
    return MoveReport(records, len(moved))


def _group_state(admin: object, group: str) -> ConsumerGroupState:
    try:
        found = admin.describe_consumer_groups([group])[group].result(timeout=TIMEOUT_S)
    except KafkaException as exc:
        raise StateMoveError(f"cannot describe consumer group {group}: {exc.args[0]}") from exc
    return found.state


def _committed(admin: object, group: str) -> list[TopicPartition]:
    request = [ConsumerGroupTopicPartitions(group)]
    try:
        found = admin.list_consumer_group_offsets(request)[group].result(timeout=TIMEOUT_S)
    except KafkaException as exc:
        raise StateMoveError(f"cannot read the offsets of {group}: {exc.args[0]}") from exc
    return [tp for tp in found.topic_partitions or [] if tp.offset >= 0]


def _record_count(kafka: KafkaSettings, topic: str) -> int:
    """Records between each partition's low and high watermark."""
    consumer = Consumer(kafka.to_librdkafka(**{"group.id": "speechstream-move-state"}))
    try:
        return sum(hi - lo for lo, hi in _watermarks(consumer, topic).values())
    finally:
        consumer.close()


def _watermarks(consumer: Consumer, topic: str) -> dict[int, tuple[int, int]]:
    meta = consumer.list_topics(topic, timeout=TIMEOUT_S).topics.get(topic)
    if meta is None or meta.error is not None:
        return {}
    return {p: _watermark(consumer, TopicPartition(topic, p)) for p in meta.partitions}


def _watermark(consumer: Consumer, tp: TopicPartition) -> tuple[int, int]:
    """One partition's watermarks, asked again while the broker's answer is retriable (a topic
    created a moment ago: its leader not known everywhere yet)."""
    for attempt in range(WATERMARK_TRIES):
        try:
            return consumer.get_watermark_offsets(tp, timeout=TIMEOUT_S)
        except KafkaException as exc:
            error = exc.args[0]
            if not (error.retriable() or error.code() in _NOT_READY) \
                    or attempt == WATERMARK_TRIES - 1:
                raise
            log.info("watermarks of %s/%s: %s; asking again", tp.topic, tp.partition,
                     error.str())
            time.sleep(WATERMARK_RETRY_S)
    raise AssertionError("unreachable")


def _copy_topic(kafka: KafkaSettings, source: str, target: str) -> int:
    """Copy every record of ``source`` to the same partition of ``target``; the count."""
    consumer = Consumer(kafka.to_librdkafka(**{
        "group.id": "speechstream-move-state", "enable.auto.commit": False,
    }))
    producer = Producer(kafka.producer_config(**{"enable.idempotence": True, "acks": "all"}))
    failures: list[str] = []

    def delivered(err: object, msg: object) -> None:
        if err is not None:
            failures.append(str(err))

    copied = 0
    try:
        ends = {p: hi for p, (lo, hi) in _watermarks(consumer, source).items() if hi > lo}
        consumer.assign([TopicPartition(source, p, OFFSET_BEGINNING) for p in ends])
        done: set[int] = set()
        while len(done) < len(ends):
            for msg in consumer.consume(1000, timeout=1.0):
                if msg.error():
                    raise StateMoveError(f"reading {source} failed: {msg.error()}")
                partition = msg.partition()
                producer.produce(target, msg.value(), msg.key(), partition=partition,
                                 headers=msg.headers(), on_delivery=delivered)
                producer.poll(0)
                copied += 1
                if msg.offset() + 1 >= ends[partition]:
                    done.add(partition)
        if producer.flush(TIMEOUT_S) or failures:
            raise StateMoveError(f"copying {source} to {target} failed: "
                                 f"{failures[:3] or 'not delivered in time'}")
    finally:
        consumer.close()
    return copied
