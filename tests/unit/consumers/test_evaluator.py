"""The evaluator's per-request logic against in-memory Kafka clients: no broker needed."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from confluent_kafka import KafkaError
from prometheus_client import CollectorRegistry

from consumers.evaluator import (
    Evaluator,
    consumer_config,
    producer_config,
    to_submission,
    transactional_id,
)
from consumers.kept import KeptResults
from consumers.metrics import EvaluatorMetrics
from consumers.scorers import failure_reason
from consumers.settings import EvaluatorSettings
from schemas.envelope import derived_event_id, new_envelope
from schemas.events import (
    DeadLetter,
    EvaluationStatusChanged,
    SampleAudio,
    ScoreComputed,
    SubmissionFailed,
)
from scoring.types import Report, ScoringResult, Submission
from speechstream.exceptions import ConsumeError, FencedError, TransactionAbortedError
from speechstream.settings import KafkaSettings
from tests.metric_support import counted
from tests.scorers import DeterministicScorer, FailingScorer, deterministic_result
from tests.unit.consumers.fakes import (
    HASH,
    HOTKEY,
    FakeConsumer,
    FakeMessage,
    FakeProducer,
    FakeScored,
    cancellation,
    request_envelope,
    request_message,
)

KAFKA = KafkaSettings(KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1", SPEECHSTREAM_TOPIC_PREFIX="t.")
SETTINGS = EvaluatorSettings(evaluator_id="box", device="cuda:1", group_id="evals")


def make(scorer: Any = None, **fail: list[KafkaError]) -> tuple[Evaluator, FakeProducer,
                                                                 FakeConsumer, EvaluatorMetrics]:
    producer, consumer = FakeProducer(fail=dict(fail)), FakeConsumer()
    metrics = EvaluatorMetrics.create(CollectorRegistry())
    evaluator = Evaluator(
        KAFKA, SETTINGS, scorer or DeterministicScorer(), metrics=metrics,
        consumer=consumer, producer=producer, scored=FakeScored(),  # type: ignore[arg-type]
        kept=KeptResults(),
    )
    evaluator.start()
    return evaluator, producer, consumer, metrics


def abortable(reason: str = "abortable") -> KafkaError:
    return KafkaError(KafkaError._STATE, reason, txn_requires_abort=True)


def test_client_configuration() -> None:
    assert transactional_id(SETTINGS) == "evals.box-cuda:1"
    producer = producer_config(KAFKA, SETTINGS)
    assert producer["transactional.id"] == "evals.box-cuda:1"
    assert producer["enable.idempotence"] is True
    assert producer["partitioner"] == "murmur2_random"  # keys land where Faust puts them
    assert producer["transaction.timeout.ms"] <= 900_000
    consumer = consumer_config(KAFKA, SETTINGS)
    assert consumer["isolation.level"] == "read_committed"
    assert consumer["enable.auto.commit"] is False
    assert consumer["auto.offset.reset"] == "earliest"
    assert consumer["max.poll.interval.ms"] > SETTINGS.transaction_timeout_ms
    assert consumer["group.id"] == "evals"
    assert consumer["group.instance.id"] == "evals.box-cuda:1"  # a restart takes over at once
    # Each evaluator its share of both topics, requests and re-scores.
    assert consumer["partition.assignment.strategy"] == "range"


def test_failure_reason_names_type_and_message() -> None:
    assert failure_reason(RuntimeError("out of memory")) == "RuntimeError: out of memory"
    assert failure_reason(KeyError()) == "KeyError"


def test_request_gives_statuses_then_score_with_offset_in_one_transaction() -> None:
    evaluator, producer, consumer, metrics = make()
    assert consumer.subscribed == ["t.evaluation.requests", "t.evaluation.rescores"]
    evaluator.handle(request_message())

    statuses, final = producer.committed[:-1], producer.committed[-1]
    assert [t["offsets"] for t in statuses] == [None, None]  # visible while the scorer runs
    changed = [t["events"][0][2].payload for t in statuses]
    assert [(s.status, s.evaluator) for s in changed] == [
        ("PRECHECK", "box-cuda:1"), ("RUNNING", "box-cuda:1")
    ]
    assert final["offsets"] == [("t.evaluation.requests", 2, 8)]
    ((topic, key, env),) = final["events"]
    assert (topic, key) == ("t.scores", HASH)
    score = env.payload
    assert isinstance(score, ScoreComputed)
    assert env.event_id == derived_event_id("req-1", "score:v1")
    expected = deterministic_result(to_submission(request_envelope().payload))  # type: ignore[arg-type]
    assert (score.status, score.total_score) == ("COMPLETED", expected.total_score)
    assert (score.evaluator, score.request_event_id) == ("box-cuda:1", "req-1")
    assert len(score.samples) == 3 and "evaluation_s" in score.timings
    assert score.content_hash == expected.content_hash and score.content_hash
    assert metrics.evaluations.labels("COMPLETED")._value.get() == 1
    assert metrics.in_progress._value.get() == 0


def test_event_ids_are_the_same_when_a_request_is_evaluated_again() -> None:
    first, producer_a, _, _ = make()
    second, producer_b, _, _ = make()
    first.handle(request_message())
    second.handle(request_message())
    ids = [[e.event_id for t in p.committed for _, _, e in t["events"]]
           for p in (producer_a, producer_b)]
    assert ids[0] == ids[1] and len(set(ids[0])) == 3


def test_scorer_exception_is_a_failed_score_with_the_reason() -> None:
    evaluator, producer, _, metrics = make(FailingScorer())
    evaluator.handle(request_message())
    (score,) = producer.events("scores")
    assert isinstance(score.payload, ScoreComputed)
    assert score.payload.status == "FAILED"
    assert score.payload.reason == f"RuntimeError: model exploded on {HASH}"
    assert producer.committed[-1]["offsets"] == [("t.evaluation.requests", 2, 8)]
    assert metrics.evaluations.labels("FAILED")._value.get() == 1


@pytest.mark.parametrize(("raw", "kind"), [(b"not json", "not_json"),
                                           (b'{"schema_version": 9}', "schema_version"),
                                           (None, "empty")])
def test_undecodable_request_is_dead_lettered_with_its_offset(raw: bytes | None,
                                                              kind: str) -> None:
    scorer = DeterministicScorer()
    evaluator, producer, _, metrics = make(scorer)
    evaluator.handle(FakeMessage(raw, _offset=41))
    (txn,) = producer.committed
    assert txn["offsets"] == [("t.evaluation.requests", 2, 42)]
    ((topic, key, env),) = txn["events"]
    assert (topic, key) == ("t.deadletter", b"key")
    assert isinstance(env.payload, DeadLetter)
    assert (env.payload.topic, env.payload.offset) == ("t.evaluation.requests", 41)
    assert scorer.scored == []
    assert counted(metrics.dead_letters) == {("speechstream-evaluator", kind): 1}


def test_a_valid_event_of_another_type_is_dead_lettered() -> None:
    status = EvaluationStatusChanged(hash=HASH, status="QUEUED")
    env = new_envelope(status, key=HASH, producer="test")
    evaluator, producer, _, _ = make()
    evaluator.handle(request_message(env))
    (letter,) = producer.events("deadletter")
    assert "wrong event type 'evaluation.status'" in letter.payload.error  # type: ignore[union-attr]


class _OutOfRangeScorer(DeterministicScorer):
    def score(self, submission: Submission, report: Report) -> ScoringResult:
        return ScoringResult(status="COMPLETED", total_score=7.5)


def test_an_outcome_no_event_can_hold_is_failed_not_a_crash() -> None:
    evaluator, producer, _, _ = make(_OutOfRangeScorer())
    evaluator.handle(request_message())
    (score,) = producer.events("scores")
    assert score.payload.status == "FAILED"  # type: ignore[union-attr]
    assert score.payload.reason.startswith("invalid scorer outcome")  # type: ignore[union-attr]


class _ChattyScorer(DeterministicScorer):
    def score(self, submission: Submission, report: Report) -> ScoringResult:
        for status in ("PRECHECK", "RUNNING", "PRECHECK", "RUNNING"):
            report(status, None)  # type: ignore[arg-type]
        return super().score(submission, report)


def test_each_status_is_published_once_and_never_backwards() -> None:
    evaluator, producer, _, _ = make(_ChattyScorer())
    evaluator.handle(request_message())
    statuses = [e.payload.status for e in producer.events("evaluation.status")]  # type: ignore
    assert statuses == ["PRECHECK", "RUNNING"]


def test_abortable_commit_aborts_and_the_request_is_evaluated_again() -> None:
    evaluator, producer, consumer, metrics = make()
    producer.fail["send_offsets_to_transaction"] = [abortable("rebalance")]
    consumer.queue = [request_message()]
    stop = threading.Event()
    consumer.poll = lambda timeout: (  # type: ignore[method-assign]
        consumer.queue.pop(0) if consumer.queue else stop.set()
    )
    evaluator.run(stop)
    assert producer.aborted == 1 and producer.events("scores") == []
    assert consumer.seeks == [("t.evaluation.requests", 2, 7)]
    assert metrics.transactions_aborted._value.get() == 1


def test_a_failed_commit_commits_the_kept_result_and_the_scoring_ran_once() -> None:
    scorer = DeterministicScorer()
    evaluator, producer, consumer, metrics = make(scorer)
    producer.fail["send_offsets_to_transaction"] = [abortable("broker hiccup")]
    consumer.queue = [request_message()]
    stop = threading.Event()

    def poll(timeout: float) -> FakeMessage | None:
        if consumer.seeks and not consumer.queue and not producer.events("scores"):
            consumer.queue.append(request_message())  # the rewound request, read again
        if consumer.queue:
            return consumer.queue.pop(0)
        stop.set()
        return None

    consumer.poll = poll  # type: ignore[method-assign]
    evaluator.run(stop)
    assert producer.aborted == 1 and consumer.seeks == [("t.evaluation.requests", 2, 7)]
    assert scorer.scored == [HASH]  # evaluated once
    ((_, _, score),) = [e for t in producer.committed for e in t["events"]
                        if e[0] == "t.scores"]
    assert score.event_id == derived_event_id("req-1", "score:v1")
    assert producer.committed[-1]["offsets"] == [("t.evaluation.requests", 2, 8)]
    assert metrics.commits_retried._value.get() == 1
    assert len(evaluator._kept) == 0


def test_a_kept_result_is_dropped_when_another_evaluator_scored_the_request() -> None:
    scorer = DeterministicScorer()
    producer, consumer = FakeProducer(fail={}), FakeConsumer()
    scored = FakeScored()
    evaluator = Evaluator(KAFKA, SETTINGS, scorer, consumer=consumer,  # type: ignore[arg-type]
                          producer=producer, scored=scored,  # type: ignore[arg-type]
                          kept=KeptResults())
    evaluator.start()
    producer.fail["send_offsets_to_transaction"] = [abortable("partitions revoked")]
    with pytest.raises(TransactionAbortedError):
        evaluator.handle(request_message())
    assert len(evaluator._kept) == 1
    scored.add(HASH, "v1")  # the partition moved; its new owner committed a score
    evaluator.handle(request_message())
    assert scorer.scored == [HASH] and producer.events("scores") == []
    assert producer.committed[-1] == {"events": [], "offsets": [("t.evaluation.requests", 2, 8)]}
    assert len(evaluator._kept) == 0


def test_a_fenced_evaluators_result_is_committed_by_its_successor(tmp_path: Path) -> None:
    first_scorer, second_scorer = DeterministicScorer(), DeterministicScorer()
    fenced = KafkaError(KafkaError._FENCED, "fenced", fatal=True)
    first = Evaluator(KAFKA, SETTINGS, first_scorer, consumer=FakeConsumer(),  # type: ignore[arg-type]
                      producer=FakeProducer(fail={"send_offsets_to_transaction": [fenced]}),  # type: ignore[arg-type]
                      scored=FakeScored(), kept=KeptResults(tmp_path))  # type: ignore[arg-type]
    first.start()
    with pytest.raises(FencedError):
        first.handle(request_message())
    assert first_scorer.scored == [HASH] and len(list(tmp_path.glob("*.json"))) == 1
    producer = FakeProducer(fail={})
    successor = Evaluator(KAFKA, SETTINGS, second_scorer, consumer=FakeConsumer(),  # type: ignore[arg-type]
                          producer=producer, scored=FakeScored(),  # type: ignore[arg-type]
                          kept=KeptResults(tmp_path))
    successor.start()
    successor.handle(request_message())
    assert second_scorer.scored == []  # committed, not evaluated again
    (score,) = producer.events("scores")
    expected = deterministic_result(to_submission(request_envelope().payload))  # type: ignore[arg-type]
    assert score.payload.total_score == expected.total_score  # type: ignore[union-attr]
    assert list(tmp_path.glob("*.json")) == []


def test_fenced_producer_stops_the_evaluator() -> None:
    evaluator, producer, _, _ = make()
    producer.fail["commit_transaction"] = [KafkaError(KafkaError._FENCED, "fenced", fatal=True)]
    with pytest.raises(FencedError):
        evaluator.handle(request_message())


def test_kafka_failure_while_reporting_is_not_a_failed_score() -> None:
    evaluator, producer, _, _ = make()
    producer.fail["commit_transaction"] = [abortable(), abortable()]
    with pytest.raises(TransactionAbortedError):
        evaluator.handle(request_message())
    assert producer.events("scores") == []


class _SwallowingScorer(DeterministicScorer):
    """Breaks the producer, then swallows the failure of reporting RUNNING."""

    producer: FakeProducer

    def score(self, submission: Submission, report: Report) -> ScoringResult:
        self.producer.fail["commit_transaction"] = [abortable(), abortable()]
        try:
            report("RUNNING", None)
        except Exception:  # noqa: BLE001, S110 - what a careless scorer does
            pass
        return deterministic_result(submission)


def test_a_kafka_failure_the_scorer_swallowed_is_raised_not_scored() -> None:
    scorer = _SwallowingScorer()
    evaluator, producer, _, _ = make(scorer)
    scorer.producer = producer
    with pytest.raises(TransactionAbortedError):
        evaluator.handle(request_message())
    assert producer.events("scores") == []
    assert [e.payload.status for e in producer.events("evaluation.status")] == [  # type: ignore
        "PRECHECK"]


def test_retriable_commit_is_retried() -> None:
    evaluator, producer, _, _ = make()
    retriable = KafkaError(KafkaError._TIMED_OUT, "slow", retriable=True)
    producer.fail["commit_transaction"] = [retriable]
    evaluator.handle(request_message())
    assert len(producer.events("scores")) == 1 and producer.aborted == 0


def test_fatal_consumer_error_stops_and_transient_one_does_not() -> None:
    evaluator, _, consumer, _ = make()
    transient = KafkaError(KafkaError._TRANSPORT, "broker down")
    fatal = KafkaError(KafkaError._FATAL, "fatal", fatal=True)
    consumer.queue = [FakeMessage(None, _error=transient), FakeMessage(None, _error=fatal)]
    with pytest.raises(ConsumeError):
        evaluator.run(threading.Event())
    assert evaluator.health().healthy


def test_close_closes_everything() -> None:
    evaluator, _, consumer, _ = make()
    evaluator.close()
    assert consumer.closed


def test_metrics_are_optional() -> None:
    producer, consumer = FakeProducer(fail={}), FakeConsumer()
    evaluator = Evaluator(
        KAFKA, SETTINGS, DeterministicScorer(),
        consumer=consumer, producer=producer, scored=FakeScored(),  # type: ignore[arg-type]
        kept=KeptResults(),
    )
    evaluator.start()
    evaluator.handle(request_message())
    assert producer.committed[-1]["offsets"] == [("t.evaluation.requests", 2, 8)]
    evaluator.close()


def test_a_request_already_scored_is_acknowledged_without_evaluating() -> None:
    scorer = DeterministicScorer()
    evaluator, producer, _, metrics = make(scorer)
    evaluator.handle(request_message())
    # Delivered again (a re-published submission): acknowledged, nothing published.
    evaluator.handle(request_message(request_envelope(event_id="req-again"), _offset=9))
    assert scorer.scored == [HASH]
    assert producer.committed[-1] == {"events": [], "offsets": [("t.evaluation.requests", 2, 10)]}
    assert metrics.already_scored._value.get() == 1
    # Another scoring version (an operator's re-score) is evaluated.
    v2 = request_envelope(event_id="req-v2")
    v2 = v2.model_copy(update={"payload": v2.payload.model_copy(update={"scoring_version": "v2"})})
    evaluator.handle(request_message(v2, _offset=10))
    assert scorer.scored == [HASH, HASH]


def test_a_score_committed_by_another_evaluator_counts() -> None:
    producer, consumer, scorer = FakeProducer(fail={}), FakeConsumer(), DeterministicScorer()
    scored = FakeScored((HASH, "v1"))
    evaluator = Evaluator(KAFKA, SETTINGS, scorer, consumer=consumer,  # type: ignore[arg-type]
                          producer=producer, scored=scored,  # type: ignore[arg-type]
                          kept=KeptResults())
    evaluator.start()
    evaluator.handle(request_message())
    assert scorer.scored == [] and scored.refreshes == 1


def test_a_failed_score_is_committed_with_its_submission_failed() -> None:
    evaluator, producer, _, _ = make(FailingScorer())
    evaluator.handle(request_message())
    final = producer.committed[-1]
    assert final["offsets"] == [("t.evaluation.requests", 2, 8)]
    (_, _, score), (topic, key, failed) = final["events"]
    assert isinstance(score.payload, ScoreComputed) and score.payload.status == "FAILED"
    assert (topic, key) == ("t.submissions.failed", HOTKEY)
    assert isinstance(failed.payload, SubmissionFailed)
    p = failed.payload
    assert (p.hash, p.hotkey, p.block, p.score_event_id) == (HASH, HOTKEY, 100, score.event_id)
    assert failed.event_id == derived_event_id("req-1", "failed:v1")
    # A COMPLETED score goes alone.
    ok, producer_ok, _, _ = make()
    ok.handle(request_message())
    assert [t for t, _, _ in producer_ok.committed[-1]["events"]] == ["t.scores"]


def _rescore_message(version: str, offset: int = 11) -> Any:
    env = request_envelope(event_id=f"rescore-{version}")
    payload = env.payload.model_copy(update={"scoring_version": version, "rescore_of": "req-1"})
    return request_message(env.model_copy(update={"payload": payload}),
                           _topic="t.evaluation.rescores", _offset=offset)


def test_a_failed_rescore_frees_no_rate_limit_window() -> None:
    evaluator, producer, _, _ = make(FailingScorer())
    evaluator.handle(_rescore_message("v2"))
    final = producer.committed[-1]
    assert [t for t, _, _ in final["events"]] == ["t.scores"]
    assert final["events"][0][2].payload.status == "FAILED"
    assert final["offsets"] == [("t.evaluation.rescores", 2, 12)]


def test_an_unknown_scoring_version_is_failed_with_the_reason_without_scoring() -> None:
    scorer = DeterministicScorer()
    evaluator, producer, _, _ = make(scorer)
    evaluator.handle(_rescore_message("v9"))
    assert scorer.scored == []
    (_, _, score), = producer.committed[-1]["events"]
    assert score.payload.status == "FAILED" and score.payload.scoring_version == "v9"
    assert score.payload.reason.startswith("unknown scoring version 'v9': this engine computes")


def _with_withdrawn(scorer: Any, *request_ids: str) -> tuple[Evaluator, FakeProducer,
                                                             EvaluatorMetrics, FakeScored]:
    producer, consumer = FakeProducer(fail={}), FakeConsumer()
    metrics = EvaluatorMetrics.create(CollectorRegistry())
    scored = FakeScored(withdrawn={rid: cancellation(rid) for rid in request_ids})
    evaluator = Evaluator(KAFKA, SETTINGS, scorer, metrics=metrics,
                          consumer=consumer, producer=producer,  # type: ignore[arg-type]
                          scored=scored)  # type: ignore[arg-type]
    evaluator.start()
    return evaluator, producer, metrics, scored


def test_a_withdrawn_request_is_acknowledged_without_evaluating_or_publishing() -> None:
    scorer = DeterministicScorer()
    evaluator, producer, metrics, scored = _with_withdrawn(scorer, "req-1")
    evaluator.handle(request_message())
    assert scorer.scored == [] and scored.refreshes == 1  # read the cancellations first
    # Its offset alone: no status, no score, no submission.failed (the window is freed).
    assert producer.committed == [{"events": [], "offsets": [("t.evaluation.requests", 2, 8)]}]
    assert metrics.withdrawn._value.get() == 1
    assert metrics.already_scored._value.get() == 0
    # Another request of the same hash (not withdrawn) is evaluated.
    evaluator.handle(request_message(request_envelope(event_id="req-2"), _offset=8))
    assert scorer.scored == [HASH]


def test_a_rescore_of_a_withdrawn_request_is_skipped_too() -> None:
    scorer = DeterministicScorer()
    evaluator, producer, metrics, _ = _with_withdrawn(scorer, "req-1")
    evaluator.handle(_rescore_message("v2"))
    assert scorer.scored == []
    assert producer.committed == [{"events": [], "offsets": [("t.evaluation.rescores", 2, 12)]}]
    assert metrics.withdrawn._value.get() == 1


def test_a_cancellation_of_another_request_changes_nothing() -> None:
    scorer = DeterministicScorer()
    evaluator, producer, metrics, _ = _with_withdrawn(scorer, "req-other")
    evaluator.handle(request_message())
    assert scorer.scored == [HASH]
    assert metrics.withdrawn._value.get() == 0


class _Speaking(DeterministicScorer):
    """A scorer whose result carries the clips of its two samples (generated and reference)."""

    def score(self, submission: Submission, report: Report) -> ScoringResult:
        from scoring.audio import encode_clip
        from scoring.types import SampleClip

        result = super().score(submission, report)
        wave = np.sin(np.arange(8000, dtype=np.float32) / 10) * 0.2
        encoded = encode_clip(wave, 16_000)
        opus, mp3 = encoded.b64()
        clips = [SampleClip(index=i, clip=kind, sample_rate=encoded.sample_rate,
                            duration_s=encoded.duration_s, opus_b64=opus, mp3_b64=mp3)
                 for i in range(2) for kind in ("generated", "reference")]
        return result.model_copy(update={"audio": clips})


def test_the_clips_are_committed_with_the_score_and_name_it() -> None:
    evaluator, producer, _, _ = make(_Speaking())
    evaluator.handle(request_message())
    final = producer.committed[-1]
    topics = [topic for topic, _, _ in final["events"]]
    assert topics == ["t.scores"] + ["t.scores.audio"] * 4  # one transaction
    score_env = final["events"][0][2]
    clips = [env.payload for _, _, env in final["events"][1:]]
    assert all(isinstance(c, SampleAudio) for c in clips)
    assert {(c.index, c.clip) for c in clips} == {
        (i, k) for i in range(2) for k in ("generated", "reference")}
    assert {c.score_event_id for c in clips} == {score_env.event_id}
    assert {(c.evaluator, c.request_event_id, c.hash) for c in clips} == {
        ("box-cuda:1", "req-1", HASH)}
    assert all(key == HASH for _, key, _ in final["events"])
    # The same ids when the request is evaluated again: a replay stores no clip twice.
    again, producer_b, _, _ = make(_Speaking())
    again.handle(request_message())
    assert [e.event_id for _, _, e in producer_b.committed[-1]["events"]] == [
        e.event_id for _, _, e in final["events"]]
