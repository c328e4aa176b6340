"""Consumer lag at scrape time: the end a consumer's last fetch saw minus its position, per
partition it owns, labelled with its name and group; a partition not fetched yet is left out."""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, TopicPartition
from prometheus_client import CollectorRegistry, generate_latest

from speechstream.kafka.consumer import EventConsumer
from speechstream.kafka.lag import AGE_METRIC, Progress, export_lag, lag_of
from speechstream.settings import KafkaSettings


class Fetched:
    """A consumer client that owns three partitions: one read to 40 of 100, one read to its
    end, one not fetched from yet."""

    closed = False

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition("t.scores", p) for p in range(3)]

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        offsets = {0: 40, 1: 7, 2: -1001}
        return [TopicPartition(tp.topic, tp.partition, offsets[tp.partition])
                for tp in partitions]

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool = False) -> tuple[int, int]:
        assert cached, "a scrape never asks the broker"
        if self.closed:
            raise RuntimeError("Consumer closed")
        return {0: (0, 100), 1: (0, 7), 2: (-1001, -1001)}[tp.partition]


def _consumer(client: Any) -> EventConsumer:
    return EventConsumer(KafkaSettings(SPEECHSTREAM_TOPIC_PREFIX="t."), name="speechstream-sink",
                         topics=["t.scores"], config={"group.id": "t.sink"}, client=client)


def test_lag_is_the_fetched_end_minus_the_position_of_each_partition_fetched() -> None:
    consumer = _consumer(Fetched())
    assert consumer.lag() == []  # not computed yet: the polling thread does it
    consumer.refresh_lag()
    assert consumer.lag() == [("t.scores", 0, 60), ("t.scores", 1, 0)]
    assert list(lag_of([consumer])) == [("speechstream-sink", "t.sink", "t.scores", 0, 60),
                                        ("speechstream-sink", "t.sink", "t.scores", 1, 0)]


def test_a_closed_or_unstarted_consumer_has_no_lag_to_tell() -> None:
    client = Fetched()
    client.closed = True
    closed = _consumer(client)
    closed.refresh_lag()
    assert closed.lag() == []
    assert EventConsumer(KafkaSettings(), name="x", topics=["t"], config={}).lag() == []


class Service:
    def __init__(self, consumer: EventConsumer) -> None:
        self._consumer = consumer

    def lag(self) -> Any:
        return lag_of([self._consumer])

    def consumers(self) -> list[EventConsumer]:
        return [self._consumer]


def test_a_service_with_consumers_exports_their_lag_and_one_without_does_not() -> None:
    registry = CollectorRegistry()
    consumer = _consumer(Fetched())
    consumer.refresh_lag()
    assert export_lag(registry, Service(consumer))
    text = generate_latest(registry).decode()
    assert ('speechstream_consumer_lag{consumer="speechstream-sink",group="t.sink",'
            'partition="0",topic="t.scores"} 60.0') in text
    assert 'partition="2"' not in text
    assert not export_lag(CollectorRegistry(), object())


def test_progress_stalls_only_on_lag_grown_over_the_window_with_nothing_committed() -> None:
    progress = Progress(600, now=0.0)
    assert progress.stalled(5, now=0.0) is None
    assert progress.stalled(50, now=300.0) is None  # grown, but not for a whole window
    reason = progress.stalled(90, now=700.0)
    assert reason is not None and reason.startswith("90 records waiting, up from 5 700 s ago")
    assert "nothing committed for 700 s" in reason
    progress.committed(now=710.0)
    assert progress.stalled(95, now=720.0) is None  # a commit is progress


def test_a_backlog_worked_off_or_standing_still_is_not_a_stall() -> None:
    shrinking = Progress(600, now=0.0)
    for t, lag in ((0.0, 900), (400.0, 700), (800.0, 500), (1200.0, 300)):
        assert shrinking.stalled(lag, now=t) is None  # lag shrinking: no commit needed to tell
    idle = Progress(600, now=0.0)
    for t in (0.0, 400.0, 800.0, 1200.0):
        assert idle.stalled(0, now=t) is None  # nothing to take, nothing to commit


def test_a_consumer_watched_for_progress_reports_its_stall() -> None:
    consumer = EventConsumer(KafkaSettings(SPEECHSTREAM_TOPIC_PREFIX="t."), name="s",
                             topics=["t.scores"], config={"group.id": "g"}, client=Fetched(),
                             progress_window_s=600)
    assert consumer.progress is not None
    consumer.progress = Progress(600, now=0.0)
    consumer.progress.stalled(10, now=0.0)
    consumer.progress._committed_at = -1e9  # noqa: SLF001 - committed long ago
    consumer.refresh_lag()
    assert consumer.stalled() is not None  # 60 records now (Fetched), up from 10
    consumer.note_commit()
    assert consumer.stalled() is None
    unwatched = EventConsumer(KafkaSettings(), name="s", topics=["t"], config={},
                              client=Fetched())
    assert unwatched.progress is None and unwatched.stalled() is None


class Stamped:
    """A record appended to the broker at a given time (ms)."""

    def __init__(self, stamp_ms: int, offset: int) -> None:
        self._stamp, self._offset = stamp_ms, offset

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return "t.scores"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return (TIMESTAMP_LOG_APPEND_TIME, self._stamp)

    def value(self) -> bytes:
        return b"not an event"

    def key(self) -> bytes:
        return b"k"


def test_the_age_of_each_record_taken_is_observed_by_topic() -> None:
    consumer = _consumer(Fetched())
    registry = CollectorRegistry()
    assert export_lag(registry, Service(consumer))
    now_ms = int(time.time() * 1000)
    consumer.decode([Stamped(now_ms - 2_000, 0), Stamped(now_ms - 40_000, 1)])  # type: ignore[list-item]
    labels = {"consumer": "speechstream-sink", "topic": "t.scores"}
    assert registry.get_sample_value(f"{AGE_METRIC}_count", labels) == 2
    assert registry.get_sample_value(f"{AGE_METRIC}_bucket", {**labels, "le": "5.0"}) == 1
    total = registry.get_sample_value(f"{AGE_METRIC}_sum", labels)
    assert total is not None and 41.5 < total < 45
