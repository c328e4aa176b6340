"""No record stops the validator, an evaluator or an auditor (in-memory Kafka clients): what
they cannot process goes to the dead letters with the reason, and the next record is
processed; a vector the broker refuses is tried again at the next epoch."""

from __future__ import annotations

import base64
import threading
from dataclasses import dataclass, field
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from prometheus_client import CollectorRegistry

from consumers.audit import Auditor
from consumers.metrics import AuditMetrics, ValidatorMetrics
from consumers.settings import AuditSettings, ValidatorSettings
from consumers.validator import Validator
from consumers.weights import MAX_INVALID, Candidate, compute_weights
from schemas.codec import MAX_EVENT_BYTES, decode, encode
from schemas.envelope import Envelope, new_envelope
from schemas.events import (
    ChainBlock,
    DeadLetter,
    MinerRegistered,
    SampleResult,
    ScoreComputed,
    ScoreManifest,
)
from scoring.types import Report, ScoringResult, Submission
from speechstream.exceptions import TransactionAbortedError
from speechstream.kafka.producer import EventProducer
from speechstream.settings import KafkaSettings, ScoringSettings
from tests.metric_support import counted
from tests.scorers import DeterministicScorer
from tests.unit.consumers.fakes import FakeMessage, request_envelope, request_message
from tests.unit.consumers.test_evaluator import make
from tests.unit.speechstream.test_poison import FakeLogClient

KAFKA = KafkaSettings(KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1", SPEECHSTREAM_TOPIC_PREFIX="t.")


@dataclass
class FakeEventClient:
    """A confluent producer for ``EventProducer``: delivers at once, or refuses what is
    larger than ``max_bytes`` as librdkafka does (MSG_SIZE_TOO_LARGE), or everything on the
    topics in ``away``."""

    max_bytes: int = 1_000_000
    away: set[str] = field(default_factory=set)
    sent: list[tuple[str, Envelope]] = field(default_factory=list)
    _pending: list[tuple[Any, Any]] = field(default_factory=list)

    def produce(self, topic: str, value: bytes, key: Any = None, on_delivery: Any = None
                ) -> None:
        if len(value) > self.max_bytes:
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "too large"))
        msg = FakeMessage(value, _topic=topic)
        if topic in self.away:
            self._pending.append((on_delivery, msg))
            return
        self.sent.append((topic, decode(value, max_bytes=len(value))))
        on_delivery(None, msg)

    def poll(self, timeout: float = 0) -> int:
        return 0

    def flush(self, timeout: float = 0) -> int:
        pending, self._pending = self._pending, []
        for on_delivery, msg in pending:
            on_delivery(KafkaError(KafkaError._MSG_TIMED_OUT, "broker away"), msg)
        return 0

    def on(self, topic: str) -> list[Envelope]:
        return [env for t, env in self.sent if t == topic]


def hotkey(uid: int) -> str:
    return f"{uid:02x}" * 32


def validator(client: FakeEventClient, log: list[FakeMessage] | None = None
              ) -> tuple[Validator, ValidatorMetrics]:
    metrics = ValidatorMetrics.create(CollectorRegistry())
    v = Validator(KAFKA, ValidatorSettings(validator_id="val", epoch_blocks=100),
                  metrics=metrics, producer=EventProducer(KAFKA, client=client).start(),  # type: ignore[arg-type]
                  consumer=FakeLogClient(log or []))  # type: ignore[arg-type]
    return v, metrics


def feed(v: Validator, *payloads: Any) -> None:
    for p in payloads:
        v.ledger.apply(new_envelope(p, key=None, producer="t"))


def registration(uid: int) -> MinerRegistered:
    return MinerRegistered(hotkey=hotkey(uid), uid=uid, block=1, signature="cd" * 64)


def test_a_withdrawal_reason_of_any_length_no_longer_breaks_the_vector() -> None:
    # "withdrawn: " + a 2,000-character reason (what a cancellation may hold) was longer than
    # an entry's reason may be: every epoch raised.
    c = Candidate(uid=0, hotkey=hotkey(0), hash="1", repo="ns/a", block=10, status="QUEUED",
                  withdrawn="r" * 2000)
    (entry,) = compute_weights([c], cutoff_block=100, previous=None)
    assert entry.invalid is not None and len(entry.invalid) == MAX_INVALID
    assert entry.invalid.startswith("withdrawn: rrr") and entry.invalid.endswith("…")


