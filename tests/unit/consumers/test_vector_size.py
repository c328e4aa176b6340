"""The largest weights vector a validator can write fits its topic, its producer and every
reader: 4,096 uids, each field at the longest its source's schema allows, every character of
the free texts one that JSON escapes to six bytes."""

from __future__ import annotations

from consumers.validator import PRODUCER_CONFIG, PRODUCER_NAME
from consumers.weights import Candidate, compute_weights
from schemas.codec import MAX_EVENT_BYTES, MAX_VECTOR_BYTES, encode
from schemas.envelope import Envelope, derived_event_id, new_envelope
from schemas.events import MAX_INVALID_REASON, WeightEntry, WeightsComputed
from schemas.fields import MAX_BLOCK, MAX_UIDS
from schemas.topics import RECORD_OVERHEAD_BYTES, WEIGHTS
from speechstream.kafka.consumer import EventConsumer
from speechstream.settings import KafkaSettings
from tests.unit.consumers.fakes import FakeMessage

KAFKA = KafkaSettings(KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1", SPEECHSTREAM_TOPIC_PREFIX="t.")
ESCAPED = "\x01"  # JSON writes it as \u0001


def _vector(candidates: list[Candidate], validator: str) -> Envelope:
    previous = {c.uid: 1 / 3 / MAX_UIDS for c in candidates}  # long decimal expansions
    entries = compute_weights(candidates, cutoff_block=MAX_BLOCK - 1, previous=previous)
    vector = WeightsComputed.of(validator, MAX_BLOCK - 1, MAX_BLOCK - 1, entries)
    return new_envelope(vector, key=validator, producer=PRODUCER_NAME,
                        event_id=derived_event_id(f"{validator}:{vector.epoch}", "weights"))


def largest() -> Envelope:
    """Every uid: a 64-hex hotkey (``Hotkey``), a 20-digit hash, a 96/96 repo (``RepoPart``),
    the last block, a score with 17 significant digits, a 128-character content hash of
    escaped characters (``Name``), withdrawn for a 2,000-character escaped reason (``Text``);
    a 128-character escaped validator id."""
    return _vector([
        Candidate(uid=uid, hotkey=f"{uid:064x}", hash=f"{uid:020d}",
                  repo="n" * 96 + "/" + "m" * 96, block=MAX_BLOCK - 1, status="COMPLETED",
                  score=0.12345678901234567, content_hash=ESCAPED * 128,
                  withdrawn=ESCAPED * 2000)
        for uid in range(MAX_UIDS)
    ], ESCAPED * 128)


def sybils() -> Envelope:
    """4,096 registered uids, each with a submission not scored yet (a flood of sybils)."""
    return _vector([
        Candidate(uid=uid, hotkey=f"{uid:064x}", hash=f"{uid:020d}",
                  repo="n" * 96 + "/" + "m" * 96, block=100 + uid, status="QUEUED")
        for uid in range(MAX_UIDS)
    ], "validator-a")


def test_the_largest_vector_fits_the_limit_its_topic_and_its_producer() -> None:
    size = len(encode(largest()))
    assert 10_000_000 < size <= MAX_VECTOR_BYTES  # 12.6 MB: the limit is not a guess
    topic_limit = int(WEIGHTS.config()["max.message.bytes"])
    assert size + RECORD_OVERHEAD_BYTES <= topic_limit
    assert PRODUCER_CONFIG["message.max.bytes"] >= topic_limit


def test_a_vector_any_writer_can_make_fits_too() -> None:
    # Not only the validator's: every field of every entry at the longest the schema allows.
    entries = [WeightEntry(uid=uid, hotkey=ESCAPED * 128, hash=f"{uid:020d}",
                           repo="n" * 96 + "/" + "m" * 96, block=MAX_BLOCK - 1,
                           status="COMPLETED", score=0.12345678901234567,
                           content_hash=ESCAPED * 128, win_rate=0.12345678901234567,
                           invalid=ESCAPED * MAX_INVALID_REASON, weight=0.12345678901234567)
               for uid in range(MAX_UIDS)]
    vector = WeightsComputed.of(ESCAPED * 128, MAX_BLOCK - 1, MAX_BLOCK - 1, entries)
    size = len(encode(new_envelope(vector, key=None, producer=PRODUCER_NAME)))
    assert size > 14_000_000  # 14.4 MB at the schema's limits: not a small vector
    assert size + RECORD_OVERHEAD_BYTES <= int(WEIGHTS.config()["max.message.bytes"])


def test_a_sybil_flood_is_over_the_old_limits() -> None:
    # What 4,096 registrations gave before: over an event's limit (the sink dead-lettered it)
    # and over librdkafka's 1 MB (the validator's producer refused it, and it exited).
    size = len(encode(sybils()))
    assert size > 1_000_000 > MAX_EVENT_BYTES


def test_readers_decode_the_largest_vector_on_the_weights_topic_only() -> None:
    raw = encode(largest())
    consumer = EventConsumer(KAFKA, name="reader", topics=[KAFKA.topics.weights], config={})
    on_weights = consumer.decode([FakeMessage(raw, _topic=KAFKA.topics.weights, _offset=0)])
    assert len(on_weights.envelopes) == 1
    assert len(on_weights.envelopes[0].payload.entries) == MAX_UIDS  # type: ignore[union-attr]
    elsewhere = consumer.decode([FakeMessage(raw, _topic=KAFKA.topics.scores, _offset=0)])
    (_, letter) = elsewhere.dead_letters[0]
    assert "oversize payload" in letter.payload.error  # type: ignore[union-attr]
