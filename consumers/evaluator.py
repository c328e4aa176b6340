"""The evaluator consumer: one request at a time, the score and its offset in one transaction.

Delivery semantics (exactly one visible score per request):

- PRECHECK and RUNNING are each published in a small transaction of their own, committed at
  once, so a user sees them while the evaluation runs. The evaluator publishes PRECHECK when it
  picks a request up; the scorer reports RUNNING through the status callback
  (``scoring.types.Report``). Each status is published at most once per evaluation, never
  backwards.
- The score event (or the dead letter of an undecodable request) and the consumed offset are
  committed together in one transaction. A process killed mid-way commits nothing: after a
  restart the request is evaluated again, and read_committed consumers see exactly one score.
- Every event id is derived from the request's event id, so a re-evaluation re-publishes the
  same status ids and the same score id: idempotent sinks keep one row.
- A FAILED score is committed with a ``submission.failed`` keyed by the submission's hotkey
  (``submissions.failed``), in the same transaction: the intake worker frees the hotkey's
  rate-limit window, exactly when the score is visible.
- A request whose ``(hash, scoring_version)`` already has a committed score (by this evaluator
  or another of its group: ``consumers.scored``) is acknowledged without evaluating: its
  offset is committed in a transaction of its own, with nothing published. A submission
  re-published, or requests re-sent after a crash upstream, cost no evaluation.
- A withdrawn request (``evaluation.cancelled``: displaced by an earlier duplicate) or a
  re-score of one is acknowledged the same way, nothing published (no ``submission.failed``:
  the displacement freed the window). A cancellation read only after the evaluation began
  does not stop it; validators and the sink do not count that score (``consumers.scored``).
- The transactional id is ``<group id>.<evaluator id>-<device>``: stable across restarts, so a
  restarted evaluator fences its zombie and aborts whatever transaction it left open.
- An aborted transaction (rebalance, broker hiccup) rewinds the consumer to the request. The
  result computed for it is kept (by the request's event id) until its transaction commits:
  the request read again commits that result, it is not evaluated again. If meanwhile another
  evaluator committed a score for it (the partition moved), the kept result is dropped
  unpublished. A fatal producer error (fenced: another instance took the transactional id
  over) stops the evaluator; the result is kept on disk too (``consumers.kept``), so its
  successor on the same machine commits it instead of evaluating the request again.
- A request that decodes but cannot be processed (anything its handling raises that is not a
  Kafka or transaction error: a status or score no event can hold, a value the code does not
  expect) goes to the dead-letter topic with the reason, its offset in the same transaction,
  as an undecodable request does: no request makes the evaluator crash, or loop. A scorer's
  outcome no score event can hold, or one over ``MAX_EVENT_BYTES`` encoded, is a FAILED score
  with the reason instead (samples and manifest left out).

Two lanes (``speechstream.kafka.lanes``): new submissions (``evaluation.requests``) first;
re-scores (``evaluation.rescores``, ``speechstream rescore``) only while no new submission
waits. A FAILED re-score frees no rate-limit window: it is not the submission failing.

One shape from the engine to the event: the scorer returns the engine's ``ScoringResult``
(``consumers.scorers.score_submission``), and ``Evaluator.score_envelope`` turns it into
``score.computed``, the one place it changes shape.

Trust (``speechstream.trust``): with ``verify``, a request (or re-score) whose signer may not
say it is dead-lettered with an "untrusted" reason and never evaluated, and a score or
cancellation read by the index (``consumers.scored``) whose signer may not say it never counts
(its dead letter goes out with the evaluator's next transaction). With ``signer`` every event
it writes (statuses, scores, ``submission.failed``, dead letters) is signed; each names this
evaluator (``evaluator_id``), the name the operator trusts its key under.

The consume loop and the transactions are the floor's (``speechstream.kafka``); this module is
what an evaluator does with one request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

from confluent_kafka import Consumer, Message, Producer, TopicPartition
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from consumers.base import Scorer
from consumers.kept import KeptResults
from consumers.metrics import EvaluatorMetrics
from consumers.scored import Scored, ScoredIndex
from consumers.scorers import failure_reason, score_submission
from consumers.settings import EvaluatorSettings
from schemas.codec import MAX_EVENT_BYTES, encode
from schemas.envelope import Envelope, derived_event_id, new_envelope
from schemas.events import (
    EvaluationRequested,
    EvaluationStatusChanged,
    SampleAudio,
    ScoreComputed,
    ScoreManifest,
    SubmissionFailed,
)
from schemas.fields import STATUS_RANK
from schemas.trust import SIGNATURE_BYTES
from scoring.types import ScoringResult, Step, Submission
from speechstream.exceptions import TransactionAbortedError
from speechstream.kafka.consumer import SMALL_PREFETCH, Batch, EventConsumer, position_after
from speechstream.kafka.lag import Lag, lag_of
from speechstream.kafka.lanes import Lanes
from speechstream.kafka.records import (
    Verify,
    caused_by_kafka,
    count_dead_letters,
    expect_dead_letters,
    unprocessable_letter,
    unprocessable_reason,
)
from speechstream.kafka.transactions import (
    Outgoing,
    TransactionalProducer,
    transactional_config,
)
from speechstream.memory import Trimmer
from speechstream.monitoring import Health
from speechstream.settings import KafkaSettings
from speechstream.signer import Signer

PRODUCER_NAME = "speechstream-evaluator"
RETRY_BACKOFF_S = 1.0
MAX_REASON = 2000
"""A score's reason holds at most this many characters (``schemas.fields.Text``)."""


