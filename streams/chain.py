"""The chain's head as the intake worker knows it, from ``chain.blocks``, with its history.

Every worker process reads the whole topic itself (no consumer group), so each one knows the
head whichever partitions of the submissions it holds. The head is read to its end before the
worker starts, refreshed without waiting before each claim, and read to its end again before a
claim is refused for a block ahead of it (the head it was signed at may have been published a
moment earlier).

Each record's block is offered to a :class:`~speechstream.chainhead.HeadHistory` with the
record's timestamp: a head that jumps implausibly far is refused there (logged, counted), and
the history answers the head as it stood when a registration or a submission reached the
broker (:meth:`ChainHead.head_then`), so a claim processed late is judged by its own time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TypeVar

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE

from schemas.events import ChainBlock
from schemas.fields import RejectionCode
from speechstream.chainhead import BLOCK_SECONDS, HeadHistory, JumpLimit
from speechstream.kafka.consumer import Batch, EventConsumer
from speechstream.kafka.lag import Lag, lag_of
from speechstream.kafka.reader import CATCH_UP_LIMIT_S
from speechstream.kafka.records import Verify
from speechstream.settings import KafkaSettings
from streams.rules import Rejection

CONSUMER_NAME = "speechstream-intake-chain"
Verdict = TypeVar("Verdict")
LOG_APPEND_TIME = 1
"""The timestamp type of a record stamped by the broker, not by its producer, as Faust's events
carry it (``event.message.timestamp_type``: the record format's bit, which aiokafka hands on;
confluent-kafka numbers the same type 2)."""


def appended_ms(timestamp_s: float | None, timestamp_type: int | None) -> int | None:
    """The time a record reached the broker, in milliseconds, when its timestamp is the
    broker's (``LogAppendTime``); None for a timestamp its producer chose, or none."""
    if timestamp_type != LOG_APPEND_TIME or timestamp_s is None or timestamp_s < 0:
        return None
    return round(timestamp_s * 1000)


class ChainHead:
    """The highest credible block published on ``chain.blocks`` (None before the first), and
    the head as it stood at any moment since. ``on_refused`` is called with each head refused
    for jumping too far. With ``verify``, only heads it lets count (the chain adapter's) are
    read; any other record is dead-lettered."""

    def __init__(
        self, kafka: KafkaSettings, *, limit: JumpLimit | None = None,
        on_refused: Callable[[int], None] | None = None,
        logger: logging.Logger | None = None, verify: Verify | None = None,
    ) -> None:
        self._log = logger or logging.getLogger(__name__)
        self.history = HeadHistory(limit)
        self._on_refused = on_refused
        self._consumer = EventConsumer(
            kafka, name=CONSUMER_NAME, topics=[kafka.topics.chain_blocks],
            config={"group.id": CONSUMER_NAME, "enable.auto.commit": False,
                    "isolation.level": "read_committed"},
            expected=ChainBlock, logger=self._log, verify=verify)

    @property
    def head(self) -> int | None:
        """The head as last read (no refresh)."""
        return self.history.head

    def head_then(self, appended: int | None) -> int | None:
        """The head a claim appended at ``appended`` (ms, :func:`appended_ms`) is judged by:
        the head as it stood then; for a record whose time is not the broker's (a topic
        created before its timestamps were), the head now."""
        return self.history.head if appended is None else self.history.at(appended)

    def start(self) -> None:
        """Read the topic from its start to its end."""
        self._consumer.start(from_start=True)
        self._consumer.read_to_end(self._take, CATCH_UP_LIMIT_S)
        self._log.info("chain head at start: %s", self.head)

    def refresh(self) -> int | None:
        """Take what has arrived, without waiting; the head."""
        self._take(self._consumer.poll(1000, 0.0))
        return self.head

    def catch_up(self) -> int | None:
        """Read up to what is published now (at most the catch-up limit); the head."""
        self._consumer.read_to_end(self._take, CATCH_UP_LIMIT_S)
        return self.head

    def _take(self, batch: Batch) -> None:
        for msg, env in zip(batch.messages, batch.envelopes, strict=True):
            payload = env.payload
            assert isinstance(payload, ChainBlock)
            kind, stamp = msg.timestamp()
            # Either type: the chain adapter is this topic's only writer. 0: no timestamp.
            time_ms = stamp if kind != TIMESTAMP_NOT_AVAILABLE and stamp >= 0 else None
            previous = self.history.head
            if self.history.offer(payload.block, time_ms) == "refused":
                self._log.warning(
                    "chain head %d refused: it passes the head %s by more than %d blocks plus "
                    "%g per %.0f s elapsed (offset %s)", payload.block, previous,
                    self.history.limit.slack_blocks, self.history.limit.rate, BLOCK_SECONDS,
                    msg.offset())
                if self._on_refused is not None:
                    self._on_refused(payload.block)

    def lag(self) -> Iterator[Lag]:
        """Its reader's lag (``speechstream_consumer_lag``)."""
        return lag_of([self._consumer])

    def consumers(self) -> list[EventConsumer]:
        """Its reader."""
        return [self._consumer]

    def close(self) -> None:
        """Close the consumer."""
        self._consumer.close()


def judge_claim(
    chain: ChainHead | None, block: int, appended: int | None,
    check: Callable[[int | None, int | None], Verdict],
) -> Verdict:
    """``check(head, head_then)`` for a record claiming ``block``, appended at ``appended``
    (:func:`appended_ms`): the head refreshed without waiting, and the head as it stood then;
    read to the end and checked again when the block is ahead of the head (the head it was
    signed at may have been published a moment ago). Without ``chain``, no bound."""
    if chain is None:
        return check(None, None)
    head = chain.refresh()
    verdict = check(head, chain.head_then(appended))
    if (isinstance(verdict, Rejection) and verdict.code is RejectionCode.BLOCK_OUT_OF_RANGE
            and head is not None and block > head):
        head = chain.catch_up()
        verdict = check(head, chain.head_then(appended))
    return verdict
