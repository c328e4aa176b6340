"""Kafka transactions: events and the consumed offsets they answer, committed together or not
at all.

- The transactional id is stable across restarts of one service instance, so a restarted
  instance fences its zombie and aborts whatever transaction it left open.
- A transaction that cannot commit is aborted: nothing of it is visible to read_committed
  consumers, and :class:`TransactionAbortedError` tells the caller to process its input again.
- Fenced (another instance took the transactional id over) raises :class:`FencedError`: the
  instance must stop. Another fatal client error (after a broker restart: an abort refused
  with ``INVALID_TXN_STATE``), or an abort that fails, replaces the client: a new one with
  the same transactional id aborts the open transaction, and the caller gets
  :class:`TransactionAbortedError`. Five replacements without a commit in between stop it.
- ``send_offsets_to_transaction`` can block past its timeout, for good, once the group
  coordinator it cached went away (librdkafka issues #5456 and #5511: seen here after a broker
  restart). It runs in a helper thread; when it has not returned ``STUCK_GRACE_S`` after its
  timeout, the stuck client is left behind and replaced the same way. A client left behind is
  let go (its threads and sockets freed) once its call returns; ``MAX_LEFT_BEHIND`` still
  stuck stop the service (a restart frees them), rather than leak one client per hiccup.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer, TopicPartition

from schemas.codec import encode
from schemas.envelope import Envelope
from speechstream.exceptions import FencedError, TransactionAbortedError, TransactionError
from speechstream.settings import KafkaSettings
from speechstream.signer import Signer

BROKER_MAX_TRANSACTION_TIMEOUT_MS = 900_000  # the broker's default transaction.max.timeout.ms
KAFKA_TIMEOUT_S = 30.0
SEND_OFFSETS_TIMEOUT_S = 10.0
STUCK_GRACE_S = 2.0
MAX_REPLACED_IN_A_ROW = 5
MAX_LEFT_BEHIND = 3
COMMIT_ATTEMPTS = 3
FENCED_CODES = frozenset({
    KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH,
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
})

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


def is_fenced(error: KafkaError) -> bool:
    """Whether another producer took this transactional id over (or it may not use it)."""
    return error.code() in FENCED_CODES


class ProducerStuckError(Exception):
    """A librdkafka call did not return within its timeout (and a grace period); ``returned``
    is set once it does."""

    def __init__(self, message: str, returned: threading.Event) -> None:
        super().__init__(message)
        self.returned = returned


class TransactionalProducer:
    """Produces envelopes, with or without consumed offsets, one committed transaction a call.

    ``signer`` signs every envelope it produces (``speechstream.signer``); ``client`` replaces
    the confluent producer (tests) and ``new_client`` how a replacement for
    a stuck one is made (default: a confluent producer of ``config``); ``on_abort`` is called
    for every aborted transaction, ``on_replace`` for every stuck client replaced (metrics).
    """

    def __init__(
        self,
        config: dict[str, Any],
        *,
        client: Producer | None = None,
        new_client: Callable[[dict[str, Any]], Producer] = Producer,
        on_abort: Callable[[], None] | None = None,
        on_replace: Callable[[], None] | None = None,
        logger: logging.Logger | None = None,
        signer: Signer | None = None,
    ) -> None:
        self._config = config
        self._signer = signer
        self._client = client
        self._new_client = new_client
        self._on_abort = on_abort or (lambda: None)
        self._on_replace = on_replace or (lambda: None)
        self._log = logger or logging.getLogger(__name__)
        self._left_behind: list[tuple[Producer, threading.Event]] = []
        """Stuck clients and the event their call sets when it returns: kept (destroying one
        that blocks would block too) until then."""
        self._needs_init = False
        self._replaced_in_a_row = 0
        self.in_transaction = False

    def start(self) -> TransactionalProducer:
        """Create the client (unless injected) and init transactions, fencing a predecessor."""
        if self._client is None:
            self._client = self._new_client(self._config)
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
            if self._needs_init:  # a replacement whose init failed (the broker was away)
                producer.init_transactions(KAFKA_TIMEOUT_S)
                self._needs_init = False
            producer.begin_transaction()
            self.in_transaction = True
            signer = self._signer
            for topic, key, env in events:
                value = encode(env) if signer is None else signer.encode(env)
                producer.produce(topic, value, key, on_delivery=self._on_delivery)
                producer.poll(0)
            if offsets:
                self._send_offsets(producer, list(offsets), group_metadata)
            self._commit(producer)
            self._replaced_in_a_row = 0
            if self._left_behind:
                self._let_go()
        except ProducerStuckError as exc:
            self._on_abort()
            self._replace(str(exc), stuck=exc.returned)
            raise TransactionAbortedError(f"transaction aborted: {exc}") from exc
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if is_fenced(error):
                self.in_transaction = False
                raise FencedError(f"producer fenced: {error}") from exc
            if error.fatal():
                self._on_abort()
                self._replace(f"fatal error: {error}")
            elif self.in_transaction:
                self.abort(str(error))
            raise TransactionAbortedError(f"transaction aborted: {error}") from exc
        except Exception as exc:
            # Not the broker's (an event that cannot be encoded): nothing of it is committed,
            # and the next transaction starts clean.
            if self.in_transaction:
                self.abort(f"{type(exc).__name__}: {exc}")
            raise

    def _send_offsets(
        self, producer: Producer, offsets: list[TopicPartition], group_metadata: Any
    ) -> None:
        """``send_offsets_to_transaction``, given up on when it blocks past its timeout."""
        returned = threading.Event()
        raised: list[BaseException] = []

        def call() -> None:
            try:
                producer.send_offsets_to_transaction(offsets, group_metadata,
                                                     SEND_OFFSETS_TIMEOUT_S)
            except BaseException as exc:  # handed to the caller's thread below
                raised.append(exc)
            finally:
                returned.set()

        threading.Thread(target=call, name="send-offsets", daemon=True).start()
        if not returned.wait(SEND_OFFSETS_TIMEOUT_S + STUCK_GRACE_S):
            raise ProducerStuckError(
                f"send_offsets_to_transaction still blocked after "
                f"{SEND_OFFSETS_TIMEOUT_S + STUCK_GRACE_S:.0f}s (its timeout is "
                f"{SEND_OFFSETS_TIMEOUT_S:.0f}s)", returned,
            )
        if raised:
            raise raised[0]

    @property
    def left_behind(self) -> int:
        """Stuck clients still kept."""
        return len(self._left_behind)

    def _let_go(self) -> None:
        """Drop the clients left behind whose call has returned (destroying them frees their
        threads and sockets); :class:`FencedError` when ``MAX_LEFT_BEHIND`` are still stuck."""
        self._left_behind = [(c, r) for c, r in self._left_behind if not r.is_set()]
        if len(self._left_behind) >= MAX_LEFT_BEHIND:
            raise FencedError(f"{len(self._left_behind)} transactional clients stuck in a call "
                              "that never returned: stopping, so that a restart frees them")

    def _replace(self, why: str, *, stuck: threading.Event | None = None) -> None:
        """A new client with the same transactional id takes over: its ``init_transactions``
        fences the old one and aborts its open transaction (now, or before the next
        transaction when the broker is away). A stuck old client is kept, not destroyed (that
        would block too), until ``stuck`` (its call returned) is set; another is dropped."""
        self._replaced_in_a_row += 1
        if self._replaced_in_a_row > MAX_REPLACED_IN_A_ROW:
            raise FencedError(f"{why}; the producer was replaced {MAX_REPLACED_IN_A_ROW} times "
                              f"without a transaction committing in between: stopping")
        self._on_replace()
        self._log.warning("replacing the transactional producer: %s", why)
        old = self._require_client()
        if stuck is not None:
            self._left_behind.append((old, stuck))
            self._let_go()
        self.in_transaction = False
        self._client = self._new_client(self._config)
        try:
            self._client.init_transactions(KAFKA_TIMEOUT_S)
            self._needs_init = False
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if is_fenced(error):
                raise FencedError(f"init_transactions failed: {error}") from exc
            self._log.warning("init_transactions of the new producer failed; tried again "
                              "before the next transaction: %s", error)
            self._needs_init = True

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
        """Abort the open transaction. When the abort itself fails (the broker away, a fatal
        client error), a new client takes over and aborts it; :class:`FencedError` when this
        producer has been fenced."""
        producer = self._require_client()
        self._on_abort()
        self._log.warning("aborting the open transaction: %s", why)
        try:
            producer.abort_transaction(KAFKA_TIMEOUT_S)
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if is_fenced(error):
                raise FencedError(f"abort_transaction failed: {error}") from exc
            self._replace(f"abort_transaction failed: {error}")
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
            try:
                self._client.flush(10)
            except KafkaException as exc:  # a client failed fatally has nothing to deliver
                self._log.warning("flushing the producer on close: %s", exc.args[0])

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            return
        if err.code() == KafkaError._PURGE_QUEUE:  # an aborted transaction's, dropped
            self._log.info("not delivered to %s: its transaction was aborted", msg.topic())
        else:  # the transaction's commit fails too, and is aborted
            self._log.error("delivery to %s failed: %s", msg.topic(), err)

    def _require_client(self) -> Producer:
        if self._client is None:
            raise TransactionError("the producer is not started: call start() first")
        return self._client
