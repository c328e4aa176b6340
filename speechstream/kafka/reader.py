"""The one way to read topics whole: every partition from its first offset, with no consumer
group, under ``read_committed``, each envelope handed to an ``apply`` (a
:class:`~speechstream.ledger.Ledger`'s, or any other) in log order per partition.

A service reads to the end (the last stable offsets the brokers report when asked) at start,
then takes what has arrived whenever it needs a fresh answer: :meth:`LogReader.catch_up` waits
until it has everything published so far, :meth:`LogReader.read_new` takes only what has
already arrived. A one-off command reads once with :func:`read_log`.

Records that do not decode, and records whose ``apply`` raises (``apply`` does no I/O: what it
raises is the record's fault), are skipped and counted (:attr:`LogReader.undecodable`,
:attr:`LogReader.unprocessable`); a reader given ``on_dead_letter`` hands it the dead letter of
each (the validator publishes them), others leave them to the sink, which dead-letters every
undecodable record of the topics it materializes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType

from confluent_kafka import Consumer, Message

from schemas.envelope import Envelope
from schemas.events import (
    ChainBlock,
    EvaluationCancelled,
    EvaluationRequested,
    EvaluationStatusChanged,
    MinerRegistered,
    ScoreComputed,
    ScoringActivated,
    UidHandover,
    UidRevoked,
)
from speechstream.exceptions import ConsumeError
from speechstream.kafka.consumer import SMALL_PREFETCH, Batch, EventConsumer
from speechstream.kafka.records import (
    Expected,
    Verify,
    caused_by_kafka,
    unprocessable_letter,
    unprocessable_reason,
)
from speechstream.settings import KafkaSettings

CATCH_UP_LIMIT_S = 30.0
"""How long a service waits to catch up before it goes on with what it has."""
READ_LIMIT_S = 600.0
"""How long a one-off read may take before it fails."""

Apply = Callable[[Envelope], None]
OnDeadLetter = Callable[[Message, Envelope], None]
"""Takes a skipped record's message and its dead letter."""


class LogReader:
    """Reads ``topics`` whole and hands each envelope to ``apply`` (module docstring).
    ``expected`` maps a topic to the payload class(es) it may carry (others are skipped as
    undecodable); ``name`` names the client in logs, metrics and dead letters;
    ``on_dead_letter`` gets the dead letter of every record skipped; ``verify`` refuses the
    records whose signer may not say them (``speechstream.trust``); ``client`` replaces the
    confluent consumer (tests). Nothing connects before :meth:`start`."""

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
        on_dead_letter: OnDeadLetter | None = None,
        client: Consumer | None = None,
        verify: Verify | None = None,
    ) -> None:
        self._apply = apply
        self._name = name
        self._on_dead_letter = on_dead_letter
        self._log = logger or logging.getLogger(__name__)
        config = {"group.id": name, "enable.auto.commit": False,
                  "isolation.level": "read_committed", **SMALL_PREFETCH}
        if partition_eof:
            config["enable.partition.eof"] = True
        self.consumer = EventConsumer(kafka, name=name, topics=topics, config=config,
                                      expected=expected, client=client, logger=self._log,
                                      verify=verify)
        self.undecodable = 0
        """Records skipped because they did not decode (or do not belong on their topic)."""
        self.applied = 0
        """Envelopes handed to ``apply``."""
        self.unprocessable = 0
        """Envelopes skipped because ``apply`` raised on them."""

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
        apply = self._apply
        for msg, env in zip(batch.messages, batch.envelopes, strict=True):
            try:
                apply(env)
            except Exception as exc:
                if caused_by_kafka(exc):
                    raise
                self._skip(msg, exc)
        self.applied += len(batch.envelopes)
        skipped = len(batch.dead_letters) + batch.kept
        if skipped:
            self.undecodable += skipped
            if self._on_dead_letter is not None:
                for msg, letter in batch.dead_letters:
                    self._on_dead_letter(msg, letter)

    def _skip(self, msg: Message, exc: Exception) -> None:
        """A record ``apply`` raised on: logged, counted, its dead letter handed on."""
        self.unprocessable += 1
        reason = unprocessable_reason(exc, consumer=self._name)
        self._log.error("%s: %s/%s@%s skipped: %s", self._name, msg.topic(), msg.partition(),
                        msg.offset(), reason, exc_info=exc)
        if self._on_dead_letter is not None:
            self._on_dead_letter(msg, unprocessable_letter(msg, reason, consumer=self._name))

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
    verify: Verify | None = None,
) -> LogReader:
    """Read ``topics`` from their first offsets to their end now, once, handing every envelope
    ``verify`` lets count to ``apply``; :class:`ConsumeError` when that takes longer than
    ``limit_s``. Returns the (closed) reader, for its counts."""
    reader = LogReader(kafka, topics, apply, name=name, expected=expected, logger=logger,
                       verify=verify)
    try:
        if not reader.start(limit_s):
            raise ConsumeError(f"{name}: could not read {', '.join(topics)} to their end "
                               f"within {limit_s:.0f}s")
    finally:
        reader.close()
    return reader


def ledger_topics(kafka: KafkaSettings) -> list[str]:
    """The topics a :class:`~speechstream.ledger.Ledger` reads for the whole picture."""
    return list(ledger_expected(kafka))


def ledger_expected(kafka: KafkaSettings) -> dict[str, Expected]:
    """Each of :func:`ledger_topics` with the events that belong on it (``schemas.topics``):
    a reader refuses any other (a head block on the miner registry moves no head)."""
    t = kafka.topics
    return {
        t.miners: (MinerRegistered, UidHandover, UidRevoked),
        t.evaluation_requests: EvaluationRequested,
        t.evaluation_status: EvaluationStatusChanged,
        t.scores: ScoreComputed,
        t.cancellations: EvaluationCancelled,
        t.chain_blocks: ChainBlock,
        t.scoring_active: ScoringActivated,
    }
