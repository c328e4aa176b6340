"""The audit consumer: re-scores a deterministic sample of the scores on its own device.

It reads the score topic in a consumer group of its own, picks a score when
``sha256("audit:<hash>:<version>")`` falls in the first ``sample_rate`` of the hash space
(every auditor picks the same ones), scores the model again as the score's manifest describes
it (the revision actually evaluated, the same scoring version) through the evaluator's
``Scorer`` contract (``consumers.scorers.score_submission``; the TTS scorer by default: an
isolated evaluation process on the auditor's device), and publishes ``score.audited``:

- ``agree`` when both totals lie within the tolerance;
- ``disagree`` when they do not, or when the audit fails where the score completed (a model
  that cannot be loaded or produces no sample);
- ``unavailable`` when the model cannot be scored again as it was: gone from its source, its
  weights changed since (another content hash), a score without a manifest (written before
  manifests existed), or the auditor's own limits (time, memory, a missing environment, a
  scoring version it does not compute, its scorer raising).

Only COMPLETED scores are audited: a FAILED score pays nothing. Each audit's event id derives
from the score's event id and the auditor's id, and the offset is committed after the audit
is delivered: a restart audits a score again at most, and the sink keeps one row.

A score that does not decode, or whose audit raises anything but a Kafka error (a COMPLETED
score without a total, manifests whose differences no audit event can hold), goes to the
dead-letter topic with the reason, and the offset moves past it: no score stops the auditor.

Trust (``speechstream.trust``): with ``verify`` a score whose signer may not say it (not a
trusted evaluator, or one naming another evaluator) is dead-lettered with an "untrusted"
reason and never audited; with ``signer`` every audit and dead letter is signed, and each
audit names this auditor (``auditor_id``), the name the operator trusts its key under.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

from confluent_kafka import Consumer
from prometheus_client import CollectorRegistry

from consumers.base import Scorer
from consumers.metrics import AuditMetrics
from consumers.scorers import score_submission
from consumers.settings import AuditSettings
from consumers.tts import TTSScorer
from schemas.envelope import Envelope, derived_event_id, new_envelope
from schemas.events import ScoreAudited, ScoreComputed, ScoreManifest
from schemas.fields import AuditVerdict
from scoring.types import ScoringResult, Submission, silent
from speechstream.kafka.consumer import SMALL_PREFETCH, EventConsumer
from speechstream.kafka.lag import Lag, lag_of
from speechstream.kafka.producer import EventProducer
from speechstream.kafka.records import (
    Verify,
    caused_by_kafka,
    count_dead_letters,
    expect_dead_letters,
    unprocessable_letter,
    unprocessable_reason,
)
from speechstream.memory import Trimmer
from speechstream.monitoring import Health
from speechstream.settings import KafkaSettings, ScoringSettings
from speechstream.signer import Signer

PRODUCER_NAME = "speechstream-audit"
GONE = frozenset({"REPO_NOT_FOUND", "NO_WEIGHTS", "NO_CONFIG"})
"""Failure codes of a model no longer at its source as it was scored."""
AUDITOR_LIMITS = frozenset({"TIME_LIMIT", "OUT_OF_MEMORY", "CRASHED", "ARCHITECTURE_ELSEWHERE",
                            "METHOD_UNAVAILABLE"})
"""Failure codes of the auditor's own limits: they say nothing of the score."""
IGNORED_DIFFERENCES = frozenset({"evaluator", "reference_cached"})
"""Manifest fields that differ without the score being reproduced differently: who scored it,
and whether a reference came from the reference cache (which is lossless)."""


def selected(hash_: str, scoring_version: str, sample_rate: float) -> bool:
    """Whether the score of ``(hash, version)`` is in the audited sample (deterministic)."""
    digest = hashlib.sha256(f"audit:{hash_}:{scoring_version}".encode()).digest()
    return int.from_bytes(digest[:8], "big") < sample_rate * 2**64


def manifest_differences(scored: ScoreManifest, audited: ScoreManifest | None
                         ) -> dict[str, list[Any]]:
    """Fields of the two manifests that differ (``generation`` field by field), as
    ``field → [scored, audited]``; :data:`IGNORED_DIFFERENCES` are left out (the evaluator's
    id always differs; a cached reference is the same audio)."""
    if audited is None:
        return {}
    a, b = scored.model_dump(mode="json"), audited.model_dump(mode="json")
    out: dict[str, list[Any]] = {}
    for name in sorted(set(a) | set(b)):
        if name in IGNORED_DIFFERENCES:
            continue
        x, y = a.get(name), b.get(name)
        if isinstance(x, dict) and isinstance(y, dict):
            for key in sorted(set(x) | set(y)):
                if x.get(key) != y.get(key):
                    out[f"{name}.{key}"] = [x.get(key), y.get(key)]
        elif x != y:
            out[name] = [x, y]
    return out