def evaluator_id(settings: EvaluatorSettings) -> str:
    """The id recorded on every event: the configured evaluator id and the device."""
    return f"{settings.evaluator_id}-{settings.device}"


def transactional_id(settings: EvaluatorSettings) -> str:
    """Stable across restarts of one evaluator, distinct per device and consumer group."""
    return f"{settings.group_id}.{evaluator_id(settings)}"


def producer_config(kafka: KafkaSettings, settings: EvaluatorSettings) -> dict[str, Any]:
    """The transactional producer's librdkafka configuration (murmur2 partitioner)."""
    return transactional_config(
        kafka, transactional_id(settings), settings.transaction_timeout_ms
    )


def consumer_config(kafka: KafkaSettings, settings: EvaluatorSettings) -> dict[str, Any]:
    """The request consumer's configuration: read_committed, offsets only via transactions.

    ``max.poll.interval.ms`` exceeds the longest evaluation (``transaction_timeout_ms``): the
    consumer does not poll while it evaluates, and must keep its partitions meanwhile. Static
    membership (``group.instance.id``, the transactional id): a restarted evaluator gets its
    partitions back at once instead of after the session timeout of its dead predecessor.

    The range assignor gives each evaluator its share of each topic, requests and re-scores
    alike. The cooperative-sticky assignor balanced partition counts only: a second evaluator
    got every re-score partition and no request partition, and added nothing for new
    submissions (``bench/scoring/fleet.py``). Range is eager: when an evaluator joins (or a
    static one's session ends), every member gives its partitions up at its next poll, after
    its current evaluation, and the group resumes once all have rejoined. A static member's
    restart causes no rebalance. (The broker's KIP-848 protocol balances per topic without
    stopping, but refuses a restarted static member until its predecessor's session ends.)
    """
    return kafka.to_librdkafka(**_consumer_overrides(settings))


def _consumer_overrides(settings: EvaluatorSettings) -> dict[str, Any]:
    return {
        "group.id": settings.group_id,
        "group.instance.id": transactional_id(settings),
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "range",
        "max.poll.interval.ms": settings.transaction_timeout_ms + 60_000,
        "session.timeout.ms": settings.session_timeout_ms,
        **SMALL_PREFETCH,  # one request at a time: no 64 MiB of the backlog held meanwhile
    }


def _failed_score(reason: str, result: ScoringResult, manifest: ScoreManifest | None,
                  timings: dict[str, float], common: dict[str, Any]) -> ScoreComputed:
    """A FAILED score with ``reason`` (cut to fit) for an outcome no score event can hold: with
    the result's revision, content hash, ``manifest`` and ``timings`` when they fit, else
    without them."""
    reason = reason if len(reason) <= MAX_REASON else reason[:MAX_REASON - 1] + "…"
    try:
        return ScoreComputed(status="FAILED", reason=reason, timings=timings,
                             revision=result.revision, content_hash=result.content_hash,
                             manifest=manifest, **common)
    except ValidationError:
        return ScoreComputed(status="FAILED", reason=reason, **common)