def test_the_validator_dead_letters_what_it_cannot_read_and_uses_the_rest() -> None:
    miners = KAFKA.topics.miners
    head_on_miners = new_envelope(ChainBlock(block=99_999), key=None, producer="attacker")
    log = [FakeMessage(encode(head_on_miners), _topic=miners, _partition=0, _offset=0),
           FakeMessage(b"\x00 garbage", _topic=KAFKA.topics.chain_blocks, _partition=0,
                       _offset=0),
           FakeMessage(encode(new_envelope(registration(3), key=None, producer="t")),
                       _topic=miners, _partition=0, _offset=1)]
    client = FakeEventClient()
    v, metrics = validator(client, log)
    v._reader.read_new()  # noqa: SLF001 - one poll of the loop, without the broker checks
    v.send_dead_letters()
    letters = [e.payload for e in client.on(KAFKA.topics.deadletter)]
    assert [(d.topic, d.offset) for d in letters] == [  # type: ignore[union-attr]
        (miners, 0), (KAFKA.topics.chain_blocks, 0)]
    assert all(isinstance(d, DeadLetter) and d.consumer == "speechstream-validator"
               for d in letters)
    assert "wrong event type 'chain.block'" in letters[0].error  # type: ignore[union-attr]
    assert letters[1].error.startswith("not JSON")  # type: ignore[union-attr]
    assert v.ledger.head is None and list(v.ledger.holders()) == [3]
    assert counted(metrics.dead_letters) == {("speechstream-validator", "wrong_type"): 1,
                                             ("speechstream-validator", "not_json"): 1}


def test_a_vector_the_broker_refuses_is_logged_counted_and_tried_at_the_next_epoch() -> None:
    client = FakeEventClient(max_bytes=2_000)  # the vector of 64 uids is larger
    v, metrics = validator(client)
    feed(v, *(registration(u) for u in range(64)), ChainBlock(block=150))
    assert v.due()
    assert v.run_epoch() is None  # no exception: the validator keeps running
    assert (v.failed_epoch, v.last) == (1, None)
    assert metrics.failed_epochs.labels("publish")._value.get() == 1
    assert not v.due()  # not again within epoch 1
    feed(v, ChainBlock(block=199))
    assert not v.due()
    client.max_bytes = 10_000_000  # the topic's limit raised
    feed(v, ChainBlock(block=230))
    assert v.due()
    vector = v.run_epoch()
    assert vector is not None and vector.epoch == 2 and len(vector.uids) == 64
    assert v.last == vector and client.on(KAFKA.topics.weights)[0].payload == vector


def test_a_broker_away_at_the_epoch_is_not_the_end_of_the_validator() -> None:
    client = FakeEventClient(away={KAFKA.topics.weights})
    v, metrics = validator(client)
    feed(v, registration(0), ChainBlock(block=100))
    assert v.run_epoch() is None and v.failed_epoch == 1
    client.away.clear()
    feed(v, ChainBlock(block=200))
    assert v.run_epoch() is not None and v.last is not None and v.last.epoch == 2


# -- the evaluator ---------------------------------------------------------------------------


class _NoteScorer(DeterministicScorer):
    """Reports RUNNING with a note no status event can hold (a NUL byte) for ``poison``."""

    def __init__(self, poison: str) -> None:
        super().__init__()
        self.poison = poison

    def score(self, submission: Submission, report: Report) -> ScoringResult:
        if submission.hash == self.poison:
            report("RUNNING", "evaluating \x00")
        return super().score(submission, report)


def test_a_request_the_evaluator_cannot_process_is_dead_lettered_with_its_offset() -> None:
    poison = request_envelope(hash_="4242", event_id="req-poison")
    evaluator, producer, consumer, metrics = make(_NoteScorer("4242"))
    evaluator.handle(request_message(poison, _offset=7))  # used to raise ValidationError
    txn = producer.committed[-1]
    ((topic, key, letter),) = txn["events"]
    assert topic == "t.deadletter" and key == b"key"
    assert isinstance(letter.payload, DeadLetter)
    assert letter.payload.error.startswith(
        "speechstream-evaluator cannot process it: ValidationError")
    assert (letter.payload.topic, letter.payload.offset) == ("t.evaluation.requests", 7)
    assert decode(base64.b64decode(letter.payload.raw_b64)) == poison
    assert txn["offsets"] == [("t.evaluation.requests", 2, 8)]
    assert counted(metrics.dead_letters) == {("speechstream-evaluator", "unprocessable"): 1}
    evaluator.handle(request_message(_offset=8))  # the next one is scored
    assert len(producer.events("scores")) == 1
    assert producer.committed[-1]["offsets"] == [("t.evaluation.requests", 2, 9)]


def test_a_kafka_error_is_still_not_a_dead_letter() -> None:
    evaluator, producer, _, _ = make()
    abortable = KafkaError(KafkaError._STATE, "abortable", txn_requires_abort=True)
    producer.fail["commit_transaction"] = [abortable, abortable]
    with pytest.raises(TransactionAbortedError):
        evaluator.handle(request_message())
    assert producer.events("deadletter") == []


class _ManyTimings(DeterministicScorer):
    def score(self, submission: Submission, report: Report) -> ScoringResult:
        result = super().score(submission, report)
        return result.model_copy(update={"total_score": 3.0,
                                         "timings": {f"t{i}": 0.0 for i in range(64)}})


