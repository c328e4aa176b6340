"""The evaluator consumer: one request at a time, the score and its offset in one transaction.

Per request: PRECHECK and RUNNING are published in small transactions of their own, committed
at once, so that they are visible while the evaluation runs; then the score event and the
consumed offset are committed together in one Kafka transaction. A process killed mid-way
commits nothing: the request is evaluated again after a restart, and read_committed consumers
see exactly one score. The transactional id is derived from the evaluator id, so a restarted
evaluator fences its predecessor. Every event id is derived from the request's event id.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Literal

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from consumers.base import ScoreOutcome, Scorer
from consumers.exceptions import EvaluatorError, FencedError
from consumers.metrics import EvaluatorMetrics
from schemas.codec import dead_letter, decode, encode
from schemas.envelope import Envelope, derived_event_id, new_envelope
from schemas.events import EvaluationRequested, EvaluationStatusChanged, ScoreComputed
from schemas.exceptions import DecodeError
from speechstream.settings import EvaluatorSettings, KafkaSettings

PRODUCER_NAME = "speechstream-evaluator"


class Evaluator:
    """Consumes evaluation requests and emits statuses and scores for one device."""

    def __init__(
        self,
        kafka: KafkaSettings,
        settings: EvaluatorSettings,
        scorer: Scorer,
        *,
        metrics: EvaluatorMetrics,
        logger: logging.Logger | None = None,
    ) -> None:
        self._kafka = kafka
        self._settings = settings
        self._scorer = scorer
        self._metrics = metrics
        self._log = logger or logging.getLogger(__name__)
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self.evaluator_id = f"{settings.evaluator_id}-{settings.device}"

    def start(self) -> None:
        """Create the clients, init transactions, set up the scorer, subscribe."""
        timeout = self._settings.transaction_timeout_ms
        self._producer = Producer(self._kafka.to_librdkafka(**{
            "transactional.id": f"speechstream-evaluator-{self.evaluator_id}",
            "transaction.timeout.ms": timeout,
            "enable.idempotence": True,
            "linger.ms": 0,
        }))
        self._producer.init_transactions(30)
        self._scorer.setup()
        self._consumer = Consumer(self._kafka.to_librdkafka(**{
            "group.id": self._settings.group_id,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "max.poll.interval.ms": timeout + 60_000,
            "session.timeout.ms": 45_000,
        }))
        self._consumer.subscribe([self._kafka.topics.evaluation_requests])

    def run(self, stop: threading.Event) -> None:
        """Poll and evaluate until ``stop`` is set."""
        assert self._consumer is not None, "call start() first"
        while not stop.is_set():
            msg = self._consumer.poll(self._settings.poll_timeout_s)
            self._metrics.last_poll.set(time.time())
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise EvaluatorError(f"consume failed: {msg.error()}")
            self.handle(msg)

    def handle(self, msg: Message) -> None:
        """Evaluate one request message and commit its result with its offset."""
        try:
            request_env = decode(msg.value(), topic=msg.topic(), partition=msg.partition(),
                                 offset=msg.offset())
        except DecodeError as exc:
            self._log.warning("dead letter at offset %s: %s", msg.offset(), exc.reason)
            self._commit(msg, [(self._kafka.topics.deadletter,
                                dead_letter(exc, consumer=PRODUCER_NAME))])
            return
        request = request_env.payload
        if not isinstance(request, EvaluationRequested):
            exc = DecodeError(f"not an evaluation request: {request.type}", msg.value() or b"",
                              topic=msg.topic(), partition=msg.partition(), offset=msg.offset())
            self._commit(msg, [(self._kafka.topics.deadletter,
                                dead_letter(exc, consumer=PRODUCER_NAME))])
            return
        started = time.perf_counter()
        self._metrics.in_progress.inc()
        try:
            outcome = self._score(request_env.event_id, request)
        finally:
            self._metrics.in_progress.dec()
        elapsed = time.perf_counter() - started
        event = ScoreComputed(
            hash=request.hash,
            scoring_version=request.scoring_version,
            status=outcome.status,
            total_score=outcome.total_score,
            reason=outcome.reason,
            samples=outcome.samples,
            timings={**outcome.timings, "evaluation_s": round(elapsed, 3)},
            revision=outcome.revision,
            evaluator=self.evaluator_id,
            request_event_id=request_env.event_id,
        )
        score_env = new_envelope(
            event, key=request.hash, producer=PRODUCER_NAME,
            event_id=derived_event_id(request_env.event_id, f"score:{request.scoring_version}"),
        )
        self._commit(msg, [(self._kafka.topics.scores, score_env)])
        self._metrics.evaluations.labels(outcome.status).inc()
        self._metrics.evaluation_seconds.observe(elapsed)
        self._log.info("scored %s: %s %s", request.hash, outcome.status,
                       outcome.total_score if outcome.total_score is not None else outcome.reason)

    def _score(self, request_event_id: str, request: EvaluationRequested) -> ScoreOutcome:
        def report(status: Literal["PRECHECK", "RUNNING"], note: str | None) -> None:
            event = EvaluationStatusChanged(
                hash=request.hash, status=status, scoring_version=request.scoring_version,
                evaluator=self.evaluator_id, note=note,
            )
            env = new_envelope(
                event, key=request.hash, producer=PRODUCER_NAME,
                event_id=derived_event_id(request_event_id, f"status:{status}"),
            )
            self._transaction([(self._kafka.topics.evaluation_status, env)], offsets_of=None)

        try:
            return self._scorer.score(request, report)
        except (KafkaException, FencedError):
            raise
        except Exception as exc:  # noqa: BLE001 - any scorer failure is a FAILED score
            self._log.exception("scorer failed on %s", request.hash)
            return ScoreOutcome(status="FAILED", reason=f"{type(exc).__name__}: {exc}")

    def _commit(self, msg: Message, events: list[tuple[str, Envelope]]) -> None:
        self._transaction(events, offsets_of=msg)

    def _transaction(
        self, events: list[tuple[str, Envelope]], *, offsets_of: Message | None
    ) -> None:
        assert self._producer is not None and self._consumer is not None
        producer = self._producer
        try:
            producer.begin_transaction()
            for topic, env in events:
                producer.produce(topic, encode(env), env.key)
            if offsets_of is not None:
                producer.send_offsets_to_transaction(
                    [TopicPartition(offsets_of.topic(), offsets_of.partition(),
                                    offsets_of.offset() + 1)],
                    self._consumer.consumer_group_metadata(),
                )
            producer.commit_transaction(30)
        except KafkaException as exc:
            error = exc.args[0]
            if error.fatal():
                raise FencedError(f"producer fenced or fatal: {error}") from exc
            if error.txn_requires_abort():
                producer.abort_transaction(30)
            raise EvaluatorError(f"transaction failed: {error}") from exc

    def close(self) -> None:
        """Close the consumer (leaving the group), flush the producer, close the scorer."""
        try:
            if self._consumer is not None:
                self._consumer.close()
        finally:
            if self._producer is not None:
                self._producer.flush(10)
            self._scorer.close()
