"""No record stops the validator, and no subnet is too large for its vector (a real broker, a
real database, the validator and the sink as child processes); `topics create` gives an
existing weights topic the limit the vector needs."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

from api.store import PostgresStore
from consumers.weights import MAX_INVALID
from schemas import EvaluationRequested, MinerRegistered, ScoreComputed, new_envelope
from schemas.codec import MAX_VECTOR_BYTES, decode, encode
from schemas.events import ChainBlock, DeadLetter, EvaluationCancelled, WeightsComputed
from schemas.fields import MAX_UIDS, RejectionCode
from speechstream.kafka.admin import admin_client, create_topics
from tests.integration.pipeline import Pipeline

pytestmark = pytest.mark.integration

VALIDATOR = {"SPEECHSTREAM_VALIDATOR_VALIDATOR_ID": "val-p",
             "SPEECHSTREAM_VALIDATOR_EPOCH_BLOCKS": "100"}


def _hotkey(uid: int) -> str:
    return f"{uid:064x}"


def _registered(uid: int):
    return new_envelope(MinerRegistered(hotkey=_hotkey(uid), uid=uid, block=1,
                                        signature="cd" * 64), key=_hotkey(uid), producer="t")


def _request(uid: int, name: str = "tts", namespace: str = "ns"):
    h = str(1000 + uid)
    return new_envelope(EvaluationRequested(
        hash=h, hotkey=_hotkey(uid), uid=uid, repo_namespace=namespace, repo_name=name,
        block=10 + uid, source_event_id=f"s{uid}", scoring_version="v2"), key=h, producer="t")


def _score(request, total: float):
    h = request.payload.hash
    return new_envelope(ScoreComputed(
        hash=h, status="COMPLETED", total_score=total, evaluator="e",
        request_event_id=request.event_id, content_hash=f"w{h}", scoring_version="v2"),
        key=h, producer="t")


def _tick(pipeline: Pipeline, block: int) -> None:
    done = pipeline.cli("chain", "tick", "--block", str(block))
    assert done.returncode == 0, done.stderr


def _vectors(pipeline: Pipeline, n: int) -> list[WeightsComputed]:
    found = [e.payload for e in pipeline.read(pipeline.kafka.topics.weights, n)]
    assert len(found) == n
    return found  # type: ignore[return-value]


def test_poison_on_the_validators_topics_is_dead_lettered_and_the_epochs_go_on(
    pipeline: Pipeline,
) -> None:
    t = pipeline.kafka.topics
    requests = [_request(u, name=f"tts-{u}") for u in range(3)]
    pipeline.send(t.miners, *(_registered(u) for u in range(3)))
    pipeline.send(t.evaluation_requests, *requests)
    pipeline.send(t.scores, _score(requests[0], 0.6), _score(requests[1], 0.5))
    # Poison, each kind on a topic the validator reads:
    # a registration out of the subnet's bounds (it does not decode) ...
    pipeline.send_raw(t.miners, encode(_registered(3)).replace(b'"uid":3', b'"uid":5000'),
                      key=_hotkey(3))
    # ... a head block on the miner registry (it decodes, but does not belong there; it used
    # to move the head) ...
    pipeline.send(t.miners, new_envelope(ChainBlock(block=99_999), key="x", producer="x"))
    # ... bytes that are no event at all on the chain's topic (which no sink reads) ...
    pipeline.send_raw(t.chain_blocks, b"\x00 not a block")
    # ... and a withdrawal whose 2,000-character reason no weight entry could hold (every
    # epoch raised on it).
    pipeline.send(t.cancellations, new_envelope(EvaluationCancelled(
        hash="1002", request_event_id=requests[2].event_id, hotkey=_hotkey(2), uid=2,
        block=12, code=RejectionCode.DUPLICATE_REPO, reason="r" * 2000,
        displaced_by="s9", displaced_by_hash="9"), key="1002", producer="t"))
    validator = pipeline.start("validator", ["validator", "run"], **VALIDATOR)
    _tick(pipeline, 150)  # epoch 1

    (first,) = _vectors(pipeline, 1)
    assert (first.epoch, first.block, first.uids) == (1, 150, [0, 1, 2])  # head not 99,999
    assert [e.win_rate for e in first.entries] == [1.0, 0.5, None]
    invalid = first.entries[2].invalid
    assert invalid is not None and invalid.startswith("withdrawn: rrr")
    assert len(invalid) == MAX_INVALID

    letters = [e.payload for e in pipeline.read(t.deadletter, 3)]
    assert len(letters) == 3 and all(isinstance(d, DeadLetter) for d in letters)
    by_topic = {(d.topic, d.error.split(":")[0]) for d in letters}  # type: ignore[union-attr]
    assert by_topic == {
        (t.miners, "schema violation (1 errors), first at payload.miner.registered.uid"),
        (t.miners, f"wrong event type 'chain.block' on {t.miners} (expected miner.registered "
         "or uid.handover or uid.revoked)"),
        (t.chain_blocks, "not JSON")}, by_topic
    assert {d.consumer for d in letters} == {"speechstream-validator"}  # type: ignore[union-attr]

    # It keeps going: the next epoch is computed, and a restart gives the same dead letters
    # again (the same event ids), not new ones.
    pipeline.check()
    _tick(pipeline, 260)
    assert _vectors(pipeline, 2)[1].epoch == 2
    validator.stop()
    pipeline.start("sink", ["sink", "run"])
    pipeline.start("validator", ["validator", "run"], **VALIDATOR)
    pipeline.wait(lambda: pipeline.count(t.deadletter) >= 4, "the dead letters given again")
    pipeline.wait(lambda: pipeline.query("SELECT count(*) FROM weights")[0][0] == 2,
                  "the vectors in PostgreSQL")
    rows = pipeline.query("SELECT DISTINCT event_id FROM dead_letters")
    assert len(rows) == 3
    pipeline.check()


def _raw_vectors(pipeline: Pipeline, timeout_s: float = 120.0) -> list[bytes]:
    """The records of the weights topic, as bytes (the test reader's decoder stops at 1 MB)."""
    topic = pipeline.kafka.topics.weights
    consumer = Consumer(pipeline.kafka.to_librdkafka(**{
        "group.id": f"reader-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
        "enable.partition.eof": True}))
    consumer.assign([TopicPartition(topic, 0, 0)])
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error() is None:
                return [msg.value()]
            if msg.error().code() != KafkaError._PARTITION_EOF:
                raise AssertionError(msg.error())
            pipeline.check()
    finally:
        consumer.close()
    raise AssertionError(f"no vector on {topic} after {timeout_s:.0f}s")


def test_a_vector_of_every_uid_the_subnet_may_hold_publishes_and_the_sink_stores_it(
    pipeline: Pipeline,
) -> None:
    # A sybil flood: 4,096 registered uids, each with a submission under the longest repo
    # name. Its vector is 1.9 MB: over librdkafka's default 1 MB (the validator exited at
    # every epoch) and over an event's 256 KiB (the sink dead-lettered it).
    t = pipeline.kafka.topics
    pipeline.send(t.miners, *(_registered(u) for u in range(MAX_UIDS)))
    pipeline.send(t.evaluation_requests, *(
        _request(u, namespace="n" * 96, name="m" * 92 + f"{u:04d}") for u in range(MAX_UIDS)))
    pipeline.start("sink", ["sink", "run"])
    pipeline.start("validator", ["validator", "run"], **VALIDATOR)
    _tick(pipeline, 5_000)

    (raw,) = _raw_vectors(pipeline)
    assert 1_000_000 < len(raw) <= MAX_VECTOR_BYTES
    vector = decode(raw, max_bytes=MAX_VECTOR_BYTES).payload
    assert isinstance(vector, WeightsComputed) and vector.uids == list(range(MAX_UIDS))
    pipeline.wait(lambda: pipeline.query(
        "SELECT count(*) FROM weight_entries WHERE validator = 'val-p' AND epoch = 50"
    )[0][0] == MAX_UIDS, "4,096 weight entries in PostgreSQL", timeout_s=120)
    assert pipeline.query("SELECT count(*) FROM weights")[0][0] == 1
    assert pipeline.query("SELECT count(*) FROM dead_letters")[0][0] == 0
    store = PostgresStore(pipeline.conninfo)  # what GET /weights answers
    store.start()
    try:
        served = store.latest_weights("val-p")
    finally:
        store.close()
    assert served is not None and served.epoch == 50 and served.uids == list(range(MAX_UIDS))
    pipeline.check()


def test_topics_create_gives_an_existing_weights_topic_its_limit(kafka_settings) -> None:
    topic = kafka_settings.topics.weights
    admin = admin_client(kafka_settings)

    def limit() -> str:
        (future,) = admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic)]).values()
        return future.result(timeout=10)["max.message.bytes"].value

    def becomes(expected: str) -> None:
        deadline = time.monotonic() + 15
        while limit() != expected:
            assert time.monotonic() < deadline, limit()
            time.sleep(0.2)

    wanted = str(MAX_VECTOR_BYTES + 64 * 1024)
    becomes(wanted)  # created so
    # A topic created before the registry asked for it: the broker's default.
    default = ConfigEntry("max.message.bytes", "1048588",
                          incremental_operation=AlterConfigOpType.SET)
    (future,) = admin.incremental_alter_configs(
        [ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[default])]).values()
    future.result(timeout=10)
    becomes("1048588")
    assert create_topics(kafka_settings) == []  # nothing created ...
    becomes(wanted)  # ... and the limit set again
