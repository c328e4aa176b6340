"""The chain's head as the intake worker knows it: the highest block on ``chain.blocks``.

Every worker process reads the whole topic itself (assigned, no consumer group), so each one
knows the head whichever partitions of the submissions it holds. The head is read to its end
before the worker starts, refreshed without waiting before each submission, and read to its
end again before a submission is refused for a block ahead of it (the head it was signed at
may have been published a moment earlier).
"""

from __future__ import annotations

import logging

from schemas.events import ChainBlock
from speechstream.kafka.consumer import Batch
from speechstream.kafka.follow import TopicFollower
from speechstream.settings import KafkaSettings

CONSUMER_NAME = "speechstream-intake-chain"


class ChainHead(TopicFollower):
    """The highest block published on ``chain.blocks`` (None before the first)."""

    def __init__(self, kafka: KafkaSettings, *, logger: logging.Logger | None = None) -> None:
        super().__init__(kafka, kafka.topics.chain_blocks, ChainBlock, name=CONSUMER_NAME,
                         logger=logger)
        self.head: int | None = None

    def start(self) -> None:
        """Read the topic from its start to its end."""
        self._read_from_start()
        self._log.info("chain head at start: %s", self.head)

    def refresh(self) -> int | None:
        """Take what has arrived, without waiting; the head."""
        self._read_new()
        return self.head

    def catch_up(self) -> int | None:
        """Read up to what is published now (at most ``CATCH_UP_LIMIT_S``); the head."""
        self._read_to_end()
        return self.head

    def _take(self, batch: Batch) -> None:
        for env in batch.envelopes:
            block = env.payload.block
            if self.head is None or block > self.head:
                self.head = block
