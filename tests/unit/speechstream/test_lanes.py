"""The two lanes of one consumer: the second is read only while the first has nothing waiting."""

from __future__ import annotations

from dataclasses import dataclass, field

from confluent_kafka import TopicPartition

from speechstream.kafka.lanes import Lanes

NEW, RESCORE = "t.new", "t.rescore"


@dataclass
class FakeConsumer:
    """Positions, cached high watermarks, committed offsets and pause state of a consumer."""

    positions: dict[tuple[str, int], int] = field(default_factory=dict)
    highs: dict[tuple[str, int], int] = field(default_factory=dict)
    committed_at: dict[tuple[str, int], int] = field(default_factory=dict)
    assigned: set[tuple[str, int]] = field(default_factory=set)
    paused: set[tuple[str, int]] = field(default_factory=set)
    committed_calls: int = 0

    def incremental_assign(self, partitions: list[TopicPartition]) -> None:
        self.assigned |= {(tp.topic, tp.partition) for tp in partitions}

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.assigned = {(tp.topic, tp.partition) for tp in partitions}

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.paused |= {(tp.topic, tp.partition) for tp in partitions}

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.paused -= {(tp.topic, tp.partition) for tp in partitions}

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition,
                               self.positions.get((tp.topic, tp.partition), -1001))
                for tp in partitions]

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool = False) -> tuple[int, int]:
        assert cached, "the lanes read cached watermarks only"
        return 0, self.highs.get((tp.topic, tp.partition), -1001)

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        self.committed_calls += 1
        return [TopicPartition(tp.topic, tp.partition,
                               self.committed_at.get((tp.topic, tp.partition), -1001))
                for tp in partitions]


def _assign(lanes: Lanes, consumer: FakeConsumer) -> None:
    lanes.on_assign(consumer, [TopicPartition(t, p) for t in (NEW, RESCORE) for p in (0, 1)])  # type: ignore[arg-type]


def test_the_second_lane_is_paused_on_assignment_and_opens_when_the_first_is_read() -> None:
    consumer, lanes = FakeConsumer(), Lanes([NEW], [RESCORE], cooperative=True)
    _assign(lanes, consumer)
    assert consumer.assigned == {(t, p) for t in (NEW, RESCORE) for p in (0, 1)}
    assert consumer.paused == {(RESCORE, 0), (RESCORE, 1)}
    # Not fetched yet: unknown, so the second lane stays closed.
    assert lanes.steer(consumer) is False
    consumer.highs.update({(NEW, 0): 5, (NEW, 1): 3})
    consumer.positions.update({(NEW, 0): 5, (NEW, 1): 2})
    assert lanes.steer(consumer) is False  # one record waits on partition 1
    consumer.positions[(NEW, 1)] = 3
    assert lanes.steer(consumer) is True
    assert consumer.paused == set()
    # A new submission arrives: the second lane closes before the next poll.
    consumer.highs[(NEW, 0)] = 6
    assert lanes.steer(consumer) is False
    assert consumer.paused == {(RESCORE, 0), (RESCORE, 1)}


def test_a_partition_not_read_yet_is_compared_with_its_committed_offset_once() -> None:
    consumer, lanes = FakeConsumer(), Lanes([NEW], [RESCORE], cooperative=True)
    _assign(lanes, consumer)
    consumer.highs.update({(NEW, 0): 4, (NEW, 1): 0})
    consumer.committed_at[(NEW, 0)] = 4  # read to its end by an earlier evaluator
    assert lanes.steer(consumer) is True
    assert lanes.steer(consumer) is True
    assert consumer.committed_calls == 2  # once per partition, then remembered
    consumer.committed_at[(NEW, 0)] = 3  # a stale answer is not asked again …
    consumer.highs[(NEW, 0)] = 5  # … but a new record is seen
    assert lanes.steer(consumer) is False


def test_revoked_partitions_are_forgotten() -> None:
    consumer, lanes = FakeConsumer(), Lanes([NEW], [RESCORE], cooperative=True)
    _assign(lanes, consumer)
    consumer.highs.update({(NEW, 0): 9, (NEW, 1): 0})
    consumer.committed_at.update({(NEW, 1): 0})
    assert lanes.steer(consumer) is False  # partition 0 has 9 waiting
    lanes.on_revoke(consumer, [TopicPartition(NEW, 0)])  # type: ignore[arg-type]
    assert lanes.steer(consumer) is True