def to_submission(request: EvaluationRequested) -> Submission:
    """The scoring engine's view of an evaluation request."""
    return Submission(
        hash=request.hash, repo_namespace=request.repo_namespace, repo_name=request.repo_name,
        revision=request.revision, config_template=request.config_template,
        scoring_version=request.scoring_version,
    )


class Evaluator:
    """Consumes evaluation requests and emits statuses and scores for one device.

    ``consumer`` and ``producer`` (confluent clients) may be injected (tests); otherwise
    ``start()`` creates them. Without ``metrics`` the evaluator records into a registry of its
    own (served nowhere). ``verify`` refuses what an untrusted key wrote, ``signer`` signs
    what it writes (module docstring).
    """

    name = "evaluator"

    def __init__(
        self,
        kafka: KafkaSettings,
        settings: EvaluatorSettings,
        scorer: Scorer,
        *,
        metrics: EvaluatorMetrics | None = None,
        logger: logging.Logger | None = None,
        consumer: Consumer | None = None,
        producer: Producer | None = None,
        scored: Scored | None = None,
        verify: Verify | None = None,
        signer: Signer | None = None,
        kept: KeptResults | None = None,
    ) -> None:
        self._kafka = kafka
        self._settings = settings
        self._trimmer = Trimmer(settings.malloc_trim)
        self._scorer = scorer
        self._metrics = metrics or EvaluatorMetrics.create(CollectorRegistry())
        expect_dead_letters(self._metrics.dead_letters, PRODUCER_NAME)
        self._log = logger or logging.getLogger(__name__)
        self.evaluator_id = evaluator_id(settings)
        t = kafka.topics
        overrides = _consumer_overrides(settings)
        self._lanes = Lanes(
            [t.evaluation_requests], [t.rescores], logger=self._log,
            cooperative=overrides["partition.assignment.strategy"] != "range",
        )
        self._consumer = EventConsumer(
            kafka, name=PRODUCER_NAME, topics=[t.evaluation_requests, t.rescores],
            config=overrides, expected=EvaluationRequested,
            client=consumer, logger=self._log, verify=verify,
            progress_window_s=settings.progress_window_s,
        )
        self._producer = TransactionalProducer(
            producer_config(kafka, settings), client=producer,
            on_abort=self._metrics.transactions_aborted.inc,
            on_replace=self._metrics.producers_replaced.inc, logger=self._log, signer=signer,
        )
        self._index_letters: list[Outgoing] = []
        """Dead letters of the scores and cancellations the index refused, sent with the next
        transaction (read again after a restart, they give the same letters)."""
        self._scored = scored or ScoredIndex(kafka, logger=self._log, verify=verify,
                                             on_dead_letter=self._index_letter)
        self._last_poll: float | None = None
        self._evaluating: str | None = None
        self._kept = kept if kept is not None else KeptResults(
            settings.state_dir / transactional_id(settings), logger=self._log)
        """Results computed and not committed yet (``consumers.kept``)."""

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Init transactions (fences a zombie), read what is scored already, set up the
        scorer, subscribe."""
        self._producer.start()
        self._kept.start()
        self._scored.start()
        self._scorer.start()
        self._consumer.start(on_revoke=self._on_revoke, on_assign=self._lanes.on_assign)
        self._log.info(
            "evaluator %s on %s consuming %s, then %s while it is empty (transactional id %s)",
            self.evaluator_id, self._settings.device, self._kafka.topics.evaluation_requests,
            self._kafka.topics.rescores, transactional_id(self._settings),
        )

    def run(self, stop: threading.Event) -> None:
        """Poll and evaluate until ``stop`` is set (an evaluation in progress finishes first)."""
        while not stop.is_set():
            self._lanes.steer(self._consumer.client)
            batch = self._consumer.poll(1, self._settings.poll_timeout_s)
            self._last_poll = time.monotonic()
            self._metrics.last_poll.set(time.time())
            try:
                self.process(batch)
            except TransactionAbortedError as exc:
                (msg,) = batch.messages or [m for m, _ in batch.dead_letters]
                self._log.warning("offset %s/%s evaluated again: %s",
                                  msg.partition(), msg.offset(), exc)
                self._consumer.rewind(msg)
                stop.wait(RETRY_BACKOFF_S)

    def close(self) -> None:
        """Abort an open transaction, close the consumer, flush the producer, close the scorer.

        A static member does not leave its group on close: its partitions wait for it (a
        restart) until the session timeout, then go to the other evaluators.
        """
        try:
            if self._producer.in_transaction:
                self._producer.abort("closing")
            self._consumer.close()
        finally:
            try:
                self._producer.close()
            finally:
                try:
                    self._scorer.close()
                finally:
                    self._scored.close()

    def lag(self) -> Iterable[Lag]:
        """Its consumer's lag (``speechstream_consumer_lag``)."""
        return lag_of([self._consumer])

    def consumers(self) -> list[EventConsumer]:
        """Its consumer (the age of the records it takes is observed)."""
        return [self._consumer]

    def health(self) -> Health:
        """Healthy while the last poll is recent, or an evaluation (which blocks polls) runs,
        and it makes progress (:meth:`EventConsumer.stalled`)."""
        stalled = self._consumer.stalled()
        if stalled is not None:
            return Health(False, "not progressing", {"reason": stalled,
                                                     "evaluating": self._evaluating})
        age = None if self._last_poll is None else time.monotonic() - self._last_poll
        limit_s = max(10 * self._settings.poll_timeout_s, 30.0)
        healthy = age is not None and (age < limit_s or self._evaluating is not None)
        status = "starting" if age is None else "ok" if healthy else "stalled"
        return Health(healthy, status, {
            "last_poll_age_s": None if age is None else round(age, 3),
            "evaluating": self._evaluating,
        })

    # -- one request -----------------------------------------------------------------------

    def handle(self, msg: Message) -> None:
        """Evaluate one consumed message (decoded by the floor) and commit with its offset."""
        self.process(self._consumer.decode([msg]))

    def process(self, batch: Batch) -> None:
        """Commit each dead letter with its offset; evaluate each request and commit its score
        with its offset (the evaluator polls one record at a time). A request whose handling
        raises anything but a Kafka or transaction error is dead-lettered with its offset."""
        for msg, letter in batch.dead_letters:
            self._dead_letter(msg, letter)
        for msg, request_env in zip(batch.messages, batch.envelopes, strict=True):
            try:
                self._evaluate_one(msg, request_env)
            except Exception as exc:
                if caused_by_kafka(exc):
                    raise
                reason = unprocessable_reason(exc, consumer=PRODUCER_NAME)
                self._log.error("request %s/%s@%s set aside: %s", msg.topic(), msg.partition(),
                                msg.offset(), reason, exc_info=exc)
                self._dead_letter(msg, unprocessable_letter(msg, reason,
                                                            consumer=PRODUCER_NAME))
        if batch.messages:
            self._trimmer.after_work(time.monotonic())

    def _dead_letter(self, msg: Message, letter: Envelope) -> None:
        """Commit ``letter`` to the dead-letter topic with ``msg``'s offset."""
        self._transact([(self._kafka.topics.deadletter, msg.key(), letter)], offsets_of=msg)
        count_dead_letters(self._metrics.dead_letters, [letter])

    def _evaluate_one(self, msg: Message, request_env: Envelope) -> None:
        request = request_env.payload
        assert isinstance(request, EvaluationRequested)
        self._scored.refresh()
        withdrawn = self._scored.withdrawal(request.rescore_of or request_env.event_id)
        if withdrawn is not None:
            # Displaced by an earlier duplicate: nothing published (not a FAILED score).
            self._transact([], offsets_of=msg)
            self._kept.drop(request_env.event_id)
            self._metrics.withdrawn.inc()
            self._log.info("%s (%s) withdrawn: %s; acknowledged, not evaluated", request.hash,
                           request.scoring_version, withdrawn.reason)
            return
        if (request.hash, request.scoring_version) in self._scored:
            # Delivered again (a re-published submission, a crash upstream): its score is
            # committed; acknowledge the request without evaluating it.
            self._transact([], offsets_of=msg)
            self._kept.drop(request_env.event_id)
            self._metrics.already_scored.inc()
            self._log.info("%s (%s) already has a committed score: acknowledged, not "
                           "evaluated again", request.hash, request.scoring_version)
            return
        kept = self._kept.get(request_env.event_id, request.hash, request.scoring_version)
        if kept is not None:
            # Its transaction failed after the evaluation: commit what was computed.
            result, elapsed = kept
            self._metrics.commits_retried.inc()
            self._log.info("%s (%s): committing the result computed before its transaction "
                           "failed; not evaluated again", request.hash, request.scoring_version)
        else:
            result, elapsed = self._evaluate_timed(request_env.event_id, request)
            self._kept.put(request_env.event_id, request.hash, request.scoring_version, result,
                           elapsed)
        score_env = self.score_envelope(request_env, result, elapsed)
        outgoing: list[Outgoing] = [(self._kafka.topics.scores, request.hash, score_env)]
        outgoing += [(self._kafka.topics.audio, request.hash, env)
                     for env in self.audio_envelopes(request_env, result, score_env)]
        score = score_env.payload
        assert isinstance(score, ScoreComputed)
        status = score.status
        if status == "FAILED" and request.rescore_of is None:
            # In the same transaction: a failed submission frees its hotkey's window (a failed
            # re-score is not the submission failing: it frees nothing).
            outgoing.append((self._kafka.topics.failed, request.hotkey,
                             self.failed_envelope(request_env, score_env)))
        self._transact(outgoing, offsets_of=msg)
        self._kept.drop(request_env.event_id)
        self._scored.add(request.hash, request.scoring_version)
        self._metrics.evaluations.labels(status).inc()
        self._metrics.evaluation_seconds.observe(elapsed)
        self._log.info("scored %s in %.1fs: %s %s", request.hash, elapsed, status,
                       score.total_score if status == "COMPLETED" else score.reason)

    def score_envelope(self, request_env: Envelope, result: ScoringResult,
                       elapsed_s: float) -> Envelope:
        """The score event of ``result``: where the engine's result becomes ``score.computed``
        (a failure's reason prefixed with its code, the evaluator's id in the manifest, the
        evaluation's wall time in the timings). A result no event can hold becomes FAILED."""
        request = request_env.payload
        assert isinstance(request, EvaluationRequested)
        common = {
            "hash": request.hash,
            "scoring_version": request.scoring_version,
            "evaluator": self.evaluator_id,
            "request_event_id": request_env.event_id,
            "rescore_of": request.rescore_of,
        }
        timings = {**result.timings, "evaluation_s": round(elapsed_s, 3)}
        manifest = result.manifest
        if manifest is not None:
            manifest = manifest.model_copy(update={"evaluator": self.evaluator_id})
        event_id = derived_event_id(request_env.event_id, f"score:{request.scoring_version}")
        try:
            event = ScoreComputed(
                status=result.status, total_score=result.total_score, reason=result.full_reason,
                samples=result.samples, timings=timings, revision=result.revision,
                content_hash=result.content_hash, manifest=manifest, **common,
            )
        except ValidationError as exc:
            self._log.error("scorer returned an invalid outcome for %s: %s", request.hash, exc)
            event = _failed_score(f"invalid scorer outcome: {failure_reason(exc)}", result,
                                  manifest, timings, common)
        env = new_envelope(event, key=request.hash, producer=PRODUCER_NAME, event_id=event_id)
        size = len(encode(env)) + SIGNATURE_BYTES  # signed when it is sent
        if size > MAX_EVENT_BYTES:  # no reader would decode it
            self._log.error("the score of %s is %d bytes encoded: FAILED", request.hash, size)
            event = _failed_score(
                f"score event of {size} bytes, over the limit of {MAX_EVENT_BYTES}", result,
                None, {"evaluation_s": timings["evaluation_s"]}, common)
            env = new_envelope(event, key=request.hash, producer=PRODUCER_NAME,
                               event_id=event_id)
        return env

    def audio_envelopes(self, request_env: Envelope, result: ScoringResult,
                        score_env: Envelope) -> list[Envelope]:
        """The ``sample.audio`` of each clip the evaluation kept, naming its score; ids derived
        from the request's, so a retried commit or a replay writes the same events."""
        request = request_env.payload
        assert isinstance(request, EvaluationRequested)
        out = []
        for clip in result.audio:
            event = SampleAudio(
                hash=request.hash, scoring_version=request.scoring_version,
                evaluator=self.evaluator_id, score_event_id=score_env.event_id,
                request_event_id=request_env.event_id, **clip.model_dump(),
            )
            event_id = derived_event_id(
                request_env.event_id, f"audio:{request.scoring_version}:{clip.index}:{clip.clip}")
            env = new_envelope(event, key=request.hash, producer=PRODUCER_NAME,
                               event_id=event_id)
            size = len(encode(env)) + SIGNATURE_BYTES
            if size > MAX_EVENT_BYTES:  # no reader would decode it; the score stands
                self._log.warning("clip %d (%s) of %s is %d bytes encoded: not published",
                                  clip.index, clip.clip, request.hash, size)
                continue
            out.append(env)
        return out

    def failed_envelope(self, request_env: Envelope, score_env: Envelope) -> Envelope:
        """The ``submission.failed`` of a FAILED score, keyed by the hotkey; its id is derived
        from the request's, like the score's."""
        request, score = request_env.payload, score_env.payload
        assert isinstance(request, EvaluationRequested) and isinstance(score, ScoreComputed)
        event = SubmissionFailed(
            hash=request.hash, hotkey=request.hotkey, block=request.block,
            scoring_version=request.scoring_version, reason=score.reason,
            score_event_id=score_env.event_id,
        )
        event_id = derived_event_id(request_env.event_id, f"failed:{request.scoring_version}")
        return new_envelope(event, key=request.hotkey, producer=PRODUCER_NAME,
                            event_id=event_id)

    def status_envelope(self, request_env_id: str, request: EvaluationRequested,
                        status: Step, note: str | None) -> Envelope:
        """The status event of one step; its id depends only on the request and the status."""
        event = EvaluationStatusChanged(
            hash=request.hash, status=status, scoring_version=request.scoring_version,
            evaluator=self.evaluator_id, note=note, rescore_of=request.rescore_of,
        )
        event_id = derived_event_id(request_env_id, f"status:{status}")
        return new_envelope(event, key=request.hash, producer=PRODUCER_NAME, event_id=event_id)

    def _evaluate_timed(self, request_event_id: str,
                        request: EvaluationRequested) -> tuple[ScoringResult, float]:
        """The scorer's result and the evaluation's wall time."""
        self._evaluating = request.hash
        self._metrics.in_progress.inc()
        started = time.perf_counter()
        try:
            result = self._evaluate(request_event_id, request)
        finally:
            self._metrics.in_progress.dec()
            self._evaluating = None
        return result, time.perf_counter() - started

    def _evaluate(self, request_event_id: str, request: EvaluationRequested) -> ScoringResult:
        """Publish PRECHECK, then run the scorer; a Kafka failure while publishing a status is
        raised (the request is evaluated again), not a FAILED result."""
        reported: list[Step] = []

        def report(status: Step, note: str | None) -> None:
            if reported and STATUS_RANK[status] <= STATUS_RANK[reported[-1]]:
                return  # each status once per evaluation, never backwards
            env = self.status_envelope(request_event_id, request, status, note)
            self._transact(
                [(self._kafka.topics.evaluation_status, request.hash, env)], offsets_of=None
            )
            reported.append(status)

        report("PRECHECK", f"{request.repo_namespace}/{request.repo_name} picked up by "
               f"{self.evaluator_id}")
        return score_submission(self._scorer, to_submission(request), report, self._log)

    # -- transactions ----------------------------------------------------------------------

    def _index_letter(self, msg: Message, letter: Envelope) -> None:
        """A score or cancellation the index skipped: its dead letter, for the next
        transaction."""
        self._log.warning("%s/%s@%s not counted: %s", msg.topic(), msg.partition(),
                          msg.offset(), getattr(letter.payload, "error", "?"))
        self._index_letters.append((self._kafka.topics.deadletter, msg.key(), letter))

    def _transact(self, events: list[Outgoing], *, offsets_of: Message | None) -> None:
        """Produce ``events`` (and commit ``offsets_of`` + 1) in one committed transaction,
        with the dead letters of what the index refused since the last one."""
        letters, self._index_letters = self._index_letters, []
        try:
            if offsets_of is None:
                self._producer.transact([*events, *letters])
                return
            self._producer.transact(
                [*events, *letters], offsets=[position_after(offsets_of)],
                group_metadata=self._consumer.client.consumer_group_metadata(),
            )
            self._consumer.note_commit()
        except BaseException:
            self._index_letters[:0] = letters  # not committed: with the next one
            raise

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Rebalance: an open transaction would commit offsets we no longer own; abort it."""
        self._lanes.on_revoke(consumer, partitions)
        if self._producer.in_transaction:
            self._producer.abort(f"partitions revoked: {[p.partition for p in partitions]}")
        self._log.info("partitions revoked: %s", [p.partition for p in partitions])
