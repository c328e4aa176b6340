"""Envelope round-trips, the hash reference value, signatures and the codec's errors."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import jsonschema
import pytest

from schemas import (
    MAX_EVENT_BYTES,
    DeadLetter,
    EvaluationRequested,
    EvaluationStatusChanged,
    MinerRegistered,
    SampleResult,
    ScoreComputed,
    SubmissionPublished,
    SubmissionRejected,
    decode,
    encode,
    new_envelope,
)
from schemas.codec import dead_letter
from schemas.envelope import Envelope, derived_event_id
from schemas.events import (
    ChainBlock,
    MinerboardUpdated,
    SubmissionAttested,
    WeightEntry,
    WeightsComputed,
)
from schemas.fields import RejectionCode, repo_part_problem
from schemas.hashing import submission_hash
from schemas.signing import generate_key, sign, signature_is_valid
from schemas.topics import (
    ACCEPTED,
    ALL_TOPICS,
    MINERS,
    REGISTRATIONS,
    SUBMISSIONS,
    TABLE_PARTITIONS,
    TopicRegistry,
)

HK = "ab" * 32
SIG = "cd" * 64
H = submission_hash("alice", "tts-ft-1", "default", HK)

EVENTS = [
    MinerRegistered(hotkey=HK, uid=3, block=10, signature=SIG),
    SubmissionPublished(
        repo_namespace="alice", repo_name="tts-ft-1", hotkey=HK, block=11, hash=H, signature=SIG
    ),
    SubmissionRejected(
        code=RejectionCode.RATE_LIMITED, message="too soon", source_event_id="e1",
        source_type="submission.published", hotkey=HK, hash=H,
    ),
    EvaluationRequested(
        hash=H, hotkey=HK, uid=3, repo_namespace="alice", repo_name="tts-ft-1", block=11,
        source_event_id="e1",
    ),
    EvaluationStatusChanged(hash=H, status="QUEUED"),
    ScoreComputed(
        hash=H, status="COMPLETED", total_score=0.75, evaluator="cpu-0", request_event_id="r1",
        samples=[SampleResult(index=0, text="hi", ce=1.0, wer=0.0, transcription="hi", score=0.75)],
        timings={"total_s": 1.5},
    ),
    DeadLetter(raw_b64="eA==", raw_size=1, topic="t", partition=0, offset=5, error="x",
               consumer="sink"),
    SubmissionAttested(
        repo_namespace="alice", repo_name="tts-ft-1", hotkey=HK, block=11, hash=H,
        operator="ef" * 32, signature=SIG,
    ),
    ChainBlock(block=7200),
    WeightsComputed.of("v1", 20, 7200, [
        WeightEntry(uid=0, hotkey=HK, hash=H, repo="alice/tts-ft-1", block=11,
                    status="COMPLETED", score=0.5, win_rate=1.0, weight=1.0),
        WeightEntry(uid=1, invalid="no submission", weight=0.0),
    ]),
    MinerboardUpdated(hash=H, uid=3, hotkey=HK, block=11),
]


def test_hash_reference_value() -> None:
    assert submission_hash("alice", "tts-ft-1", "default", "hk_alice") == "18358495043599921355"


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.type)
def test_every_event_round_trips(event) -> None:
    envelope = new_envelope(event, key="k", producer="test")
    decoded = decode(encode(envelope))
    assert decoded == envelope
    assert decoded.payload == event
    assert decoded.type == event.type


def test_envelope_type_must_match_payload() -> None:
    env = new_envelope(EVENTS[0], key="k", producer="test")
    doc = json.loads(encode(env))
    doc["type"] = "submission.published"
    with pytest.raises(ValueError, match="schema violation"):
        decode(json.dumps(doc).encode())


def test_decode_errors_name_the_reason() -> None:
    env = encode(new_envelope(EVENTS[0], key="k", producer="test"))
    with pytest.raises(ValueError, match="not JSON"):
        decode(b"\xff\x00 definitely not json")
    with pytest.raises(ValueError, match="unsupported schema version 2"):
        decode(env.replace(b'"schema_version":1', b'"schema_version":2'))
    with pytest.raises(ValueError, match="oversize payload"):
        decode(b" " * (MAX_EVENT_BYTES + 1))
    with pytest.raises(ValueError, match="not a JSON object"):
        decode(b"[1, 2]")
    with pytest.raises(ValueError, match="not an event envelope: a JSON object without "
                       "event_id, type, time, producer, payload"):
        decode(b'{"hello": "world"}')
    with pytest.raises(ValueError, match="empty record"):
        decode(None)


def test_dead_letter_keeps_raw_bytes_and_position() -> None:
    raw = b"\x00garbage"
    where = {"topic": "speechstream.submissions", "partition": 2, "offset": 41}
    letter = dead_letter(raw, "not JSON", consumer="sink", **where)
    assert base64.b64decode(letter.payload.raw_b64) == raw
    assert (letter.payload.topic, letter.payload.partition, letter.payload.offset) == (
        "speechstream.submissions", 2, 41,
    )
    # The same bad record always yields the same dead-letter id (idempotent downstream).
    assert dead_letter(raw, "not JSON", consumer="sink", **where).event_id == letter.event_id
    assert decode(encode(letter)) == letter


def test_derived_event_ids_are_deterministic_and_stage_specific() -> None:
    assert derived_event_id("e1", "queued") == derived_event_id("e1", "queued")
    assert derived_event_id("e1", "queued") != derived_event_id("e1", "requested")


def test_signature_verifies_and_detects_tampering() -> None:
    private, hotkey = generate_key()
    fields = {"type": "miner.registered", "hotkey": hotkey, "uid": 1, "coldkey": None, "block": 5}
    signature = sign(private, fields)
    event = MinerRegistered(**fields, signature=signature)
    assert signature_is_valid(event.hotkey, event.signed_fields(), event.signature)
    assert not signature_is_valid(hotkey, {**fields, "uid": 2}, signature)
    _, other = generate_key()
    assert not signature_is_valid(other, fields, signature)
    assert not signature_is_valid("not hex", fields, signature)
    assert not signature_is_valid(hotkey, fields, signature[:-2])


def test_invalid_fields_are_refused() -> None:
    with pytest.raises(ValueError):
        MinerRegistered(hotkey="not-hex", uid=1, block=1, signature=SIG)
    with pytest.raises(ValueError):
        MinerRegistered(hotkey=HK, uid=-1, block=1, signature=SIG)
    with pytest.raises(ValueError):
        SubmissionPublished(repo_namespace="a/b", repo_name="x", hotkey=HK, block=1, hash=H,
                            signature=SIG)


def test_topic_registry_names_are_prefixed_and_unique() -> None:
    reg = TopicRegistry("t1.")
    names = [name for name, _ in reg.all()]
    assert len(set(names)) == len(ALL_TOPICS)
    assert all(name.startswith("t1.") for name in names)
    assert reg.submissions == "t1.submissions"
    # Co-partitioned topics (joined through the intake worker's tables) share a partition count.
    joined = (REGISTRATIONS, MINERS, SUBMISSIONS, ACCEPTED)
    assert {s.partitions for s in joined} == {TABLE_PARTITIONS}


def test_envelope_json_schema_accepts_encoded_events() -> None:
    schema = Envelope.model_json_schema()
    for event in EVENTS:
        doc = json.loads(encode(new_envelope(event, key=None, producer="p",
                                             time=datetime(2026, 1, 1, tzinfo=UTC))))
        jsonschema.validate(doc, schema)


def test_a_weights_vector_lists_its_entries_uids_and_weights() -> None:
    entries = [WeightEntry(uid=3, weight=0.25), WeightEntry(uid=5, weight=0.75)]
    vector = WeightsComputed.of("v", 1, 100, entries)
    assert (vector.uids, vector.weights) == ([3, 5], [0.25, 0.75])
    with pytest.raises(ValueError, match="uids and weights"):
        WeightsComputed(validator="v", epoch=1, block=100, uids=[3, 5], weights=[0.75, 0.25],
                        entries=entries)


@pytest.mark.parametrize("part", ["m", "tts-ft-1", "A.b_c", "x" * 96, "v1.0"])
def test_repo_parts_within_the_hubs_rules(part: str) -> None:
    assert repo_part_problem(part) is None


@pytest.mark.parametrize(("part", "why"), [
    ("..", "'..'"), ("a..b", "'..'"), ("a--b", "'--'"), (".x", "start or end"),
    ("x-", "start or end"), ("", "1 to 96"), ("x" * 97, "1 to 96"), ("a/b", "'/'"),
    ("ü", "'ü'"),
])
def test_repo_parts_outside_the_hubs_rules_say_why(part: str, why: str) -> None:
    problem = repo_part_problem(part)
    assert problem is not None and why in problem
