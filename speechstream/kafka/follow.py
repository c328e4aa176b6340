"""A topic every process of a service reads whole for itself: assigned from its first offset,
with no consumer group, read to its end at start and then taken up to what has arrived
whenever asked (the chain's head, the active scoring version)."""

from __future__ import annotations

import logging

from speechstream.kafka.consumer import Batch, EventConsumer
from speechstream.kafka.records import Expected
from speechstream.settings import KafkaSettings

CATCH_UP_LIMIT_S = 10.0


class TopicFollower:
    """Follows ``topic``; a subclass says what each batch means (:meth:`_take`)."""

    def __init__(self, kafka: KafkaSettings, topic: str, expected: Expected, *, name: str,
                 logger: logging.Logger | None = None) -> None:
        self._log = logger or logging.getLogger(__name__)
        self._consumer = EventConsumer(
            kafka, name=name, topics=[topic],
            config={"group.id": name, "enable.auto.commit": False,
                    "isolation.level": "read_committed"},
            expected=expected, logger=self._log,
        )

    def _read_from_start(self) -> None:
        """Assign the topic from its first offset and read it to its end."""
        self._consumer.start(from_start=True)
        self._read_to_end()

    def _read_to_end(self) -> None:
        """Read up to what is published now (at most ``CATCH_UP_LIMIT_S``)."""
        self._consumer.read_to_end(self._take, CATCH_UP_LIMIT_S)

    def _read_new(self) -> None:
        """Take what has arrived, without waiting."""
        self._take(self._consumer.poll(1000, 0))

    def _take(self, batch: Batch) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Close the consumer."""
        self._consumer.close()