def test_an_outcome_whose_fallback_would_not_fit_either_is_a_failed_score() -> None:
    evaluator, producer, _, _ = make(_ManyTimings())
    evaluator.handle(request_message())
    (score,) = producer.events("scores")
    assert score.payload.status == "FAILED"  # type: ignore[union-attr]
    assert score.payload.reason.startswith("invalid scorer outcome")  # type: ignore[union-attr]


class _Verbose(DeterministicScorer):
    def score(self, submission: Submission, report: Report) -> ScoringResult:
        result = super().score(submission, report)
        samples = [SampleResult(index=i, text="t" * 10_000, transcription="w" * 10_000)
                   for i in range(40)]
        return result.model_copy(update={"samples": samples})


def test_a_score_no_reader_could_decode_is_a_failed_score_without_samples() -> None:
    evaluator, producer, _, _ = make(_Verbose())
    evaluator.handle(request_message())
    (score,) = producer.events("scores")
    p = score.payload
    assert isinstance(p, ScoreComputed) and p.status == "FAILED" and p.samples == []
    assert p.reason is not None and p.reason.startswith("score event of ")
    assert f"over the limit of {MAX_EVENT_BYTES}" in p.reason
    assert len(encode(score)) <= MAX_EVENT_BYTES


# -- the auditor -----------------------------------------------------------------------------


@dataclass
class _AuditConsumer:
    queue: list[FakeMessage]
    commits: int = 0

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        pass

    def poll(self, timeout: float) -> FakeMessage | None:
        return self.queue.pop(0) if self.queue else None

    def commit(self, asynchronous: bool = False) -> None:
        self.commits += 1

    def close(self) -> None:
        pass


class _AgreeingScorer(DeterministicScorer):
    def score(self, submission: Submission, report: Report) -> ScoringResult:
        return ScoringResult(status="COMPLETED", total_score=0.5)


def _manifest() -> ScoreManifest:
    return ScoreManifest(repo_namespace="lab", repo_name="tiny", scoring_version="v2",
                         draw_seed=7, prompt_set_hash="p", torch="2", device="cpu")


def test_a_score_the_auditor_cannot_audit_is_dead_lettered_and_the_next_audited() -> None:
    # COMPLETED without a total: the verdict's arithmetic used to fail on every restart.
    poison = ScoreComputed(hash="1", scoring_version="v2", status="COMPLETED", evaluator="e",
                           request_event_id="r1", manifest=_manifest())
    good = poison.model_copy(update={"hash": "2", "total_score": 0.5})
    topic = KAFKA.topics.scores
    consumer = _AuditConsumer([
        FakeMessage(encode(new_envelope(p, key=p.hash, producer="t")), _topic=topic,
                    _offset=i) for i, p in enumerate((poison, good))])
    client = FakeEventClient()
    metrics = AuditMetrics.create(CollectorRegistry())
    auditor = Auditor(KAFKA, AuditSettings(sample_rate=1.0, auditor_id="aud"),
                      ScoringSettings(), metrics=metrics, scorer=_AgreeingScorer(),
                      consumer=consumer,  # type: ignore[arg-type]
                      producer=EventProducer(KAFKA, client=client))  # type: ignore[arg-type]
    auditor.start()
    stop = threading.Event()
    polls = consumer.poll

    def poll(timeout: float) -> FakeMessage | None:
        msg = polls(timeout)
        if msg is None:
            stop.set()
        return msg

    consumer.poll = poll  # type: ignore[method-assign]
    auditor.run(stop)
    (letter,) = [e.payload for e in client.on(KAFKA.topics.deadletter)]
    assert isinstance(letter, DeadLetter) and letter.offset == 0 and letter.topic == topic
    assert letter.error.startswith("speechstream-audit cannot process it: AssertionError")
    (audit,) = client.on(KAFKA.topics.audits)
    assert audit.payload.hash == "2" and audit.payload.verdict == "agree"  # type: ignore
    assert consumer.commits == 2
    assert counted(metrics.dead_letters) == {("speechstream-audit", "unprocessable"): 1}



def test_the_blocks_since_the_last_weights_grow_until_a_vector_is_published() -> None:
    # What the alert "no weights this epoch" reads: two epochs' blocks since the last vector.
    client = FakeEventClient(away={KAFKA.topics.weights})
    v, metrics = validator(client)
    feed(v, registration(0), ChainBlock(block=120))
    v._note_head(120)  # noqa: SLF001 - what each poll of the loop does with the head
    assert metrics.blocks_since_weights._value.get() == 0  # from the first head read
    assert metrics.epoch_blocks._value.get() == 100
    assert v.run_epoch() is None  # the broker away: no vector
    feed(v, ChainBlock(block=330))
    v._note_head(330)  # noqa: SLF001
    assert metrics.blocks_since_weights._value.get() == 210  # ≥ 2 × 100: the alert's case
    client.away.clear()
    vector = v.run_epoch()
    assert vector is not None and vector.epoch == 3
    v._note_head(330)  # noqa: SLF001
    assert metrics.blocks_since_weights._value.get() == 30
