"""The one way to read topics whole: every partition from its first offset, with no consumer
group, under ``read_committed``, each envelope handed to an ``apply`` (a
:class:`~speechstream.ledger.Ledger`'s, or any other) in log order per partition.

A service reads to the end (the last stable offsets the brokers report when asked) at start,
then takes what has arrived whenever it needs a fresh answer: :meth:`LogReader.catch_up` waits
until it has everything published so far, :meth:`LogReader.read_new` takes only what has
already arrived. A one-off command reads once with :func:`read_log`.

Records that do not decode are not this reader's to dead-letter (the sink does that for every
topic it materializes): they are counted in :attr:`LogReader.undecodable` and skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType

from schemas.envelope import Envelope
from speechstream.exceptions import ConsumeError
from speechstream.kafka.consumer import Batch, EventConsumer
from speechstream.kafka.records import Expected
from speechstream.settings import KafkaSettings

CATCH_UP_LIMIT_S = 30.0
"""How long a service waits to catch up before it goes on with what it has."""
READ_LIMIT_S = 600.0
"""How long a one-off read may take before it fails."""

Apply = Callable[[Envelope], None]


class LogReader:
    """Reads ``topics`` whole and hands each envelope to ``apply`` (module docstring).
    ``expected`` maps a topic to the payload class(es) it may carry (others are skipped as
    undecodable); ``name`` names the client in logs and metrics. Nothing connects before
    :meth:`start`."""

    def __init__(
        self,
        kafka: KafkaSettings,
        topics: Sequence[str],
        apply: Apply,
        *,
        name: str,
        expected: Mapping[str, Expected] | Expected | None = None,
        logger: logging.Logger | None = None,
        partition_eof: bool = False,
    ) -> None:
        self._apply = apply
        self._log = logger or logging.getLogger(__name__)
        config = {"group.id": name, "enable.auto.commit": False,
                  "isolation.level": "read_committed"}
        if partition_eof:
            config["enable.partition.eof"] = True
        self.consumer = EventConsumer(kafka, name=name, topics=topics, config=config,
                                      expected=expected, logger=self._log)
        self.undecodable = 0
        """Records skipped because they did not decode (or do not belong on their topic)."""
        self.applied = 0
        """Envelopes handed to ``apply``."""

    def start(self, limit_s: float = CATCH_UP_LIMIT_S) -> bool:
        """Assign every partition from its first offset and read to the end; whether it got
        there within ``limit_s``."""
        self.consumer.start(from_start=True)
        return self.catch_up(limit_s)

    def catch_up(self, limit_s: float = CATCH_UP_LIMIT_S) -> bool:
        """Read everything published so far (at most ``limit_s``); whether it got there."""
        return self.consumer.read_to_end(self._take, limit_s)

    def read_new(self, timeout_s: float = 0.0) -> int:
        """Take what has arrived (waiting up to ``timeout_s`` for the first record); how many
        records that was."""
        batch = self.consumer.poll(1000, timeout_s)
        self._take(batch)
        return len(batch)

    def caught_up(self) -> bool:
        """Whether everything published so far has been read (asks the brokers)."""
        return self.consumer.caught_up()

    def drained(self) -> bool:
        """Whether every partition was read to its end (needs ``partition_eof``)."""
        return self.consumer.drained()

    def _take(self, batch: Batch) -> None:
        for env in batch.envelopes:
            self._apply(env)
        self.applied += len(batch.envelopes)
        skipped = len(batch.dead_letters) + batch.kept
        if skipped:
            self.undecodable += skipped

    def close(self) -> None:
        """Close the consumer."""
        self.consumer.close()

    def __enter__(self) -> LogReader:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def read_log(
    kafka: KafkaSettings,
    topics: Sequence[str],
    apply: Apply,
    *,
    name: str,
    expected: Mapping[str, Expected] | Expected | None = None,
    limit_s: float = READ_LIMIT_S,
    logger: logging.Logger | None = None,
) -> LogReader:
    """Read ``topics`` from their first offsets to their end now, once, handing every envelope
    to ``apply``; :class:`ConsumeError` when that takes longer than ``limit_s``. Returns the
    (closed) reader, for its counts."""
    reader = LogReader(kafka, topics, apply, name=name, expected=expected, logger=logger)
    try:
        if not reader.start(limit_s):
            raise ConsumeError(f"{name}: could not read {', '.join(topics)} to their end "
                               f"within {limit_s:.0f}s")
    finally:
        reader.close()
    return reader


def ledger_topics(kafka: KafkaSettings) -> list[str]:
    """The topics a :class:`~speechstream.ledger.Ledger` reads for the whole picture."""
    t = kafka.topics
    return [t.miners, t.evaluation_requests, t.evaluation_status, t.scores, t.cancellations,
            t.chain_blocks, t.scoring_active]
