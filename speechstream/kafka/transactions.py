"""Kafka transactions: events and the consumed offsets they answer, committed together or not
at all.

- The transactional id is stable across restarts of one service instance, so a restarted
  instance fences its zombie and aborts whatever transaction it left open.
- A transaction that cannot commit is aborted: nothing of it is visible to read_committed
  consumers, and :class:`TransactionAbortedError` tells the caller to process its input again.
- A fatal producer error (fenced, or any error librdkafka calls fatal) raises
  :class:`FencedError`: the instance must stop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer, TopicPartition

from schemas.codec import encode
from schemas.envelope import Envelope
from speechstream.exceptions import FencedError, TransactionAbortedError, TransactionError
from speechstream.settings import KafkaSettings

BROKER_MAX_TRANSACTION_TIMEOUT_MS = 900_000  # the broker's default transaction.max.timeout.ms
KAFKA_TIMEOUT_S = 30.0
COMMIT_ATTEMPTS = 3

Outgoing = tuple[str, str | bytes | None, Envelope]
"""One event to produce in a transaction: (topic, key, envelope)."""


def transactional_config(
    kafka: KafkaSettings, transactional_id: str, timeout_ms: int
) -> dict[str, Any]:
    """A transactional producer's librdkafka configuration (murmur2 partitioner)."""
    return kafka.producer_config(**{
        "transactional.id": transactional_id,
        "transaction.timeout.ms": min(timeout_ms, BROKER_MAX_TRANSACTION_TIMEOUT_MS),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 0,
    })


class TransactionalProducer:
    """Produces envelopes, with or without consumed offsets, one committed transaction a call.

    ``client`` replaces the confluent producer (tests); ``on_abort`` is called for every
    aborted transaction (a metric).
    """

    def __init__(
        self,
        config: dict[str, Any],
        *,
        client: Producer | None = None,
        on_abort: Callable[[], None] | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self._config = config
        self._client = client
        self._on_abort = on_abort or (lambda: None)
        self._log = logger or logging.getLogger(__name__)
        self.in_transaction = False

    def start(self) -> TransactionalProducer:
        """Create the client (unless injected) and init transactions, fencing a predecessor."""
        if self._client is None:
            self._client = Producer(self._config)
        try:
            self._client.init_transactions(KAFKA_TIMEOUT_S)
        except KafkaException as exc:
            raise TransactionError(f"init_transactions failed: {exc.args[0]}") from exc
        return self

    def transact(
        self,
        events: Sequence[Outgoing],
        *,
        offsets: Sequence[TopicPartition] = (),
        group_metadata: Any = None,
    ) -> None:
        """Produce ``events`` and commit ``offsets`` (for ``group_metadata``) in one transaction."""
        producer = self._require_client()
        try:
            producer.begin_transaction()
            self.in_transaction = True
            for topic, key, env in events:
                producer.produce(topic, encode(env), key, on_delivery=self._on_delivery)
                producer.poll(0)
            if offsets:
                producer.send_offsets_to_transaction(list(offsets), group_metadata,
                                                     KAFKA_TIMEOUT_S)
            self._commit(producer)
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if error.fatal():
                self.in_transaction = False
                raise FencedError(f"producer fenced or failed fatally: {error}") from exc
            if self.in_transaction:
                self.abort(str(error))
            raise TransactionAbortedError(f"transaction aborted: {error}") from exc

    def _commit(self, producer: Producer) -> None:
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            try:
                producer.commit_transaction(KAFKA_TIMEOUT_S)
                self.in_transaction = False
                return
            except KafkaException as exc:
                error: KafkaError = exc.args[0]
                last = attempt == COMMIT_ATTEMPTS
                if last or not error.retriable() or error.txn_requires_abort():
                    raise
                self._log.warning("commit_transaction retry %d: %s", attempt, error)

    def abort(self, why: str) -> None:
        """Abort the open transaction; :class:`FencedError` when even that fails."""
        producer = self._require_client()
        self._on_abort()
        self._log.warning("aborting the open transaction: %s", why)
        try:
            producer.abort_transaction(KAFKA_TIMEOUT_S)
        except KafkaException as exc:
            raise FencedError(f"abort_transaction failed: {exc.args[0]}") from exc
        finally:
            self.in_transaction = False

    def close(self) -> None:
        """Abort a transaction left open, then flush what is queued."""
        if self._client is None:
            return
        try:
            if self.in_transaction:
                self.abort("closing")
        finally:
            self._client.flush(10)

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:  # the transaction's commit fails too, and is aborted
            self._log.error("delivery to %s failed: %s", msg.topic(), err)

    def _require_client(self) -> Producer:
        if self._client is None:
            raise TransactionError("the producer is not started: call start() first")
        return self._client
