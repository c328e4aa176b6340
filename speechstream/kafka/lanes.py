"""Two lanes of one consumer: the second lane is read only while the first has nothing waiting.

An evaluator reads new submissions (the first lane) and re-scores (the second) with one
consumer in one group. The second lane's partitions are paused as they are assigned, resumed
when every assigned partition of the first lane is read to its end, and paused again as soon
as the first lane has something waiting. No busy polling: the consumer's poll waits as
before, and pausing a partition drops what was fetched of it ahead (librdkafka), so a
re-score fetched early never overtakes a new submission; a resumed partition goes on from the
last record taken.

Whether the first lane has something waiting is read from the high watermarks the broker
returns with every fetch (the first lane is never paused, so they stay fresh) against the
consumer's positions; a partition not read yet is compared with its committed offset.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from confluent_kafka import Consumer, KafkaException, TopicPartition

TIMEOUT_S = 10.0
Key = tuple[str, int]


class Lanes:
    """Pauses and resumes the second lane of ``consumer`` after the first lane's backlog.

    Pass :meth:`on_assign` and :meth:`on_revoke` to the subscription (the floor's
    ``EventConsumer.start`` does), and call :meth:`steer` before each poll.
    """

    def __init__(self, first: Sequence[str], second: Sequence[str], *, cooperative: bool,
                 logger: logging.Logger | None = None) -> None:
        self.first, self.second = set(first), set(second)
        self.cooperative = cooperative
        """Whether the consumer's assignment strategy is cooperative (incremental)."""
        self._log = logger or logging.getLogger(__name__)
        self._assigned: set[Key] = set()
        self._committed: dict[Key, int] = {}
        self.second_open = False
        """Whether the second lane's partitions are being read now."""

    # -- rebalance callbacks -------------------------------------------------------------------

    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Take the partitions (incrementally under the cooperative protocol), pausing the
        second lane's among them until :meth:`steer` finds the first lane empty."""
        if self.cooperative:
            consumer.incremental_assign(partitions)
        else:
            consumer.assign(partitions)
            self._assigned.clear()
        self._assigned |= {(tp.topic, tp.partition) for tp in partitions}
        second = [tp for tp in partitions if tp.topic in self.second]
        if second:
            consumer.pause(second)
            self.second_open = False

    def on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Forget revoked (or lost) partitions."""
        for tp in partitions:
            self._assigned.discard((tp.topic, tp.partition))
            self._committed.pop((tp.topic, tp.partition), None)

    # -- steering ------------------------------------------------------------------------------

    def steer(self, consumer: Consumer) -> bool:
        """Open the second lane when the first has nothing waiting, close it when it has;
        whether the second lane is open now."""
        waiting = self.first_waiting(consumer)
        if waiting and self.second_open:
            self._set(consumer, open_=False)
        elif not waiting and not self.second_open:
            self._set(consumer, open_=True)
        return self.second_open

    def first_waiting(self, consumer: Consumer) -> bool:
        """Whether an assigned first-lane partition has records not taken yet (as far as the
        last fetch told: a record published since is seen with the next one)."""
        first = [TopicPartition(t, p) for t, p in self._assigned if t in self.first]
        if not first:
            return False
        try:
            positions = consumer.position(first)
        except KafkaException as exc:
            self._log.warning("lanes: no positions (%s): the second lane stays closed",
                              exc.args[0])
            return True
        for tp in positions:
            _, high = consumer.get_watermark_offsets(tp, cached=True)
            if high < 0:
                return True  # not fetched yet: unknown, so treated as waiting
            at = tp.offset if tp.offset >= 0 else self._committed_offset(consumer, tp)
            if at < high:
                return True
        return False

    def _committed_offset(self, consumer: Consumer, tp: TopicPartition) -> int:
        key = (tp.topic, tp.partition)
        if key not in self._committed:
            try:
                (found,) = consumer.committed([TopicPartition(*key)], timeout=TIMEOUT_S)
            except KafkaException as exc:
                self._log.warning("lanes: no committed offset for %s/%s: %s", *key,
                                  exc.args[0])
                return -1
            if found.offset < 0:
                # Nothing committed: read from the start (auto.offset.reset=earliest).
                low, _ = consumer.get_watermark_offsets(found, cached=True)
                self._committed[key] = max(low, 0)
            else:
                self._committed[key] = found.offset
        return self._committed[key]

    def _set(self, consumer: Consumer, *, open_: bool) -> None:
        second = _partitions(self._assigned, self.second)
        if second:
            (consumer.resume if open_ else consumer.pause)(second)
        self.second_open = open_
        self._log.debug("lanes: second lane %s", "open" if open_ else "closed")


def _partitions(assigned: Iterable[Key], topics: set[str]) -> list[TopicPartition]:
    return [TopicPartition(t, p) for t, p in sorted(assigned) if t in topics]
