"""The chain's head as the intake worker knows it: the highest block on ``chain.blocks``.

Every worker process reads the whole topic itself (:class:`~speechstream.kafka.reader.LogReader`
into a :class:`~speechstream.ledger.Ledger`), so each one knows the head whichever partitions of
the submissions it holds. The head is read to its end before the worker starts, refreshed
without waiting before each submission, and read to its end again before a submission is
refused for a block ahead of it (the head it was signed at may have been published a moment
earlier).
"""

from __future__ import annotations

import logging

from schemas.events import ChainBlock
from speechstream.kafka.reader import LogReader
from speechstream.ledger import Ledger
from speechstream.settings import KafkaSettings

CONSUMER_NAME = "speechstream-intake-chain"


class ChainHead:
    """The highest block published on ``chain.blocks`` (None before the first)."""

    def __init__(self, kafka: KafkaSettings, *, logger: logging.Logger | None = None) -> None:
        self._log = logger or logging.getLogger(__name__)
        self._ledger = Ledger()
        self._reader = LogReader(kafka, [kafka.topics.chain_blocks], self._ledger.apply,
                                 name=CONSUMER_NAME, expected=ChainBlock, logger=self._log)

    @property
    def head(self) -> int | None:
        """The head as last read (no refresh)."""
        return self._ledger.head

    def start(self) -> None:
        """Read the topic from its start to its end."""
        self._reader.start()
        self._log.info("chain head at start: %s", self.head)

    def refresh(self) -> int | None:
        """Take what has arrived, without waiting; the head."""
        self._reader.read_new()
        return self.head

    def catch_up(self) -> int | None:
        """Read up to what is published now (at most the reader's catch-up limit); the head."""
        self._reader.catch_up()
        return self.head

    def close(self) -> None:
        """Close the reader."""
        self._reader.close()
