"""The validator: weights from the score topic at every epoch (``speechstream validator run``).

It reads, from their first offsets at every start, the miner registry (``miners``), the
evaluation requests, statuses, scores and cancellations, the scoring activations and the
chain's head blocks (``chain.blocks``) into a :class:`~speechstream.ledger.Ledger`, so its
state is rebuilt from the log, never kept aside, and each uid's submission and how it stands
are the ledger's answers, the ones PostgreSQL's ``submission_standing`` gives too (a request
withdrawn because an earlier duplicate displaced its submission counts as that duplicate,
score or not). When the head reaches a new epoch
(``head // epoch_blocks``) and it has read everything published so far (its positions at
the brokers' high watermarks), it computes SPEC §5 (``consumers.weights``) with the head as
the cutoff block, and publishes the vector
(``weights.computed``) and each uid's current submission (``minerboard.updated``). The moving
average starts from this validator's latest vector on the ``weights`` topic, so a restart
neither forgets it nor recomputes an epoch already published; a uid whose hotkey changed since
that vector starts from 0 (:func:`consumers.weights.carried_over`).

No record stops it. A record that does not decode, does not belong on its topic, or that the
ledger cannot take is skipped, and its dead letter (the reason, the raw bytes, where they came
from) is published to the dead-letter topic; the same record read again after a restart gives
the same dead letter (its event id derives from the topic, partition and offset). An epoch
whose vector cannot be computed or published (the broker refusing it, or away) is logged and
counted (``speechstream_validator_failed_epochs_total``), and the next epoch tries again; the
vector is at most ``schemas.codec.MAX_VECTOR_BYTES``, which its topic and this producer allow.

Trust (``speechstream.trust``): with ``verify`` every record it reads (the ledger's topics, the
scoring activations among them, and the ``weights`` topic it resumes from) whose signer may not
say it never counts: a forged vector naming this validator (unsigned, or signed by another
validator's key) cannot stop it publishing, a forged activation changes nothing. With
``signer`` its vectors, minerboard entries and dead letters are signed; each vector names this
validator (``validator_id``), the name the operator trusts its key under.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

from confluent_kafka import Consumer, Message

from consumers.metrics import ValidatorMetrics
from consumers.settings import ValidatorSettings
from consumers.weights import Candidate, carried_over, compute_weights
from schemas.codec import MAX_VECTOR_BYTES
from schemas.envelope import Envelope, derived_event_id, new_envelope
from schemas.events import MinerboardUpdated, WeightsComputed
from schemas.topics import RECORD_OVERHEAD_BYTES
from speechstream.exceptions import DeliveryError
from speechstream.kafka.consumer import EventConsumer
from speechstream.kafka.lag import Lag, lag_of
from speechstream.kafka.producer import EventProducer
from speechstream.kafka.reader import LogReader, ledger_expected, read_log
from speechstream.kafka.records import (
    Verify,
    caused_by_kafka,
    count_dead_letters,
    expect_dead_letters,
)
from speechstream.ledger import Ledger
from speechstream.monitoring import Health
from speechstream.settings import KafkaSettings
from speechstream.signer import Signer

PRODUCER_NAME = "speechstream-validator"
PRODUCER_CONFIG: dict[str, Any] = {"message.max.bytes": MAX_VECTOR_BYTES + RECORD_OVERHEAD_BYTES}
"""The validator's producer sends a vector of up to ``MAX_VECTOR_BYTES`` (librdkafka's
default stops at 1 MB: 4,500 uids of a sybil flood would not fit)."""
log = logging.getLogger(__name__)


def candidates(ledger: Ledger) -> list[Candidate]:
    """Every held uid with its latest submission and how it stands under the active version
    (the ledger's answers: :meth:`~speechstream.ledger.Ledger.submissions_by_uid`)."""
    out = []
    for uid, (holding, standing) in ledger.submissions_by_uid().items():
        if standing is None:
            out.append(Candidate(uid=uid, hotkey=holding.hotkey))
            continue
        out.append(Candidate(
            uid=uid, hotkey=holding.hotkey, hash=standing.hash, repo=standing.repo,
            block=standing.block, status=standing.status, score=standing.score,
            content_hash=standing.content_hash, withdrawn=standing.withdrawn,
        ))
    return out


def latest_vector(kafka: KafkaSettings, validator_id: str, verify: Verify | None = None, *,
                  client_name: str = PRODUCER_NAME) -> WeightsComputed | None:
    """This validator's latest vector on the ``weights`` topic (read whole): the last in the log
    (one partition) that ``verify`` lets count, whatever epoch or time its writer put on it.
    The reader names the group ``<client_name>-restore``, under the validator's own group
    prefix (its ACLs allow the groups that start with its client name)."""
    found: WeightsComputed | None = None

    def keep(env: Envelope) -> None:
        nonlocal found
        p = env.payload
        if isinstance(p, WeightsComputed) and p.validator == validator_id:
            found = p

    read_log(kafka, [kafka.topics.weights], keep, name=f"{client_name}-restore",
             expected=WeightsComputed, logger=log, verify=verify)
    return found


class Validator:
    """The validator service (module docstring). ``producer`` replaces the event producer,
    ``consumer`` the confluent consumer of the log (tests)."""

    name = "validator"

    def __init__(
        self,
        kafka: KafkaSettings,
        settings: ValidatorSettings,
        *,
        metrics: ValidatorMetrics,
        producer: EventProducer | None = None,
        consumer: Consumer | None = None,
        verify: Verify | None = None,
        signer: Signer | None = None,
    ) -> None:
        self._kafka = kafka
        self._settings = settings
        self._metrics = metrics
        expect_dead_letters(metrics.dead_letters, PRODUCER_NAME)
        self.ledger = Ledger()
        expected = ledger_expected(kafka)
        self._reader = LogReader(kafka, list(expected), self.ledger.apply,
                                 name=settings.client_name, expected=expected, logger=log,
                                 partition_eof=True, on_dead_letter=self._dead_letter,
                                 client=consumer, verify=verify)
        self._verify = verify
        self._producer = producer or EventProducer(kafka, signer=signer, **PRODUCER_CONFIG)
        self.last: WeightsComputed | None = None
        """The latest vector this validator published (or found on the weights topic)."""
        self.failed_epoch: int | None = None
        """The latest epoch whose vector could not be computed or published (tried again at
        the next epoch, not before)."""
        self._first_head: int | None = None
        self._letters: list[tuple[Message, Envelope]] = []
        self._last_poll: float | None = None

    def start(self) -> None:
        """Find the latest vector, then read the log from its start."""
        self.last = latest_vector(self._kafka, self._settings.validator_id, self._verify,
                                  client_name=self._settings.client_name)
        if self.last is not None:
            log.info("validator %s resumes after epoch %d (block %d)",
                     self._settings.validator_id, self.last.epoch, self.last.block)
        self._producer.start()
        self._reader.consumer.start(from_start=True)

    def run(self, stop: threading.Event) -> None:
        """Read and run each epoch as the head reaches it, until ``stop`` is set."""
        while not stop.is_set():
            skipped = self._reader.undecodable + self._reader.unprocessable
            self._reader.read_new(self._settings.poll_timeout_s)
            self._last_poll = time.monotonic()
            now_skipped = self._reader.undecodable + self._reader.unprocessable
            if now_skipped > skipped:
                self._metrics.undecodable.inc(now_skipped - skipped)
            self.send_dead_letters()
            if self.ledger.head is not None:
                self._note_head(self.ledger.head)
            if self.due() and self._reader.drained() and self._reader.caught_up():
                self.run_epoch()

    def _note_head(self, head: int) -> None:
        """The head and the blocks since the latest published epoch began, as gauges."""
        if self._first_head is None:
            self._first_head = head
        since = head - (self.last.epoch * self._settings.epoch_blocks if self.last is not None
                        else self._first_head)
        self._metrics.head_block.set(head)
        self._metrics.epoch_blocks.set(self._settings.epoch_blocks)
        self._metrics.blocks_since_weights.set(max(0, since))

    def _dead_letter(self, msg: Message, letter: Envelope) -> None:
        self._letters.append((msg, letter))

    def send_dead_letters(self) -> None:
        """Publish the dead letters of the records skipped since the last call. A delivery
        failure is logged and counted: the next start reads those records again and gives the
        same dead letters (the same event ids)."""
        if not self._letters:
            return
        letters, self._letters = self._letters, []
        try:
            for msg, letter in letters:
                self._producer.send(self._kafka.topics.deadletter, letter, key=msg.key())
            self._producer.flush()
        except DeliveryError as exc:
            log.error("%d dead letter(s) not delivered: %s", len(letters), exc)
            self._metrics.dead_letter_failures.inc(len(letters))
            return
        count_dead_letters(self._metrics.dead_letters, (letter for _, letter in letters))

    def due(self) -> bool:
        """Whether the head has reached an epoch to run: one after the latest vector, and
        after the latest that failed."""
        head = self.ledger.head
        if head is None:
            return False
        epoch = head // self._settings.epoch_blocks
        if self.failed_epoch is not None and epoch <= self.failed_epoch:
            return False
        return self.last is None or epoch > self.last.epoch

    def run_epoch(self) -> WeightsComputed | None:
        """Compute and publish the vector of the head's epoch (and the minerboard entries); the
        vector, or None when it could not be computed or published (logged, counted, and tried
        again at the next epoch)."""
        assert self.ledger.head is not None, "no head block yet"
        started = time.perf_counter()
        head, settings = self.ledger.head, self._settings
        epoch = head // settings.epoch_blocks
        try:
            now = candidates(self.ledger)
            entries = compute_weights(now, cutoff_block=head,
                                      previous=carried_over(self.last, now))
            vector = WeightsComputed.of(settings.validator_id, epoch, head, entries)
        except Exception as exc:  # noqa: BLE001 - what the log holds: next epoch, again
            if caused_by_kafka(exc):
                raise
            return self._failed(epoch, "compute", exc)
        source = f"{vector.validator}:{vector.epoch}"
        t = self._kafka.topics
        try:
            self._producer.send(t.weights, new_envelope(
                vector, key=vector.validator, producer=PRODUCER_NAME,
                event_id=derived_event_id(source, "weights"),
            ))
            self._producer.flush()
        except DeliveryError as exc:
            return self._failed(epoch, "publish", exc)
        self.last = vector
        try:
            for e in entries:
                if e.hash is not None and e.hotkey is not None and e.block is not None:
                    board = MinerboardUpdated(hash=e.hash, uid=e.uid, hotkey=e.hotkey,
                                              block=e.block)
                    self._producer.send(t.minerboard, new_envelope(
                        board, key=str(e.uid), producer=PRODUCER_NAME,
                        event_id=derived_event_id(f"{source}:{e.uid}", "minerboard"),
                    ))
            self._producer.flush()
        except DeliveryError as exc:  # the vector is out; the board is sent again next epoch
            log.error("epoch %d: minerboard entries not delivered: %s", epoch, exc)
            self._metrics.failed_epochs.labels("minerboard").inc()
        elapsed = time.perf_counter() - started
        self._metrics.epochs.inc()
        self._metrics.epoch_seconds.observe(elapsed)
        self._metrics.last_epoch.set(vector.epoch)
        log.info("epoch %d at block %d: %d uids, %d valid, in %.3fs", vector.epoch, head,
                 len(entries), sum(e.invalid is None for e in entries), elapsed)
        return vector

    def _failed(self, epoch: int, step: str, exc: Exception) -> None:
        self.failed_epoch = epoch
        self._metrics.failed_epochs.labels(step).inc()
        log.error("epoch %d: the vector could not be %s; the next epoch tries again: %s",
                  epoch, "computed" if step == "compute" else "published", exc,
                  exc_info=step == "compute")

    def close(self) -> None:
        """Flush and close the producer, close the consumer."""
        try:
            self._producer.close()
        finally:
            self._reader.close()

    def lag(self) -> Iterable[Lag]:
        """Its consumer's lag (``speechstream_consumer_lag``)."""
        return lag_of([self._reader.consumer])

    def consumers(self) -> list[EventConsumer]:
        """Its consumer (the age of the records it takes is observed)."""
        return [self._reader.consumer]

    def health(self) -> Health:
        """Healthy while it polls; the head and the latest epoch in the details."""
        if self._last_poll is None:
            return Health(False, "starting")
        age = time.monotonic() - self._last_poll
        healthy = age < max(30.0, 10 * self._settings.poll_timeout_s)
        return Health(healthy, "ok" if healthy else "stalled", {
            "head": self.ledger.head, "last_epoch": self.last.epoch if self.last else None,
            "failed_epoch": self.failed_epoch, "uids": len(self.ledger.registry),
        })