def judge(score: ScoreComputed, result: ScoringResult | None, tolerance: float
          ) -> tuple[AuditVerdict, str | None]:
    """The verdict of an audit result on a COMPLETED score, and its reason."""
    manifest = score.manifest
    if manifest is None or result is None:
        return "unavailable", "the score has no manifest (written before manifests existed)"
    if result.status == "FAILED":
        # Without a code the engine never judged the model (a version this auditor does not
        # compute, its scorer raising): the auditor's limit, not the score's.
        code = result.failure_code
        if code in GONE:
            return "unavailable", f"the model is gone from its source: {result.full_reason}"
        if code is None or code in AUDITOR_LIMITS:
            return "unavailable", f"the auditor could not score it: {result.full_reason}"
        return "disagree", f"the audit FAILED where the score COMPLETED: {result.full_reason}"
    if (manifest.content_hash and result.content_hash
            and manifest.content_hash != result.content_hash):
        return "unavailable", (f"the weights changed at the source (content hash "
                               f"{manifest.content_hash[:12]}… scored, "
                               f"{result.content_hash[:12]}… now)")
    assert score.total_score is not None and result.total_score is not None
    diff = abs(score.total_score - result.total_score)
    if diff <= tolerance:
        return "agree", None
    return "disagree", f"totals differ by {diff:.3g} (tolerance {tolerance:g})"


