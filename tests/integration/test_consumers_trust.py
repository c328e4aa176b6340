"""The evaluator under the trusted keys, on a real broker: a forged score (unsigned, or signed
by another trusted evaluator's key naming this one) does not make it skip a request; it is
dead-lettered as untrusted, and the evaluator commits its own signed score."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition
from prometheus_client import CollectorRegistry

from consumers.evaluator import Evaluator, evaluator_id
from consumers.metrics import EvaluatorMetrics
from consumers.settings import EvaluatorSettings
from schemas.codec import decode
from schemas.envelope import Envelope, new_envelope
from schemas.events import DeadLetter, ScoreComputed
from speechstream.kafka.producer import EventProducer
from speechstream.settings import KafkaSettings
from tests.integration.test_evaluator import request
from tests.scorers import DeterministicScorer
from tests.trust_support import Keys

pytestmark = pytest.mark.integration


def _raw_records(kafka: KafkaSettings, topic: str, done, timeout_s: float = 60.0
                 ) -> list[tuple[bytes, Envelope]]:
    """(raw bytes, envelope) of ``topic`` from the start, until ``done(records)``."""
    consumer = Consumer(kafka.to_librdkafka(**{
        "group.id": f"test-reader-{uuid.uuid4().hex[:8]}", "isolation.level": "read_committed",
        "enable.auto.commit": False}))
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        seen: list[tuple[bytes, Envelope]] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not done(seen):
            msg = consumer.poll(0.2)
            if msg is None or (msg.error() is not None
                               and msg.error().code() == KafkaError._PARTITION_EOF):
                continue
            seen.append((msg.value(), decode(msg.value())))
        return seen
    finally:
        consumer.close()


def test_forged_scores_do_not_stop_the_evaluation(kafka_settings: KafkaSettings,
                                                  tmp_path: Path) -> None:
    settings = EvaluatorSettings(
        group_id=f"test-evaluators-{uuid.uuid4().hex[:8]}",
        evaluator_id=f"ev-{uuid.uuid4().hex[:8]}", device="cpu", poll_timeout_s=0.2,
        transaction_timeout_ms=60_000)
    name = evaluator_id(settings)
    keys = Keys.create(tmp_path / "keys")
    keys.add("evaluator", name)
    keys.add("evaluator", "other-cpu")
    keys.add("intake", "intake")
    store = keys.store()
    req = request("tts-trust")
    hash_ = req.payload.hash
    forged = ScoreComputed(hash=hash_, scoring_version=req.payload.scoring_version,
                           evaluator=name, status="FAILED", reason="E_FORGED: forged",
                           request_event_id=req.event_id)
    t = kafka_settings.topics
    with EventProducer(kafka_settings) as producer:  # (a) unsigned
        producer.send(t.scores, new_envelope(forged, key=hash_, producer="forger"))
        producer.flush()
    with EventProducer(kafka_settings, signer=keys.signer("evaluator", "other-cpu")) as p:
        p.send(t.scores, new_envelope(forged, key=hash_, producer="forger"))  # (b) AUTHOR
        p.flush()
    with EventProducer(kafka_settings, signer=keys.signer("intake", "intake")) as producer:
        producer.send(t.evaluation_requests, req)
        producer.flush()

    evaluator = Evaluator(kafka_settings, settings, DeterministicScorer(),
                          metrics=EvaluatorMetrics.create(CollectorRegistry()),
                          verify=store.verify, signer=keys.signer("evaluator", name))
    evaluator.start()
    stop = threading.Event()
    thread = threading.Thread(target=evaluator.run, args=(stop,), daemon=True)
    thread.start()
    try:
        def own(records: list[tuple[bytes, Envelope]]) -> list[tuple[bytes, Envelope]]:
            return [(raw, e) for raw, e in records if isinstance(e.payload, ScoreComputed)
                    and e.payload.hash == hash_ and e.payload.reason != "E_FORGED: forged"]

        scores = own(_raw_records(kafka_settings, t.scores, lambda seen: bool(own(seen))))
        assert len(scores) == 1, "the evaluator skipped the request: forged scores counted"
        raw, env = scores[0]
        assert env.payload.evaluator == name
        assert store.verify(env, raw, t.scores) is None  # signed by the evaluator's key

        def untrusted(records: list[tuple[bytes, Envelope]]) -> list[DeadLetter]:
            return [e.payload for _, e in records if isinstance(e.payload, DeadLetter)
                    and e.payload.topic == t.scores and "untrusted" in e.payload.error]

        letters = untrusted(_raw_records(kafka_settings, t.deadletter,
                                         lambda seen: len(untrusted(seen)) >= 2))
        assert len(letters) == 2, letters
        for raw, env in _raw_records(kafka_settings, t.deadletter,
                                     lambda seen: len(seen) >= 2):
            assert store.verify(env, raw, t.deadletter) is None  # the letters are signed
    finally:
        stop.set()
        thread.join(30)
        evaluator.close()


def test_forged_vectors_and_activation_change_nothing_for_the_validator(
        kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    from consumers.metrics import ValidatorMetrics
    from consumers.settings import ValidatorSettings
    from consumers.validator import Validator
    from schemas.events import ChainBlock, ScoringActivated, WeightsComputed

    name = f"val-{uuid.uuid4().hex[:8]}"
    keys = Keys.create(tmp_path / "keys")
    keys.add("validator", name)
    keys.add("validator", "val-other")
    keys.add("chain", "chain")
    store = keys.store()
    t = kafka_settings.topics
    forged = WeightsComputed.of(name, 2**31, 1000, [])
    with EventProducer(kafka_settings) as producer:  # unsigned
        producer.send(t.weights, new_envelope(forged, key=name, producer="forger"))
        producer.send(t.scoring_active, new_envelope(ScoringActivated(scoring_version="v1"),
                                                  key="active", producer="forger"))
        producer.flush()
    with EventProducer(kafka_settings, signer=keys.signer("validator", "val-other")) as p:
        p.send(t.weights, new_envelope(forged, key=name, producer="forger"))  # AUTHOR rule
        p.flush()
    with EventProducer(kafka_settings, signer=keys.signer("chain", "chain")) as producer:
        producer.send(t.chain_blocks, new_envelope(ChainBlock(block=150), key="head",
                                                   producer="chain"))
        producer.flush()

    settings = ValidatorSettings(validator_id=name, epoch_blocks=100, poll_timeout_s=0.2,
                                 client_name=f"test-validator-{uuid.uuid4().hex[:8]}")
    validator = Validator(kafka_settings, settings,
                          metrics=ValidatorMetrics.create(CollectorRegistry()),
                          verify=store.verify, signer=keys.signer("validator", name))
    validator.start()
    assert validator.last is None  # neither forged vector was restored
    stop = threading.Event()
    thread = threading.Thread(target=validator.run, args=(stop,), daemon=True)
    thread.start()
    try:
        def own(records: list[tuple[bytes, Envelope]]) -> list[tuple[bytes, Envelope]]:
            return [(raw, e) for raw, e in records if isinstance(e.payload, WeightsComputed)
                    and e.payload.validator == name and e.payload.epoch == 1]

        vectors = own(_raw_records(kafka_settings, t.weights, lambda seen: bool(own(seen))))
        assert len(vectors) == 1, "the validator did not publish epoch 1"
        raw, env = vectors[0]
        assert store.verify(env, raw, t.weights) is None  # signed by its key
        assert validator.ledger.activated is None  # the forged activation did not count
    finally:
        stop.set()
        thread.join(30)
        validator.close()