class Auditor:
    """The audit service (module docstring). ``scorer`` scores a submission on the auditor's
    device (default: the TTS scorer, an isolated evaluation process, as the evaluator runs it);
    ``consumer`` and ``producer`` replace the Kafka clients (tests)."""

    name = "auditor"

    def __init__(
        self,
        kafka: KafkaSettings,
        settings: AuditSettings,
        scoring: ScoringSettings,
        *,
        metrics: AuditMetrics | None = None,
        scorer: Scorer | None = None,
        consumer: Consumer | None = None,
        producer: EventProducer | None = None,
        logger: logging.Logger | None = None,
        verify: Verify | None = None,
        signer: Signer | None = None,
    ) -> None:
        self._kafka = kafka
        self._settings = settings
        self._trimmer = Trimmer(settings.malloc_trim)
        self._metrics = metrics or AuditMetrics.create(CollectorRegistry())
        expect_dead_letters(self._metrics.dead_letters, PRODUCER_NAME)
        self._log = logger or logging.getLogger(__name__)
        self._scorer = scorer or TTSScorer(scoring, device=settings.device)
        self.tolerance = settings.tolerance_for_device()
        self._consumer = EventConsumer(
            kafka, name=PRODUCER_NAME, topics=[kafka.topics.scores],
            config={"group.id": settings.group_id, "enable.auto.commit": False,
                    "isolation.level": "read_committed", "auto.offset.reset": "earliest",
                    "max.poll.interval.ms": int(scoring.time_limit_s * 1000) + 300_000,
                    **SMALL_PREFETCH},
            expected=ScoreComputed, client=consumer, logger=self._log, verify=verify,
            progress_window_s=settings.progress_window_s,
        )
        self._producer = producer or EventProducer(kafka, signer=signer)
        self._last_poll: float | None = None
        self._auditing: str | None = None

    def start(self) -> None:
        """Connect the producer, start the scorer, subscribe to the score topic."""
        self._producer.start()
        self._scorer.start()
        self._consumer.start()
        self._log.info("auditor %s on %s: sample rate %g, tolerance %g, group %s",
                       self._settings.auditor_id, self._settings.device,
                       self._settings.sample_rate, self.tolerance, self._settings.group_id)

    def run(self, stop: threading.Event) -> None:
        """Audit the sampled scores until ``stop`` is set (an audit in progress finishes)."""
        while not stop.is_set():
            batch = self._consumer.poll(1, self._settings.poll_timeout_s)
            self._last_poll = time.monotonic()
            if not len(batch):
                continue
            letters = list(batch.dead_letters)
            for msg, env in zip(batch.messages, batch.envelopes, strict=True):
                try:
                    audit = self.audit(env)
                except Exception as exc:
                    if caused_by_kafka(exc):
                        raise
                    reason = unprocessable_reason(exc, consumer=PRODUCER_NAME)
                    self._log.error("score %s/%s@%s set aside: %s", msg.topic(),
                                    msg.partition(), msg.offset(), reason, exc_info=exc)
                    letters.append((msg, unprocessable_letter(msg, reason,
                                                              consumer=PRODUCER_NAME)))
                    continue
                if audit is not None:
                    self._producer.send(self._kafka.topics.audits, audit,
                                        key=audit.payload.hash)  # type: ignore[union-attr]
            for msg, letter in letters:
                self._producer.send(self._kafka.topics.deadletter, letter, key=msg.key())
            self._producer.flush()
            count_dead_letters(self._metrics.dead_letters, (letter for _, letter in letters))
            self._consumer.commit()
            self._trimmer.after_work(time.monotonic())

    def close(self) -> None:
        """Close the consumer, flush and close the producer, close the scorer."""
        try:
            self._consumer.close()
        finally:
            try:
                self._producer.close()
            finally:
                self._scorer.close()

    def lag(self) -> Iterable[Lag]:
        """Its consumer's lag (``speechstream_consumer_lag``)."""
        return lag_of([self._consumer])

    def consumers(self) -> list[EventConsumer]:
        """Its consumer (the age of the records it takes is observed)."""
        return [self._consumer]

    def health(self) -> Health:
        """Healthy while the last poll is recent, or an audit (which blocks polls) runs, and it
        makes progress (:meth:`EventConsumer.stalled`)."""
        stalled = self._consumer.stalled()
        if stalled is not None:
            return Health(False, "not progressing", {"reason": stalled,
                                                     "auditing": self._auditing})
        age = None if self._last_poll is None else time.monotonic() - self._last_poll
        healthy = age is not None and (age < max(10 * self._settings.poll_timeout_s, 30.0)
                                       or self._auditing is not None)
        status = "starting" if age is None else "ok" if healthy else "stalled"
        return Health(healthy, status, {
            "last_poll_age_s": None if age is None else round(age, 3),
            "auditing": self._auditing,
        })

    # -- one score -------------------------------------------------------------------------

    def audit(self, score_env: Envelope) -> Envelope | None:
        """The audit event of one score; None when the score is not in the sample."""
        score = score_env.payload
        assert isinstance(score, ScoreComputed)
        if score.status != "COMPLETED" or not selected(
            score.hash, score.scoring_version, self._settings.sample_rate
        ):
            self._metrics.skipped.inc()
            return None
        started = time.perf_counter()
        result = None
        if score.manifest is not None:
            self._auditing = score.hash
            try:
                result = score_submission(self._scorer, submission_of(score.hash, score.manifest),
                                          silent, self._log)
            finally:
                self._auditing = None
        verdict, reason = judge(score, result, self.tolerance)
        event = ScoreAudited(
            hash=score.hash, scoring_version=score.scoring_version, verdict=verdict,
            score_event_id=score_env.event_id, evaluator=score.evaluator,
            auditor=self._settings.auditor_id, scored_status=score.status,
            scored_total=score.total_score,
            audited_status=None if result is None else result.status,
            audited_total=None if result is None else result.total_score,
            tolerance=self.tolerance, reason=reason,
            differences={} if score.manifest is None or result is None
            else manifest_differences(score.manifest, result.manifest),
            manifest=None if result is None or result.manifest is None
            else result.manifest.model_copy(update={"evaluator": self._settings.auditor_id}),
        )
        elapsed = time.perf_counter() - started
        self._metrics.audits.labels(verdict, score.evaluator).inc()
        self._metrics.audit_seconds.observe(elapsed)
        if verdict == "disagree":
            self._metrics.disagreements.labels(score.evaluator).inc()
            self._log.warning("audit of %s (%s by %s) DISAGREES: %s", score.hash,
                              score.scoring_version, score.evaluator, reason)
        else:
            self._log.info("audit of %s (%s by %s): %s%s in %.1fs", score.hash,
                           score.scoring_version, score.evaluator, verdict,
                           f" ({reason})" if reason else "", elapsed)
        event_id = derived_event_id(score_env.event_id, f"audit:{self._settings.auditor_id}")
        return new_envelope(event, key=score.hash, producer=PRODUCER_NAME, event_id=event_id)


def submission_of(hash_: str, manifest: ScoreManifest) -> Submission:
    """The submission a manifest describes, at the revision that was evaluated."""
    return Submission(
        hash=hash_, repo_namespace=manifest.repo_namespace, repo_name=manifest.repo_name,
        revision=manifest.model_revision, config_template=manifest.config_template,
        scoring_version=manifest.scoring_version,
    )
